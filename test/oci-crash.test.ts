/**
 * kill -9 of `berth-oci create` part-way, as a node crash or an OOM kill of the caller would do
 * it, then what containerd and Docker run next: `state`, `list`, and `delete --force`. The
 * half-made container must be reported (not crash the CLI), and `delete --force` must leave
 * nothing: no state dir, no cgroup in any hierarchy, no process of the container, no mount.
 * Kills land at a fixed point (inside a createRuntime hook) and at a spread of delays.
 */
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeEnv, writeSpec, type TestEnv } from './helpers/oci.js';
import { waitpidNohang } from '../runtime/linux/libc.js';

t.setTimeout(180_000);
const BIN = join(import.meta.dirname, '..', 'bin', 'berth-oci.js');
let env: TestEnv;
t.before(() => { env = makeEnv(); });
t.teardown(async () => { await env.cleanup(); });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function oci(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const o = join(env.bundle, 'o.txt');
  const e = join(env.bundle, 'e.txt');
  const out = openSync(o, 'w');
  const err = openSync(e, 'w');
  try {
    const r = spawnSync(process.execPath, [BIN, '--root', env.root, ...args], { stdio: ['ignore', out, err], timeout: 30_000 });
    return { code: r.status, stdout: readFileSync(o, 'utf8'), stderr: readFileSync(e, 'utf8') };
  } finally { closeSync(out); closeSync(err); }
}

/** Start `berth-oci create` detached from our stdio (its init inherits what it is given). */
function startCreate(id: string): { pid: number; exited: Promise<void> } {
  const c = spawn(process.execPath, [BIN, '--root', env.root, 'create', '--bundle', env.bundle, '--pid-file', join(env.bundle, `${id}.pid`), id], { stdio: 'ignore' });
  return { pid: c.pid!, exited: new Promise((r) => c.once('exit', () => r())) };
}

/**
 * The container's processes: those in its cgroup, and those whose command line names its id (an
 * init cloned from `berth-oci create` carries that command line until it execs, and it is in
 * the cgroup only once create has moved it there).
 */
function processesIn(cgroupsPath: string, id?: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cgroup`, 'utf8').includes(cgroupsPath)) out.push(Number(p));
      else if (id && readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(id)) out.push(Number(p));
    } catch { /* gone */ }
  }
  return out;
}

function cgroupDirs(cgroupsPath: string): string[] {
  const out: string[] = [];
  if (existsSync(`/sys/fs/cgroup${cgroupsPath}`)) out.push(`/sys/fs/cgroup${cgroupsPath}`);
  for (const h of readdirSync('/sys/fs/cgroup')) if (existsSync(`/sys/fs/cgroup/${h}${cgroupsPath}`)) out.push(`/sys/fs/cgroup/${h}${cgroupsPath}`);
  return out;
}

/** Reap the container's processes that are our children (CLONE_PARENT makes the init the caller's child, as with a shim). */
function reapOurs(pids: number[]): void {
  for (const p of pids) {
    try {
      const ppid = Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === process.pid) waitpidNohang(p);
    } catch { /* gone */ }
  }
}

async function checkClean(t: Test, id: string, cgroupsPath: string, what: string): Promise<void> {
  const st = oci(['state', id]);
  t.ok(st.code === 0 || /does not exist|not found/i.test(st.stderr), `${what}: state answers (${st.code}: ${(st.stdout + st.stderr).trim().slice(0, 120)})`);
  t.equal(oci(['list']).code, 0, `${what}: list still works`);
  const del = oci(['delete', '--force', id]);
  t.ok(del.code === 0 || /does not exist|not found/i.test(del.stderr), `${what}: delete --force (${del.code}: ${del.stderr.trim()})`);
  for (let i = 0; i < 100 && processesIn(cgroupsPath, id).length > 0; i++) { reapOurs(processesIn(cgroupsPath, id)); await sleep(20); }
  const left = processesIn(cgroupsPath, id);
  t.same(left, [], `${what}: no process of the container`);
  for (const p of left) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } } // not left for later tests
  t.same(cgroupDirs(cgroupsPath), [], `${what}: no cgroup`);
  t.notOk(existsSync(join(env.root, id)), `${what}: no state dir`);
  t.notOk(readFileSync('/proc/self/mountinfo', 'utf8').includes(env.bundle), `${what}: no mount of the bundle`);
}

t.test('killed inside a createRuntime hook', async (t) => {
  const id = env.id('hook');
  const hookPid = join(env.bundle, 'hook.pid');
  const spec = env.spec(['/bin/sleep', '1000'], (s) => {
    s.hooks = { createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', `echo $$ > ${hookPid}; exec sleep 30`] }] };
  });
  writeSpec(env.bundle, spec);
  const c = startCreate(id);
  for (let i = 0; i < 500 && !existsSync(hookPid); i++) await sleep(10);
  t.ok(existsSync(hookPid), 'the hook ran');
  process.kill(c.pid, 'SIGKILL');
  await c.exited;
  try { process.kill(Number(readFileSync(hookPid, 'utf8')), 'SIGKILL'); } catch { /* gone */ }
  t.ok(cgroupDirs(spec.linux!.cgroupsPath!).length > 0, 'the cgroup was made before the kill');
  await checkClean(t, id, spec.linux!.cgroupsPath!, 'hook');
});

t.test('killed right after it let the init go: state.json names the init, delete --force kills it', async (t) => {
  // Deterministic version of one point of the spread below: the creator (Runtime.create, as
  // `berth-oci create` runs it) SIGKILLs itself as soon as it has sent GO. The init goes on to the
  // exec fifo and waits there for a start that never comes, so state.json must already name it.
  const id = env.id('aftergo');
  const spec = env.spec(['/bin/sleep', '1000']);
  writeSpec(env.bundle, spec);
  const spawnMod = new URL('../runtime/linux/spawn.ts', import.meta.url).href;
  const runtimeMod = new URL('../runtime/oci/runtime.ts', import.meta.url).href;
  const script = `const { PendingInit } = await import(${JSON.stringify(spawnMod)});
    const go = PendingInit.prototype.go;
    PendingInit.prototype.go = function () { go.call(this); process.kill(process.pid, 'SIGKILL'); };
    const { Runtime } = await import(${JSON.stringify(runtimeMod)});
    const [root, bundle, id] = process.argv.slice(1);
    await new Runtime({ root }).create(id, { bundle, detached: true, stdio: [-1, -1, -1] });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, env.root, env.bundle, id], { stdio: 'ignore', timeout: 60_000 });
  t.equal(r.signal, 'SIGKILL', 'the creator died right after GO');
  // the init (the creator's clone: same command line, id included) gets to the exec fifo
  for (let i = 0; i < 200 && processesIn(spec.linux!.cgroupsPath!, id).length === 0; i++) await sleep(10);
  const st = JSON.parse(oci(['state', id]).stdout || '{}') as { pid?: number; status?: string };
  t.ok(st.pid && st.pid > 0, `state.json names the init (${JSON.stringify(st)})`);
  await checkClean(t, id, spec.linux!.cgroupsPath!, 'killed after GO');
});

t.test('killed at a spread of points in create', async (t) => {
  // Time one whole create here (Node's start-up included), then kill at fractions of it, so the
  // kills land across the create itself rather than in start-up alone.
  const probe = env.id('probe');
  const probeSpec = env.spec(['/bin/sleep', '1000']);
  writeSpec(env.bundle, probeSpec);
  const t0 = performance.now();
  const p = startCreate(probe);
  await p.exited;
  const whole = performance.now() - t0;
  await checkClean(t, probe, probeSpec.linux!.cgroupsPath!, `completed create (${whole.toFixed(0)} ms)`);
  const states = new Map<string, number>();
  for (const f of [0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1]) {
    const delay = Math.round(f * whole);
    const id = env.id(`k${delay}`);
    const spec = env.spec(['/bin/sleep', '1000']);
    writeSpec(env.bundle, spec);
    const c = startCreate(id);
    await sleep(delay);
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* already done */ }
    await c.exited;
    const st = oci(['state', id]);
    const key = st.code === 0 ? (JSON.parse(st.stdout) as { status: string }).status : 'absent';
    states.set(key, (states.get(key) ?? 0) + 1);
    await checkClean(t, id, spec.linux!.cgroupsPath!, `kill after ${delay} ms`);
  }
  t.comment(`states seen after the kills: ${JSON.stringify(Object.fromEntries(states))}`);
});
