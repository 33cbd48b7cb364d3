/**
 * `npm run bench -- run`: `berth run --rm IMAGE true` with the image present (CLI from dist,
 * without NODE_EXTRA_CA_CERTS), the berth-monitor's RSS, and the time from `run -d` to the
 * container's process running. Own registry, root, state, cgroup parent and bridge; cleaned up.
 * benchRun() returns the numbers; benchRunCli() prints them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { startRegistry } from '../fixtures/registry.js';
import { baseImage, pushTestImage } from '../fixtures/images.js';
import { cliEnv, median, printTable, timeIt } from './util.js';

export interface BenchRunOptions { runs?: number; network?: 'none' | 'bridge' }
export interface BenchRunResult {
  /** ms per `berth run --rm IMAGE true`, one per run. */
  runMs: number[];
  medianRunMs: number;
  /** berth-monitor resident set size while a container runs (KiB). */
  monitorRssKiB: number;
  /** ms from invoking `berth run -d` to the container's process being started (CLI returned). */
  runDetachedMs: number[];
  medianRunDetachedMs: number;
}

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function benchRun(opts: BenchRunOptions = {}): Promise<BenchRunResult> {
  const runs = opts.runs ?? 20;
  const rand = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-run-'));
  const cg = `berth-bench-${rand}`;
  const bridge = `bbb${rand}`;
  const env = { ...cliEnv(), BERTH_CGROUP_PARENT: cg, BERTH_DEFAULT_BRIDGE: bridge, BERTH_DEFAULT_SUBNET: `10.233.${parseInt(rand.slice(0, 2), 16)}.0/24` };
  const reg = await startRegistry();
  const berth = (args: string[]): string => {
    const r = spawnSync(process.execPath, [join(repo, 'bin/berth.js'), '--root', join(dir, 'root'), '--state', join(dir, 's'), ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`berth ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  try {
    const { ref } = await pushTestImage(reg.host, 'bench/busybox', 'latest', await baseImage());
    berth(['pull', ref]);
    const net = ['--network', opts.network ?? 'bridge'];
    const runMs = await timeIt(runs, () => { berth(['run', '--rm', ...net, ref, 'true']); });
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
    return { runMs, medianRunMs: median(runMs), monitorRssKiB, runDetachedMs, medianRunDetachedMs: median(runDetachedMs) };
  } finally {
    try { spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* gone */ }
    for (const c of readdirSync('/sys/fs/cgroup')) {
      const p = join('/sys/fs/cgroup', c, cg);
      if (existsSync(p)) { try { rmdirSync(p); } catch { /* busy */ } }
    }
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchRunCli(): Promise<void> {
  const r = await benchRun({ runs: Number(process.env.BENCH_RUNS ?? 20) });
  printTable('run: `berth run --rm IMAGE true` (image present, bridge network; CLI from dist, no NODE_EXTRA_CA_CERTS)', [{ name: 'berth', samples: r.runMs }]);
  printTable('run -d: from invoking the CLI to the process started', [{ name: 'berth run -d', samples: r.runDetachedMs }]);
  console.log(`berth-monitor RSS while a container runs: ${r.monitorRssKiB} KiB`);
  console.log('(podman/docker side by side: not wired yet)');
}
