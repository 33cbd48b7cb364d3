/**
 * The monitor's whole suite again, with our own berth-oci as the OCI runtime (engine-monitor.test.ts
 * runs it with runc): create/start/delete through the CLI, the init re-parented to the monitor by
 * CLONE_PARENT, --console-socket for the pty, exit codes, signals and restarts.
 */
import { join } from 'node:path';

process.env.BERTH_TEST_RUNTIME = join(import.meta.dirname, '..', 'bin', 'berth-oci.js');
await import('./engine-monitor.test.js');
