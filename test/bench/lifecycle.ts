/**
 * `npm run bench -- lifecycle`: create+start+wait+delete of /bin/true on one prepared bundle,
 * side by side: berth's in-process API, `berth-oci run`, `runc run`, and crun through the
 * wrapper TEST-ENVIRONMENT.md describes (crun refuses this hybrid cgroup layout otherwise).
 *
 * Every runtime keeps its state (state.json, the exec fifo) on a tmpfs of its own, as under a
 * node's /run (ARCHITECTURE.md: `/run/berth` is tmpfs). This VM's /run and /tmp are ext4 without
 * a journal, where a new inode scans past every inode freed in its block group in the last
 * 5-65 s: on a create/delete loop that cost grows with the loop and measures the disk, not the
 * runtime (berth in-process ~4.1-4.9 ms with state on /tmp, ~3.6-3.7 ms on tmpfs).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readdirSync, rmdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { populateBusybox } from '../fixtures/rootfs.js';
import { defaultSpec } from '../../runtime/oci/default-spec.js';
import { Runtime } from '../../runtime/oci/runtime.js';
import { timeIt, run, which, printTable, type Row } from './util.js';

const BERTH_OCI = join(import.meta.dirname, '..', '..', 'bin', 'berth-oci.js');

export async function benchLifecycle(n = 50): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-lifecycle-'));
  const rootfs = join(dir, 'rootfs');
  populateBusybox(rootfs);
  const spec = defaultSpec({ args: ['/bin/true'], terminal: false });
  spec.ociVersion = '1.0.2'; // crun 1.8.1 refuses newer versions
  spec.linux!.cgroupsPath = '/berth-bench/lifecycle';
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  const runDir = join(dir, 'run');
  mkdirSync(runDir);
  const state = (name: string) => join(runDir, `state-${name}`);
  const rows: Row[] = [];
  try {
    run('mount', ['-t', 'tmpfs', '-o', 'mode=0700', 'berth-bench', runDir]);
    const rt = new Runtime({ root: state('inproc'), warn: () => {} });
    rows.push({
      name: 'berth in-process',
      samples: await timeIt(n, async (i) => {
        const id = `b${i + 10}`;
        await rt.run(id, { bundle: dir, spec, stdio: [-1, -1, -1] });
        await rt.wait(id);
        await rt.delete(id);
      }),
    });
    rows.push({ name: 'berth-oci run', samples: await timeIt(n, (i) => run(process.execPath, [BERTH_OCI, '--root', state('cli'), 'run', '--bundle', dir, `c${i + 10}`])) });
    if (which('runc')) rows.push({ name: 'runc run', samples: await timeIt(n, (i) => run('runc', ['--root', state('runc'), 'run', '--bundle', dir, `r${i + 10}`])) });
    else rows.push({ name: 'runc run', samples: [], note: 'runc not installed' });
    if (which('crun')) {
      const wrapper = ['-m', 'sh', '-c', 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"', 'crun'];
      rows.push({ name: 'crun run', samples: await timeIt(n, (i) => run('unshare', [...wrapper, '--root', state('crun'), 'run', '--bundle', dir, `k${i + 10}`])) });
    } else rows.push({ name: 'crun run', samples: [], note: 'crun not installed' });
    printTable(`lifecycle: create+start+wait+delete of /bin/true, ${n} runs each`, rows, 'crun run');
    return rows;
  } finally {
    try { run('umount', [runDir]); } catch { /* not mounted */ }
    rmSync(dir, { recursive: true, force: true });
    for (const h of readdirSync('/sys/fs/cgroup')) {
      const p = `/sys/fs/cgroup/${h}/berth-bench`;
      if (existsSync(p)) {
        for (const c of readdirSync(p, { withFileTypes: true })) if (c.isDirectory()) { try { rmdirSync(join(p, c.name)); } catch { /* busy */ } }
        try { rmdirSync(p); } catch { /* busy */ }
      }
    }
  }
}
