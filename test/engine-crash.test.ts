/**
 * `berth run -d` killed with SIGKILL at a spread of points (its whole run timed first, Node's
 * start-up included), with `--network none` and on the default bridge, and `berth rm -f` of a
 * running container killed the same way: the next `berth ps -a` still works, `berth rm -f` of
 * whatever it lists removes it, and then nothing of the container is left: no process (the init clone carries berth's command line until it execs, so a unique
 * argument finds it), mount, cgroup, network namespace file, veth or IP address allocation.
 * The CLI runs from its bundle (bin/berth.js), as users run it.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { engineCliEnv, mountsUnder, type CliResult } from './helpers/engine-cli.js';

t.setTimeout(300000);

const BIN = resolve(import.meta.dirname, '..', 'bin', 'berth.js');
const E = engineCliEnv('crash');
let image = '';

t.before(async () => { image = await E.setup(); });
t.teardown(() => E.teardown());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The bundled CLI with this environment; resolves when it has exited. */
function cli(args: string[]): { pid: number; done: Promise<CliResult> } {
  const env = { ...E.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const c = spawn(process.execPath, [BIN, '--root', E.root, '--state', E.state, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  c.stdout.on('data', (d) => { stdout += d; });
  c.stderr.on('data', (d) => { stderr += d; });
  return { pid: c.pid!, done: new Promise((res) => c.on('close', (code) => res({ code: code ?? -1, stdout, stderr }))) };
}

/** Processes (not zombies) whose command line has `token` as one of its arguments. */
function processesWith(token: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(token)) continue;
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z') out.push(Number(p));
    } catch { /* gone */ }
  }
  return out;
}

/** Directories below the cgroup parent, in every hierarchy. */
function containerCgroups(): string[] {
  const out: string[] = [];
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const p = join('/sys/fs/cgroup', h, E.cgParent);
    if (existsSync(p)) out.push(...readdirSync(p, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(p, e.name)));
  }
  return out;
}

const veths = (): string[] => {
  try { return execFileSync('ip', ['-o', 'link', 'show', 'master', E.bridge], { encoding: 'utf8' }).split('\n').filter(Boolean); } catch { return []; }
};

/** host-local's allocations: one file per address in ipam/<network>/ (plus its own bookkeeping). */
function allocations(): string[] {
  const ipam = join(E.root, 'ipam');
  if (!existsSync(ipam)) return [];
  return readdirSync(ipam).flatMap((n) => readdirSync(join(ipam, n)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)));
}

/** After the kill and a `rm -f` of what ps -a lists: nothing of the container with `token` is left. */
async function nothingLeft(t: Test, token: string, network: string, what: string): Promise<void> {
  for (let i = 0; i < 100 && processesWith(token).length; i++) await sleep(20);
  const left = processesWith(token);
  t.same(left, [], `${what}: no process of the container`);
  for (const p of left) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } } // not left for later checks
  t.same(mountsUnder(E.dir), [], `${what}: nothing mounted`);
  t.same(containerCgroups(), [], `${what}: no cgroup`);
  const netns = join(E.state, 'netns');
  t.same(existsSync(netns) ? readdirSync(netns) : [], [], `${what}: no network namespace file`);
  if (network === 'bridge') {
    for (let i = 0; i < 50 && veths().length; i++) await sleep(20); // a veth dies with its namespace, in the background
    t.same(veths(), [], `${what}: no veth on the bridge`);
    t.same(allocations(), [], `${what}: no address still allocated`);
  }
}

for (const network of ['none', 'bridge']) {
  t.test(`run -d --network ${network}, killed at a spread of points`, async (t) => {
    const run = (token: string) => cli(['run', '-d', '--network', network, image, 'sleep', token]);
    const t0 = performance.now();
    const probe = await run('1001').done;
    const whole = performance.now() - t0;
    t.equal(probe.code, 0, `a whole run -d (${whole.toFixed(0)} ms): ${probe.stderr}`);
    t.equal((await cli(['rm', '-f', probe.stdout.trim()]).done).code, 0, 'removed');
    const seen = new Map<string, number>();
    let n = 0;
    for (const f of [0.3, 0.45, 0.55, 0.62, 0.68, 0.74, 0.8, 0.86, 0.92, 0.98, 1.05, 1.2]) {
      const token = String(2000 + n++); // sleep's argument: unique to this container
      const delay = Math.round(f * whole);
      const c = run(token);
      await sleep(delay);
      try { process.kill(c.pid, 'SIGKILL'); } catch { /* already done */ }
      const killed = await c.done;
      const what = `killed after ${delay} ms (${killed.code === 0 ? 'it had finished' : 'mid-run'})`;
      const ps = await cli(['ps', '-a', '-q', '--no-trunc']).done;
      t.equal(ps.code, 0, `${what}: ps -a works (${ps.stderr.trim()})`);
      const ids = ps.stdout.split('\n').filter(Boolean);
      const key = ids.length ? (JSON.parse((await cli(['inspect', ids[0]]).done).stdout || '[{}]') as { State?: { Status?: string } }[])[0]?.State?.Status ?? '?' : 'absent';
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (ids.length) {
        const rm = await cli(['rm', '-f', ...ids]).done;
        t.equal(rm.code, 0, `${what}: rm -f (${rm.stderr.trim()})`);
      }
      await nothingLeft(t, token, network, what);
    }
    t.comment(`after the kill, the container was: ${JSON.stringify(Object.fromEntries(seen))}`);
  });
}

t.test('rm -f of a running container, killed at a spread of points', async (t) => {
  const start = async (token: string): Promise<string> => {
    const r = await cli(['run', '-d', image, 'sleep', token]).done; // the default bridge: the most to undo
    if (r.code !== 0) throw new Error(`run -d: ${r.stderr}`);
    return r.stdout.trim();
  };
  const probeId = await start('3999');
  const t0 = performance.now();
  const probe = await cli(['rm', '-f', probeId]).done;
  const whole = performance.now() - t0;
  t.equal(probe.code, 0, `a whole rm -f (${whole.toFixed(0)} ms): ${probe.stderr}`);
  let n = 0;
  for (const f of [0.4, 0.55, 0.65, 0.75, 0.85, 0.95, 1.1]) {
    const token = String(3000 + n++);
    const id = await start(token);
    const delay = Math.round(f * whole);
    const c = cli(['rm', '-f', id]);
    await sleep(delay);
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* already done */ }
    const killed = await c.done;
    const what = `rm -f killed after ${delay} ms (${killed.code === 0 ? 'it had finished' : 'mid-way'})`;
    const ps = await cli(['ps', '-a', '-q', '--no-trunc']).done;
    t.equal(ps.code, 0, `${what}: ps -a works (${ps.stderr.trim()})`);
    const ids = ps.stdout.split('\n').filter(Boolean);
    if (ids.length) {
      const rm = await cli(['rm', '-f', ...ids]).done;
      t.equal(rm.code, 0, `${what}: rm -f again (${rm.stderr.trim()})`);
    }
    await nothingLeft(t, token, 'bridge', what);
  }
});

t.test('then nothing is left: no cgroup of this test\'s parent in any hierarchy, no mount, no bridge', async (t) => {
  await E.teardown(); // what t.teardown runs anyway (idempotent): removes the registry, temp dir and parent
  const parents = readdirSync('/sys/fs/cgroup').map((h) => join('/sys/fs/cgroup', h, E.cgParent)).filter((p) => existsSync(p));
  t.same(parents, [], 'the cgroup parent and everything under it are gone');
  t.same(mountsUnder(E.dir), [], 'nothing mounted under the test\'s directory');
  t.same(veths(), [], 'no veth');
  t.throws(() => execFileSync('ip', ['link', 'show', E.bridge], { stdio: 'ignore' }), 'the bridge is gone');
});
