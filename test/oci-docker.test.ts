/**
 * Docker drives berth-oci: a private dockerd (Debian docker.io 20.10) started with
 * `--add-runtime berth=<berth-oci>`, an image pulled from the real registry on 127.0.0.1, then
 * run --rm, exit codes, a tty, run -d, exec, pause/unpause, update, stop (pid 1 ignores SIGTERM:
 * SIGKILL after the timeout), ps -a, rm — Docker's exact calls into the runtime.
 */
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync, openSync, closeSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { baseImage, pushTestImage } from './fixtures/images.js';
import { removeCgroupTree } from './helpers/oci.js';

t.setTimeout(240_000);
const BERTH_OCI = join(import.meta.dirname, '..', 'bin', 'berth-oci.js');
const DOCKERD = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
const dir = mkdtempSync(join(tmpdir(), 'berth-docker-'));
const sock = join(dir, 'docker.sock');
// Absolute: a relative parent would land under berth-oci's default parent (/berth).
const cgroupParent = `/berth-docker-${process.pid}`;
let daemon: ChildProcess | undefined;
let reg: TestRegistry | undefined;
let image = '';

function docker(args: string[], opts: { tty?: boolean } = {}) {
  const r = spawnSync('/usr/bin/docker', ['-H', `unix://${sock}`, ...args], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.tty ? {} : {}) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

t.before(async () => {
  if (!DOCKERD) throw new Error('dockerd is not installed: apt-get install docker.io (.ci/run does)');
  const log = openSync(join(dir, 'dockerd.log'), 'w');
  daemon = spawn(DOCKERD, [
    '--iptables=false', '--ip-masq=false', '--bridge=none', '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
    '--host', `unix://${sock}`, '--pidfile', join(dir, 'docker.pid'), '--cgroup-parent', cgroupParent,
    '--add-runtime', `berth=${BERTH_OCI}`, '--default-ulimit', 'nofile=20000:20000', '--default-ulimit', 'nproc=32768:32768',
  ], { stdio: ['ignore', log, log] });
  closeSync(log);
  for (let i = 0; i < 150 && docker(['version']).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
  reg = await startRegistry();
  image = (await pushTestImage(reg.url, 'busybox', 'latest', await baseImage())).ref;
  const p = docker(['pull', '-q', image]);
  if (p.code !== 0) throw new Error(`docker pull: ${p.err}\n${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`);
});

t.teardown(async () => {
  docker(['rm', '-f', 'web']);
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((r) => { daemon!.once('exit', r); setTimeout(r, 15_000); });
  }
  await reg?.stop();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n').reverse()) {
    const mp = line.split(' ')[4];
    if (mp && mp.startsWith(dir)) spawnSync('umount', ['-l', mp]);
  }
  rmSync(dir, { recursive: true, force: true });
  for (const h of readdirSync('/sys/fs/cgroup')) removeCgroupTree(`/sys/fs/cgroup/${h}${cgroupParent}`);
});

t.test('docker run --rm --runtime berth: output, pid 1, default caps, exit code, tty', async (t) => {
  let r = docker(['run', '--rm', '--runtime', 'berth', '--network', 'none', image, 'sh', '-c', 'echo hi from $$; grep CapEff /proc/self/status']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /^hi from 1\nCapEff:\t00000000a80425fb\n$/, "Docker's 14 default capabilities");
  r = docker(['run', '--rm', '--runtime', 'berth', '--network', 'none', image, 'sh', '-c', 'exit 5']);
  t.equal(r.code, 5, 'exit status comes back');
  r = docker(['run', '-t', '--rm', '--runtime', 'berth', '--network', 'none', image, 'tty']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /\/dev\/pts\/0/, 'a pty through --console-socket');
});

t.test('docker run -d, exec, pause/unpause, update, stop, ps -a, rm', async (t) => {
  let r = docker(['run', '-d', '--name', 'web', '--runtime', 'berth', '--network', 'none', image, 'sleep', '1000']);
  t.equal(r.code, 0, r.err);
  r = docker(['exec', 'web', 'sh', '-c', 'cat /proc/1/cmdline | tr "\\0" " "']);
  t.equal(r.out, 'sleep 1000 ');
  t.equal(docker(['pause', 'web']).code, 0);
  t.match(docker(['inspect', '-f', '{{.State.Status}}', 'web']).out, /paused/);
  t.equal(docker(['unpause', 'web']).code, 0);
  r = docker(['update', '--memory', '64m', '--memory-swap', '64m', 'web']);
  t.equal(r.code, 0, r.err);
  const pid = docker(['inspect', '-f', '{{.State.Pid}}', 'web']).out.trim();
  const memcg = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => /:memory:/.test(l))!.split(':')[2];
  t.equal(readFileSync(`/sys/fs/cgroup/memory${memcg}/memory.limit_in_bytes`, 'utf8').trim(), String(64 * 1024 * 1024), 'update reached the cgroup');
  t.equal(docker(['stop', '-t', '1', 'web']).code, 0);
  t.match(docker(['ps', '-a', '--format', '{{.Names}} {{.Status}}']).out, /web Exited \(137\)/);
  t.equal(docker(['rm', 'web']).code, 0);
});
