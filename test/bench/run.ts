/**
 * `npm run bench -- run`: `berth run --rm IMAGE true` with the image present (CLI from dist,
 * without NODE_EXTRA_CA_CERTS), the berth-monitor's RSS, and the time from `run -d` to the
 * container's process running. Own registry, root, state, cgroup parent and bridge; cleaned up.
 * benchRun() returns the numbers; benchRunCli() prints them side by side with `podman run --rm`
 * and `docker run --rm` (a private dockerd), both with runc and --network none, as set up in
 * TEST-ENVIRONMENT.md, measured in the same run, interleaved round-robin so load affects all alike.
 * Each keeps its run-time state (berth --state, podman --runroot, dockerd --exec-root) on one
 * tmpfs, as under a node's /run; this VM's /run is journal-less ext4 (see lifecycle.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, existsSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { startRegistry } from '../fixtures/registry.js';
import { baseImage, pushTestImage } from '../fixtures/images.js';
import { cliEnv, median, printTable, which } from './util.js';

export interface BenchRunOptions {
  runs?: number;
  network?: 'none' | 'bridge';
  /** Also time podman and docker (runc, --network none) in the same run. */
  compare?: boolean;
}
export interface BenchRunResult {
  /** ms per `berth run --rm IMAGE true`, one per run. */
  runMs: number[];
  medianRunMs: number;
  /** berth-monitor resident set size while a container runs (KiB). */
  monitorRssKiB: number;
  /** ms from invoking `berth run -d` to the container's process being started (CLI returned). */
  runDetachedMs: number[];
  medianRunDetachedMs: number;
  /** ms per `berth run --rm --network none IMAGE true` (compare only). */
  runNoneMs: number[];
  /** ms per `podman run --rm` / `docker run --rm` (compare only; empty when not available). */
  podmanMs: number[];
  dockerMs: number[];
  notes: string[];
}

/** A command to time, with its setup/teardown; null when the tool is not usable here. */
interface Contender { name: string; run: () => void; stop: () => Promise<void> }

function sh(cmd: string, args: string[], env?: NodeJS.ProcessEnv): { code: number | null; out: string; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'], env: env ?? cliEnv() });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function unmountUnder(dir: string): void {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n').reverse()) {
    const mp = line.split(' ')[4];
    if (mp && mp.startsWith(dir)) spawnSync('umount', ['-l', mp]);
  }
}

function rmCgroupTree(parent: string): void {
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const root = join('/sys/fs/cgroup', h, parent);
    if (!existsSync(root)) continue;
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
      try { rmdirSync(d); } catch { /* busy */ }
    };
    try { walk(root); } catch { /* gone */ }
  }
}

/** podman 4.3 with runc, as TEST-ENVIRONMENT.md sets it up; image pulled from the registry. */
function podmanContender(dir: string, runDir: string, ref: string, rand: string): Contender | null {
  if (!which('podman')) return null;
  const pd = join(dir, 'podman');
  const cg = `/berth-bench-podman-${rand}`;
  const base = ['--root', join(pd, 'root'), '--runroot', join(runDir, 'podman'), '--storage-driver', 'overlay', '--runtime', '/usr/bin/runc', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
  const p = sh('podman', [...base, 'pull', '-q', '--tls-verify=false', ref]);
  const stop = async (): Promise<void> => {
    sh('podman', [...base, 'rm', '--all', '--force']);
    sh('podman', [...base, 'system', 'reset', '--force']);
    unmountUnder(pd);
    rmCgroupTree(cg);
  };
  if (p.code !== 0) { void stop(); throw new Error(`podman pull: ${p.err}`); }
  const args = [...base, 'run', '--rm', '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768', '--cgroup-parent', cg, ref, 'true'];
  return {
    name: 'podman', stop,
    run: () => { const r = sh('podman', args); if (r.code !== 0) throw new Error(`podman run: ${r.err}`); },
  };
}

/** A private dockerd (docker.io 20.10, runc), as test/oci-docker.test.ts starts it. */
async function dockerContender(dir: string, runDir: string, ref: string, registryHost: string, rand: string): Promise<Contender | null> {
  const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((x) => existsSync(x));
  if (!dockerd || !existsSync('/usr/bin/docker')) return null;
  const dd = join(dir, 'docker');
  const sock = join(dd, 'docker.sock');
  const cg = `/berth-bench-docker-${rand}`;
  const docker = (args: string[]) => sh('/usr/bin/docker', ['-H', `unix://${sock}`, ...args]);
  sh('mkdir', ['-p', dd]);
  const log = openSync(join(dd, 'dockerd.log'), 'w');
  const daemon: ChildProcess = spawn(dockerd, [
    '--iptables=false', '--ip-masq=false', '--bridge=none', '--data-root', join(dd, 'data'), '--exec-root', join(runDir, 'docker'),
    '--host', `unix://${sock}`, '--pidfile', join(dd, 'docker.pid'), '--cgroup-parent', cg, '--insecure-registry', registryHost,
    '--default-ulimit', 'nofile=20000:20000', '--default-ulimit', 'nproc=32768:32768',
  ], { stdio: ['ignore', log, log] });
  closeSync(log);
  const stop = async (): Promise<void> => {
    if (daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => { daemon.once('exit', r); setTimeout(r, 15_000); });
    }
    unmountUnder(dd);
    rmCgroupTree(cg);
  };
  for (let i = 0; i < 150 && docker(['version']).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
  const p = docker(['pull', '-q', ref]);
  if (p.code !== 0) { await stop(); throw new Error(`docker pull: ${p.err}`); }
  return {
    name: 'docker', stop,
    run: () => { const r = docker(['run', '--rm', '--network', 'none', ref, 'true']); if (r.code !== 0) throw new Error(`docker run: ${r.err}`); },
  };
}

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function benchRun(opts: BenchRunOptions = {}): Promise<BenchRunResult> {
  const runs = opts.runs ?? 20;
  const rand = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-run-'));
  const runDir = join(dir, 'run');
  mkdirSync(runDir);
  const cg = `berth-bench-${rand}`;
  const bridge = `bbb${rand}`;
  const env = { ...cliEnv(), BERTH_CGROUP_PARENT: cg, BERTH_DEFAULT_BRIDGE: bridge, BERTH_DEFAULT_SUBNET: `10.233.${parseInt(rand.slice(0, 2), 16)}.0/24` };
  const reg = await startRegistry();
  const berth = (args: string[]): string => {
    const r = spawnSync(process.execPath, [join(repo, 'bin/berth.js'), '--root', join(dir, 'root'), '--state', join(runDir, 'berth'), ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`berth ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  try {
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700', 'berth-bench', runDir]).status !== 0) throw new Error(`cannot mount a tmpfs on ${runDir}`);
    const { ref } = await pushTestImage(reg.host, 'bench/busybox', 'latest', await baseImage());
    berth(['pull', ref]);
    const net = ['--network', opts.network ?? 'bridge'];
    const contenders: Contender[] = [];
    const notes: string[] = [];
    if (opts.compare) {
      try { const c = podmanContender(dir, runDir, ref, rand); if (c) contenders.push(c); else notes.push('podman: not installed'); } catch (e) { notes.push(`podman: ${(e as Error).message.split('\n')[0]}`); }
      try { const c = await dockerContender(dir, runDir, ref, reg.host, rand); if (c) contenders.push(c); else notes.push('docker: not installed'); } catch (e) { notes.push(`docker: ${(e as Error).message.split('\n')[0]}`); }
    }
    // Round-robin: each round runs every contender once, so a busy moment hits all of them.
    const rows: { name: string; run: () => void; ms: number[] }[] = [
      { name: 'berth', run: () => { berth(['run', '--rm', ...net, ref, 'true']); }, ms: [] },
      ...(opts.compare ? [{ name: 'berth-none', run: () => { berth(['run', '--rm', '--network', 'none', ref, 'true']); }, ms: [] }] : []),
      ...contenders.map((c) => ({ name: c.name, run: c.run, ms: [] as number[] })),
    ];
    try {
      for (const r of rows) { r.run(); r.run(); } // warm-up
      for (let i = 0; i < runs; i++) {
        for (const r of rows) {
          const t0 = performance.now();
          r.run();
          r.ms.push(performance.now() - t0);
        }
      }
    } finally {
      for (const c of contenders) await c.stop().catch(() => {});
    }
    const ms = (n: string): number[] => rows.find((r) => r.name === n)?.ms ?? [];
    const runMs = ms('berth');
    const runDetachedMs: number[] = [];
    let monitorRssKiB = 0;
    for (let i = 0; i < Math.min(runs, 10); i++) {
      const t0 = performance.now();
      const id = berth(['run', '-d', ...net, ref, 'sleep', '100']).trim();
      runDetachedMs.push(performance.now() - t0);
      if (i === 0) {
        const rec = JSON.parse(readFileSync(join(dir, 'root', 'containers', id, 'container.json'), 'utf8')) as { monitorPid: number };
        const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${rec.monitorPid}/status`, 'utf8'));
        monitorRssKiB = m ? Number(m[1]) : 0;
      }
      berth(['rm', '-f', id]);
    }
    return {
      runMs, medianRunMs: median(runMs), monitorRssKiB, runDetachedMs, medianRunDetachedMs: median(runDetachedMs),
      runNoneMs: ms('berth-none'), podmanMs: ms('podman'), dockerMs: ms('docker'), notes,
    };
  } finally {
    try { spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* gone */ }
    for (const c of readdirSync('/sys/fs/cgroup')) {
      const p = join('/sys/fs/cgroup', c, cg);
      if (existsSync(p)) { try { rmdirSync(p); } catch { /* busy */ } }
    }
    await reg.stop();
    unmountUnder(runDir);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchRunCli(): Promise<void> {
  const r = await benchRun({ runs: Number(process.env.BENCH_RUNS ?? 20), compare: process.env.BENCH_COMPARE !== '0' });
  const rows = [{ name: 'berth (bridge)', samples: r.runMs }];
  if (r.runNoneMs.length) rows.push({ name: 'berth (none)', samples: r.runNoneMs });
  if (r.podmanMs.length) rows.push({ name: 'podman (none)', samples: r.podmanMs });
  if (r.dockerMs.length) rows.push({ name: 'docker (none)', samples: r.dockerMs });
  printTable('run: `X run --rm IMAGE true` (image present; berth CLI from dist, no NODE_EXTRA_CA_CERTS; podman/docker with runc; interleaved)', rows);
  const best = Math.min(...[r.podmanMs, r.dockerMs].filter((x) => x.length).map(median));
  if (Number.isFinite(best)) {
    // like for like: podman and docker run with --network none here (docker's bridge is off on
    // these machines, TEST-ENVIRONMENT.md); berth's default bridge is compared to them as well
    if (r.runNoneMs.length) console.log(`berth --network none vs the faster of podman/docker (--network none): ${(best / median(r.runNoneMs)).toFixed(2)}× (target 2×)`);
    console.log(`berth on its default bridge (CNI ADD+DEL) vs the same, which have no network: ${(best / r.medianRunMs).toFixed(2)}×`);
  }
  for (const n of r.notes) console.log(`note: ${n}`);
  printTable('run -d: from invoking the CLI to the process started', [{ name: 'berth run -d', samples: r.runDetachedMs }]);
  console.log(`berth-monitor RSS while a container runs: ${r.monitorRssKiB} KiB`);
}
