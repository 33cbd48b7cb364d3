/**
 * native/monitor.c + runtime/engine/monitor.ts against a real OCI runtime (runc by default;
 * BERTH_TEST_RUNTIME=/path/to/berth-oci to run the same checks against ours).
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { makeBundleDir } from './fixtures/rootfs.js';
import {
  attach, disableRestart, monitorAlive, monitorStatus, readExitStatus, startContainer, startMonitor,
  waitForExit, MonitorError, type MonitorOptions,
} from '../runtime/engine/monitor.js';

const RUNTIME = process.env.BERTH_TEST_RUNTIME ?? '/usr/sbin/runc';
t.setTimeout(120000);

interface Box { id: string; bundle: string; root: string; opts: MonitorOptions; cgParent: string }

function cgroupDirs(rel: string): string[] {
  const out: string[] = [];
  for (const c of readdirSync('/sys/fs/cgroup')) {
    const p = join('/sys/fs/cgroup', c, rel);
    if (existsSync(p)) out.push(p);
  }
  return out;
}

function rmdirTree(p: string): void {
  for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) rmdirTree(join(p, e.name));
  try { rmdirSync(p); } catch { /* busy: reported by the leak assertions */ }
}

function pidAlive(pid: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3) !== 'Z';
  } catch { return false; }
}

function ppidOf(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
}

/** A bundle with config.json from `runc spec`, edited for the test. */
function box(tt: Tap, args: string[], o: { terminal?: boolean; opts?: Partial<MonitorOptions> } = {}): Box {
  const b = makeBundleDir('berth-mon-');
  const rand = randomBytes(4).toString('hex');
  const id = `berth-mon-${rand}`;
  const cgParent = `berth-test-${rand}`;
  const root = join(b.dir, 'runc-root');
  execFileSync('/usr/sbin/runc', ['spec'], { cwd: b.dir });
  const spec = JSON.parse(readFileSync(join(b.dir, 'config.json'), 'utf8'));
  spec.process.args = args;
  spec.process.terminal = !!o.terminal;
  spec.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }];
  spec.linux.cgroupsPath = `/${cgParent}/${id}`;
  writeFileSync(join(b.dir, 'config.json'), JSON.stringify(spec));
  const opts: MonitorOptions = {
    runtime: RUNTIME, runtimeArgs: ['--root', root], id, bundle: b.dir,
    exitFile: join(b.dir, 'exit.json'), logFile: join(b.dir, 'ctr.log'),
    ctlSocket: join(b.dir, 'ctl.sock'), attachSocket: join(b.dir, 'attach.sock'),
    consoleSocket: join(b.dir, 'console.sock'), terminal: !!o.terminal, start: true, ...o.opts,
  };
  tt.teardown(() => {
    try { execFileSync(RUNTIME, ['--root', root, 'delete', '--force', id], { stdio: 'ignore' }); } catch { /* gone */ }
    for (const d of cgroupDirs(cgParent)) rmdirTree(d);
    b.cleanup();
  });
  return { id, bundle: b.dir, root, opts, cgParent };
}
type Tap = Test;

function assertClean(tt: Tap, bx: Box, initPid: number): void {
  tt.notOk(pidAlive(initPid), 'init is gone');
  const state = existsSync(bx.root) ? readdirSync(bx.root) : [];
  tt.same(state, [], 'runtime state dir is empty');
  tt.same(cgroupDirs(join(bx.cgParent, bx.id)), [], 'container cgroup dirs removed');
  tt.notOk(existsSync(bx.opts.ctlSocket!), 'control socket removed');
  tt.notOk(existsSync(bx.opts.attachSocket!), 'attach socket removed');
}

const CRI = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [PF] /;

t.test('output of both streams in the CRI log; exit code 3', async (tt) => {
  const bx = box(tt, ['sh', '-c', 'echo hi; echo err >&2; exit 3']);
  const h = await startMonitor(bx.opts);
  tt.ok(h.initPid > 0 && h.started, 'started with a pid');
  const r = await waitForExit(bx.opts.exitFile, h.monitorPid);
  tt.equal(r.exitCode, 3, 'exit code 3');
  tt.equal(r.signal, null);
  tt.equal(r.pid, h.initPid);
  const lines = readFileSync(bx.opts.logFile!, 'utf8').trim().split('\n');
  for (const l of lines) tt.match(l, CRI, 'CRI line format');
  tt.ok(lines.some((l) => / stdout F hi$/.test(l)), 'stdout line');
  tt.ok(lines.some((l) => / stderr F err$/.test(l)), 'stderr line');
  assertClean(tt, bx, h.initPid);
});

t.test('killed with SIGKILL through the runtime: signal 9; monitor RSS is small', async (tt) => {
  const bx = box(tt, ['sleep', '100']);
  const h = await startMonitor(bx.opts);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${h.monitorPid}/status`, 'utf8'))?.[1]);
  tt.comment(`berth-monitor RSS: ${rss} kB`);
  tt.ok(rss > 0 && rss < 2048, `monitor RSS ${rss} kB < 2 MB`);
  tt.equal(ppidOf(h.initPid), h.monitorPid, 'init is the monitor\'s child');
  process.kill(h.monitorPid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 50));
  tt.ok(monitorAlive(h.monitorPid) && pidAlive(h.initPid), 'SIGTERM to the monitor does not stop it or the container');
  const st = await monitorStatus(bx.opts.ctlSocket!);
  tt.same(st, { state: 'running', pid: h.initPid, restarts: 0 });
  execFileSync(RUNTIME, ['--root', bx.root, 'kill', bx.id, 'KILL']);
  const r = await waitForExit(bx.opts.exitFile, h.monitorPid);
  tt.equal(r.signal, 9);
  tt.equal(r.exitCode, null);
  assertClean(tt, bx, h.initPid);
});

t.test('the container survives the process that started the monitor', async (tt) => {
  const bx = box(tt, ['sleep', '100']);
  const script = `import { startMonitor } from ${JSON.stringify(new URL('../runtime/engine/monitor.ts', import.meta.url).pathname)};
    const h = await startMonitor(JSON.parse(process.argv[1]));
    process.stdout.write(JSON.stringify(h));`;
  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify(bx.opts)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    c.stdout.on('data', (d) => { s += d; });
    c.on('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`starter exited ${code}`))));
  });
  const h = JSON.parse(out) as { monitorPid: number; initPid: number };
  tt.ok(pidAlive(h.initPid), 'init alive after the starter exited');
  tt.ok(monitorAlive(h.monitorPid), 'monitor alive');
  tt.equal(ppidOf(h.initPid), h.monitorPid, 'init\'s parent is the monitor');
  execFileSync(RUNTIME, ['--root', bx.root, 'kill', bx.id, 'KILL']);
  const deadline = Date.now() + 10000;
  while (monitorAlive(h.monitorPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  tt.equal(readExitStatus(bx.opts.exitFile)?.signal, 9);
  assertClean(tt, bx, h.initPid);
});

t.test('attach before start receives live output, stdin and the exit record', async (tt) => {
  const bx = box(tt, ['sh', '-c', 'echo ready; read line; echo "got $line"; echo oops >&2; exit 7'], { opts: { start: false, stdin: true } });
  const h = await startMonitor(bx.opts);
  tt.notOk(h.started, 'created, not started');
  tt.equal((await monitorStatus(bx.opts.ctlSocket!)).state, 'created');
  const stdin = new PassThrough(), stdout = new PassThrough(), stderr = new PassThrough();
  let out = '', err = '';
  stdout.on('data', (d) => { out += d; });
  stderr.on('data', (d) => { err += d; });
  const session = await attach(bx.opts.attachSocket!, { stdin, stdout, stderr });
  const pid = await startContainer(bx.opts.ctlSocket!);
  tt.equal(pid, h.initPid);
  while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 10));
  stdin.write('hello\n');
  const exit = await session.done;
  tt.equal(out, 'ready\ngot hello\n', 'live stdout, stdin delivered');
  tt.equal(err, 'oops\n', 'live stderr');
  tt.equal(exit?.exitCode, 7, 'exit record over the attach socket');
  await waitForExit(bx.opts.exitFile, h.monitorPid);
  assertClean(tt, bx, h.initPid);
});

t.test('a pty: tty inside is /dev/pts/0, resize works', async (tt) => {
  const bx = box(tt, ['sh', '-c', 'sleep 0.3; tty; stty size'], { terminal: true, opts: { start: false } });
  const h = await startMonitor(bx.opts);
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (d) => { out += d; });
  const session = await attach(bx.opts.attachSocket!, { stdout, tty: true });
  await startContainer(bx.opts.ctlSocket!);
  session.resize(33, 101);
  const exit = await session.done;
  tt.equal(exit?.exitCode, 0);
  tt.match(out, /\/dev\/pts\/0\r?\n/, 'tty output');
  tt.match(out, /33 101/, 'window size applied');
  tt.match(readFileSync(bx.opts.logFile!, 'utf8'), / stdout F \/dev\/pts\/0/, 'pty output logged');
  await waitForExit(bx.opts.exitFile, h.monitorPid);
  assertClean(tt, bx, h.initPid);
});

t.test('restart on-failure:2 runs the command three times', async (tt) => {
  const bx = box(tt, ['sh', '-c', 'echo run; exit 1'], { opts: { restart: 'on-failure:2' } });
  const h = await startMonitor(bx.opts);
  const r = await waitForExit(bx.opts.exitFile, h.monitorPid);
  tt.equal(r.exitCode, 1);
  tt.equal(r.restarts, 2, 'two restarts recorded');
  tt.notOk(r.restarting);
  const runs = readFileSync(bx.opts.logFile!, 'utf8').split('\n').filter((l) => / stdout F run$/.test(l));
  tt.equal(runs.length, 3, 'ran three times');
  assertClean(tt, bx, r.pid);
});

t.test('restart always stops after norestart', async (tt) => {
  const bx = box(tt, ['sleep', '100'], { opts: { restart: 'always' } });
  const h = await startMonitor(bx.opts);
  await disableRestart(bx.opts.ctlSocket!);
  execFileSync(RUNTIME, ['--root', bx.root, 'kill', bx.id, 'KILL']);
  const r = await waitForExit(bx.opts.exitFile, h.monitorPid);
  tt.equal(r.signal, 9);
  tt.equal(r.restarts, 0);
  assertClean(tt, bx, h.initPid);
});

t.test('log rotation at a small size limit; long lines are split with P', async (tt) => {
  const bx = box(tt, ['sh', '-c', 'i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); done; head -c 20000 /dev/zero | tr "\\0" x; echo'], { opts: { logMaxBytes: 1024 * 16 } });
  const h = await startMonitor(bx.opts);
  await waitForExit(bx.opts.exitFile, h.monitorPid);
  const cur = readFileSync(bx.opts.logFile!, 'utf8');
  const old = readFileSync(`${bx.opts.logFile}.1`, 'utf8');
  tt.ok(statSync(bx.opts.logFile!).size <= 1024 * 16, 'current log within the limit');
  const all = (old + cur).trim().split('\n');
  tt.ok(all.some((l) => / stdout P x+$/.test(l)), 'partial chunk marked P');
  const xs = all.filter((l) => / stdout [PF] x*$/.test(l)).map((l) => l.replace(CRI, '')).join('');
  tt.ok(all.filter((l) => /line-\d+$/.test(l)).length <= 40, 'line entries present');
  tt.equal(xs.length, 20000, 'long line reassembles from its chunks');

  const bx2 = box(tt, ['sh', '-c', 'i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); done'], { opts: { logMaxBytes: 300 } });
  const h2 = await startMonitor(bx2.opts);
  await waitForExit(bx2.opts.exitFile, h2.monitorPid);
  tt.ok(statSync(bx2.opts.logFile!).size <= 300, 'rotated log within 300 bytes');
  tt.ok(existsSync(`${bx2.opts.logFile}.1`), 'log.1 exists');
  tt.match(readFileSync(bx2.opts.logFile!, 'utf8'), /line-39\n$/, 'last line in the current log');
});

t.test('a failing create reports the runtime\'s error and leaves nothing', async (tt) => {
  const bx = box(tt, ['/no/such/binary']);
  const err = await startMonitor(bx.opts).then(() => null, (e: unknown) => e);
  tt.type(err, MonitorError);
  tt.match((err as Error).message, /no\/such\/binary|no such file/i, 'runtime error text surfaces');
  const deadline = Date.now() + 5000;
  while (existsSync(bx.opts.ctlSocket!) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  tt.same(existsSync(bx.root) ? readdirSync(bx.root) : [], [], 'runtime state removed');
  tt.same(cgroupDirs(join(bx.cgParent, bx.id)), [], 'no cgroup left');
  tt.match(readExitStatus(bx.opts.exitFile)?.error ?? '', /create/, 'exit record names the failure');
});

t.test('the monitor runs in its own session, on /dev/null, and is reaped; a missing binary is a clear error; no fd leaks', async (tt) => {
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  const bx = box(tt, ['sleep', '100']);
  const h = await startMonitor(bx.opts);
  const stat = readFileSync(`/proc/${h.monitorPid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  tt.equal(Number(f[3]), h.monitorPid, 'session leader (setsid)');
  tt.equal(Number(f[1]), process.pid, 'our child');
  const theirFds = readdirSync(`/proc/${h.monitorPid}/fd`).map(Number).filter((n) => n <= 2).length;
  tt.equal(theirFds, 3, 'stdio 0-2 present (on /dev/null)');
  tt.equal(readFileSync(`/proc/${h.monitorPid}/fd/0`, 'utf8'), '', 'stdin is /dev/null');
  execFileSync(RUNTIME, ['--root', bx.root, 'kill', bx.id, 'KILL']);
  await waitForExit(bx.opts.exitFile, h.monitorPid);
  tt.notOk(existsSync(`/proc/${h.monitorPid}`), 'the exited monitor was reaped, not left a zombie');
  tt.equal(fds(), before, 'no fd of ours left open');

  const missing = await startMonitor({ ...bx.opts, id: `${bx.id}-x`, monitorPath: '/no/such/berth-monitor' }).then(() => null, (e: unknown) => e);
  tt.type(missing, MonitorError);
  tt.match((missing as Error).message, /cannot run \/no\/such\/berth-monitor.*ENOENT/, 'names the binary and the errno');
  tt.equal(fds(), before, 'and leaks no fd');
});

t.test('bad options are refused before spawning', async (tt) => {
  const base = { runtime: RUNTIME, id: 'berth-x', bundle: '/tmp', exitFile: '/tmp/x' };
  await tt.rejects(startMonitor({ ...base, bundle: 'rel' }), /bundle: must be an absolute path/);
  await tt.rejects(startMonitor({ ...base, restart: 'sometimes' as 'no' }), /restart/);
});
