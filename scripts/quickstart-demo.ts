/**
 * The quick start's demo, offline: a throwaway registry (Debian's docker-registry) on 127.0.0.1
 * seeded with an image built from the host's busybox, then `berth pull` and `berth run` of it,
 * showing its isolation. Everything it makes lives in a temp dir and is removed at the end.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, rmdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry } from '../test/fixtures/registry.js';
import { baseImage, pushTestImage } from '../test/fixtures/images.js';

const BERTH = join(import.meta.dirname, '..', 'bin', 'berth.js');
const dir = mkdtempSync(join(tmpdir(), 'berth-quickstart-'));
const cgroupParent = `berth-quickstart-${process.pid}`;
const env = { ...process.env, BERTH_CGROUP_PARENT: cgroupParent };
const berth = (...args: string[]) => {
  console.log(`\n$ berth ${args.map((a) => (a.length > 40 ? `'<${a.split(';').length}-line demo script>'` : a)).join(' ')}`);
  const r = spawnSync(process.execPath, [BERTH, '--root', join(dir, 'root'), '--state', join(dir, 'state'), ...args], { stdio: 'inherit', env });
  if (r.status !== 0) throw new Error(`berth ${args[0]} failed with status ${r.status}`);
};

const reg = await startRegistry();
try {
  const { ref } = await pushTestImage(reg.url, 'demo/busybox', 'latest', await baseImage());
  console.log(`A registry is serving ${ref} (built from this host's /bin/busybox).`);
  berth('pull', ref);
  berth('images');
  berth('run', '--rm', '--network', 'none', '--memory', '64m', '--pids-limit', '100', '--hostname', 'demo', ref, 'sh', '-c', [
    'echo "PID of this shell inside the container: $$"',
    'echo "hostname: $(hostname)"',
    'echo "processes visible:"; ps -o pid,comm',
    'echo "network interfaces:"; ls /sys/class/net',
    'echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"',
    'echo "/proc/sys is read-only:"; grep " /proc/sys " /proc/mounts',
    'echo "capabilities: $(grep CapEff /proc/self/status)"',
  ].join('; '));
  console.log('\nDone: the container is gone (--rm), and so is everything it used.');
} finally {
  await reg.stop();
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const p = `/sys/fs/cgroup/${h}/${cgroupParent}`;
    if (existsSync(p)) { try { rmdirSync(p); } catch { /* still busy */ } }
  }
  rmSync(dir, { recursive: true, force: true });
}
