/**
 * podman drives berth-oci as its OCI runtime (`--runtime`), through conmon: run --rm, run -d,
 * exec, stop (SIGTERM ignored by pid 1, then SIGKILL), ps -a and rm — the calls a real
 * container engine makes, with their real argument grammar.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baseImage, writeOciLayout } from './fixtures/images.js';

t.setTimeout(180_000);
const BERTH_OCI = join(import.meta.dirname, '..', 'bin', 'berth-oci.js');
// podman derives an image name from the layout path, and names must be lowercase.
const dir = join(tmpdir(), `berth-podman-${process.pid}-${Date.now().toString(36)}`);
mkdirSync(dir, { recursive: true });
const layout = join(dir, 'layout');
const base = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'overlay', '--runtime', BERTH_OCI, '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
const limits = ['--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768', '--cgroup-parent', `/berth-podman-${process.pid}`];

function podman(args: string[]) {
  const r = spawnSync('podman', [...base, ...args], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

t.before(async () => { await writeOciLayout(layout, await baseImage(), 'latest'); });
t.teardown(async () => {
  podman(['rm', '--all', '--force']);
  podman(['system', 'reset', '--force']);
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && mp.startsWith(dir)) spawnSync('umount', ['-l', mp]);
  }
  rmSync(dir, { recursive: true, force: true });
  // podman puts conmon in <parent>/conmon; conmon exits a moment after `rm`.
  const parents = ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'memory', 'pids', 'systemd'].map((h) => `/sys/fs/cgroup/${h}/berth-podman-${process.pid}`);
  for (let i = 0; i < 50 && parents.some((p) => existsSync(p)); i++) {
    for (const p of parents) spawnSync('rmdir', [`${p}/conmon`, p], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
  }
});

t.test('podman run --rm with berth-oci', async (t) => {
  const r = podman(['run', '--rm', ...limits, `oci:${layout}:latest`, 'sh', '-c', 'echo pid=$$; cat /proc/self/status | grep ^CapEff']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /pid=1\n/);
  t.match(r.out, /CapEff:\t00000000800405fb/, "podman 4.3's eleven default capabilities");
});

t.test('podman run -d, exec, stop, ps, rm with berth-oci', async (t) => {
  let r = podman(['run', '-d', '--name', 'web', ...limits, `oci:${layout}:latest`, 'sleep', '1000']);
  t.equal(r.code, 0, r.err);
  r = podman(['exec', 'web', 'sh', '-c', 'echo exec=$$; cat /proc/1/cmdline | tr "\\0" " "']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /exec=\d+\nsleep 1000 /);
  r = podman(['stop', '-t', '1', 'web']);
  t.equal(r.code, 0, r.err);
  r = podman(['ps', '-a', '--format', '{{.Names}} {{.Status}}']);
  t.match(r.out, /web Exited \(137\)/);
  t.equal(podman(['rm', 'web']).code, 0);
});
