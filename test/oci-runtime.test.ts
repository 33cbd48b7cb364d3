/**
 * The in-process runtime API on the real kernel: real namespaces, cgroups and mounts, containers
 * from a busybox rootfs. Every test cleans up, and the last one checks nothing was left.
 */
import t from 'tap';
import { existsSync, readFileSync, mkdirSync, symlinkSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupDirOf, makeEnv, type TestEnv } from './helpers/oci.js';
import { SpawnError } from '../runtime/errors.js';

t.setTimeout(180_000);
let env: TestEnv;
t.before(() => { env = makeEnv(); });
t.teardown(async () => { await env.cleanup(); });

async function runToExit(args: string[], mutate?: Parameters<TestEnv['spec']>[1]) {
  const out = env.output();
  const id = env.id();
  await env.rt.run(id, { bundle: env.bundle, spec: env.spec(args, mutate), stdio: [-1, out.fd, out.fd] });
  const exit = await env.rt.wait(id);
  const state = env.rt.state(id);
  await env.rt.delete(id);
  return { exit, out: out.read(), state };
}

t.test('the process is pid 1 with its own hostname, and exit codes come back', async (t) => {
  const r = await runToExit(['/bin/sh', '-c', 'echo pid=$$; hostname; exit 3']);
  t.match(r.out, /pid=1\n/);
  t.match(r.out, /berth-test\n/);
  t.equal(r.exit.code, 3);
  t.equal(r.exit.exitCode, 3);
  t.equal(r.state.status, 'stopped');
});

t.test('capabilities, masked and read-only paths, rlimits and the user are applied', async (t) => {
  const r = await runToExit(['/bin/sh', '-c', 'grep -E "^Cap(Eff|Bnd)" /proc/self/status; echo timer_list=$(wc -c < /proc/timer_list); grep " /proc/sys " /proc/self/mounts; ulimit -n; id'], (s) => {
    s.process!.capabilities = { bounding: ['CAP_CHOWN', 'CAP_KILL'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN', 'CAP_KILL'] };
    s.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 512, hard: 1024 }];
    s.process!.user = { uid: 1000, gid: 1000, additionalGids: [10] };
  });
  // uid 1000 without ambient caps: effective drops to 0 at exec of a non-root user; bounding stays.
  t.match(r.out, /CapBnd:\t0000000000000021/);
  t.match(r.out, /timer_list=0/, "masked /proc/timer_list reads empty");
  t.match(r.out, / \/proc\/sys proc ro,/);
  t.match(r.out, /\n512\n/);
  t.match(r.out, /uid=1000\(app\) gid=1000\(app\) groups=10\(wheel\)/);
});

t.test('root in the container keeps exactly the requested capabilities', async (t) => {
  const r = await runToExit(['/bin/sh', '-c', 'grep -E "^Cap(Eff|Prm|Bnd)" /proc/self/status']);
  // runc's template: AUDIT_WRITE(29), KILL(5), NET_BIND_SERVICE(10) = 0x20000420
  t.match(r.out, /CapPrm:\t0000000020000420/);
  t.match(r.out, /CapEff:\t0000000020000420/);
  t.match(r.out, /CapBnd:\t0000000020000420/);
});

t.test('resources land in the cgroup files, and stats see the process', async (t) => {
  const id = env.id();
  const spec = env.spec(['/bin/sleep', '30'], (s) => {
    s.linux!.resources = { ...s.linux!.resources, memory: { limit: 64 * 1024 * 1024 }, cpu: { shares: 512, quota: 50000, period: 100000 }, pids: { limit: 42 } };
  });
  await env.rt.run(id, { bundle: env.bundle, spec, stdio: [-1, -1, -1] });
  t.teardown(() => env.rt.delete(id, true).catch(() => {}));
  const rec = env.rt.load(id);
  const mem = cgroupDirOf(rec, 'memory');
  const cpu = cgroupDirOf(rec, 'cpu');
  const pids = cgroupDirOf(rec, 'pids');
  const read = (dir: string, f: string): string => readFileSync(join(dir, f), 'utf8').trim();
  if (rec.cgroupVersion === 1) {
    t.equal(read(mem, 'memory.limit_in_bytes'), String(64 * 1024 * 1024));
    t.equal(read(cpu, 'cpu.shares'), '512');
    t.equal(read(cpu, 'cpu.cfs_quota_us'), '50000');
  } else {
    t.equal(read(mem, 'memory.max'), String(64 * 1024 * 1024));
    // crun's shares→weight mapping: 512 → 59.
    t.equal(read(cpu, 'cpu.weight'), '59');
    t.equal(read(cpu, 'cpu.max'), '50000 100000');
  }
  t.equal(read(pids, 'pids.max'), '42');
  t.ok(readFileSync(join(pids, 'cgroup.procs'), 'utf8').includes(String(rec.pid)), 'init is in the cgroup');
  t.equal(env.rt.stats(id).pids.current, 1);
  t.same(env.rt.ps(id), [rec.pid]);
  await env.rt.delete(id, true);
  t.notOk(existsSync(mem), 'memory cgroup removed');
  t.notOk(existsSync(cpu), 'cpu cgroup removed');
});

t.test('an OOM kill is reported as such', async (t) => {
  const r = await runToExit(['/bin/sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\000" a); echo survived ${#x}'], (s) => {
    s.linux!.resources = { ...s.linux!.resources, memory: { limit: 24 * 1024 * 1024, swap: 24 * 1024 * 1024 } };
  });
  t.notMatch(r.out, /survived/);
  t.equal(r.exit.signal, 9);
  t.equal(r.exit.exitCode, 137);
  t.equal(r.exit.oomKilled, true);
});

t.test('exec joins a running container; pause, resume, kill and delete', async (t) => {
  const id = env.id();
  await env.rt.run(id, { bundle: env.bundle, spec: env.spec(['/bin/sleep', '1000']), stdio: [-1, -1, -1] });
  t.teardown(() => env.rt.delete(id, true).catch(() => {}));
  t.equal(env.rt.state(id).status, 'running');
  const out = env.output();
  const h = await env.rt.exec(id, { args: ['/bin/sh', '-c', 'hostname; cat /proc/1/cmdline | tr "\\0" " "; echo; echo $$'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] }, { stdio: [-1, out.fd, out.fd] });
  const ex = await h.wait();
  t.equal(ex.exitCode, 0);
  t.match(out.read(), /^berth-test\n\/bin\/sleep 1000 \n\d+\n$/);
  t.not(out.read().trim().split('\n')[2], '1', 'exec process is not pid 1');
  await env.rt.pause(id);
  t.equal(env.rt.state(id).status, 'paused');
  await t.rejects(env.rt.exec(id, { args: ['/bin/true'], cwd: '/', user: { uid: 0, gid: 0 } }), /paused/);
  await env.rt.resume(id);
  t.equal(env.rt.state(id).status, 'running');
  await t.rejects(env.rt.delete(id), /running — stop it first or use --force/);
  // pid 1 with no handler ignores SIGTERM: the container keeps running.
  env.rt.kill(id, 'TERM');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(env.rt.state(id).status, 'running');
  env.rt.kill(id, 'KILL');
  const exit = await env.rt.wait(id);
  t.equal(exit.signal, 9);
  t.equal(env.rt.state(id).status, 'stopped');
  await env.rt.delete(id);
  t.notOk(existsSync(join(env.root, id)), 'state dir removed');
});

t.test('create stops at the exec fifo until start', async (t) => {
  const id = env.id();
  const out = env.output();
  await env.rt.create(id, { bundle: env.bundle, spec: env.spec(['/bin/sh', '-c', 'echo started']), stdio: [-1, out.fd, out.fd] });
  t.teardown(() => env.rt.delete(id, true).catch(() => {}));
  t.equal(env.rt.state(id).status, 'created');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(out.read(), '', 'nothing ran before start');
  await env.rt.start(id);
  await env.rt.wait(id);
  t.equal(out.read(), 'started\n');
  await t.rejects(env.rt.start(id), /stopped, not created/);
});

t.test('bad configs are refused clearly and leave nothing behind', async (t) => {
  const before = readdirSync(env.root).length;
  const hostDir = join(env.bundle, 'host-target');
  mkdirSync(hostDir);
  symlinkSync(hostDir, join(env.rootfs, 'evil'));
  const cases: [string, Parameters<TestEnv['spec']>[1], RegExp][] = [
    ['missing binary', (s) => { s.process!.args = ['/bin/does-not-exist']; }, /does-not-exist/],
    ['relative mount destination', (s) => { s.mounts!.push({ destination: 'relative', type: 'tmpfs', source: 'tmpfs' }); }, /mounts\[\d+\]\.destination: must be an absolute path/],
    ['unknown namespace', (s) => { s.linux!.namespaces!.push({ type: 'bogus' as 'pid' }); }, /unknown namespace type "bogus"/],
    ['rlimit above the hard limit', (s) => { s.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }]; }, /RLIMIT_NOFILE/],
    ['bad capability', (s) => { s.process!.capabilities!.bounding = ['CAP_FLY']; }, /CAP_FLY/],
  ];
  for (const [name, mutate, re] of cases) {
    const id = env.id();
    await t.rejects(env.rt.create(id, { bundle: env.bundle, spec: env.spec(['/bin/true'], mutate), stdio: [-1, -1, -1] }), re, name);
    t.notOk(existsSync(join(env.root, id)), `${name}: no state left`);
  }
  t.equal(readdirSync(env.root).length, before);
  // A mount whose destination is a symlink pointing out of the rootfs stays inside it.
  const r = await runToExit(['/bin/sh', '-c', 'echo inside > /evil/file; echo ok'], (s) => {
    s.mounts!.push({ destination: '/evil', type: 'tmpfs', source: 'tmpfs' });
  }).catch((e: unknown) => ({ error: e }));
  t.same(readdirSync(hostDir), [], 'nothing was mounted or written on the host path');
  t.notOk(readFileSync('/proc/self/mountinfo', 'utf8').includes(hostDir), 'no mount on the host path');
  if ('error' in r) t.ok(r.error instanceof Error, 'refused');
  else t.match(r.out, /ok/);
});

t.test('a missing binary is a SpawnError at the exec stage', async (t) => {
  const id = env.id();
  const err = await env.rt.create(id, { bundle: env.bundle, spec: env.spec(['nope-not-here']), stdio: [-1, -1, -1] }).catch((e: unknown) => e);
  t.ok(err instanceof SpawnError, 'SpawnError');
  t.equal((err as SpawnError).stage, 'exec');
  t.equal((err as SpawnError).errno, 2);
});
