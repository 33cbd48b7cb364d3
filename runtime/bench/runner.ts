/**
 * Runs the isolation experiments one after another (never concurrently: they measure CPU on a
 * small machine) and assembles the BenchReport. While it runs, SIGINT/SIGTERM handlers clean up
 * every live experiment environment (containers, cgroups, mounts, temp dirs) and exit 130.
 */
import { availableParallelism, loadavg, release } from 'node:os';
import { detectCgroupDriver } from '../cgroups/index.js';
import { liveEnvs } from './env.js';
import { BenchError, DEFAULT_STORE_ROOT, assertImageAvailable } from './rootfs.js';
import { round } from './stats.js';
import { EXPERIMENT_IDS, type BenchReport, type ExperimentId, type ExperimentResult, type Verdict } from './types.js';
import type { ExperimentContext } from './experiments/context.js';
import { cpuQuotaExperiment } from './experiments/cpu-quota.js';
import { cpuWeightExperiment } from './experiments/cpu-weight.js';
import { noisyNeighbourExperiment } from './experiments/noisy-neighbour.js';
import { memoryExperiment } from './experiments/memory.js';
import { pidsExperiment } from './experiments/pids.js';
import { blkioExperiment } from './experiments/blkio.js';

export interface IsolationOptions {
  /** Seconds of measurement per experiment run (default 5). */
  durationS?: number;
  image?: string;
  storeRoot?: string;
  /** Subset of experiments, in the canonical order. Default: all. */
  only?: ExperimentId[];
  progress?: (msg: string) => void;
  /** Install SIGINT/SIGTERM cleanup handlers (the CLI does; tests do not). */
  handleSignals?: boolean;
}

const RUNNERS: Record<ExperimentId, (ctx: ExperimentContext) => Promise<ExperimentResult>> = {
  'cpu-quota': (c) => cpuQuotaExperiment(c),
  'cpu-weight': (c) => cpuWeightExperiment(c),
  'noisy-neighbour': (c) => noisyNeighbourExperiment(c),
  memory: (c) => memoryExperiment(c),
  pids: (c) => pidsExperiment(c),
  blkio: (c) => blkioExperiment(c),
};

/** Parse "--only a,b" into experiment ids, with a clear error for unknown names. */
export function parseOnly(value: string): ExperimentId[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new BenchError(`--only needs a comma-separated list of experiments: ${EXPERIMENT_IDS.join(', ')}`);
  for (const n of names) {
    if (!(EXPERIMENT_IDS as readonly string[]).includes(n)) throw new BenchError(`unknown experiment "${n}"; choose from ${EXPERIMENT_IDS.join(', ')}`);
  }
  return EXPERIMENT_IDS.filter((id) => names.includes(id));
}

/** Validate --duration: a number of seconds from 0.5 to 600. */
export function parseDuration(value: string | number): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n) || n < 0.5 || n > 600) throw new BenchError(`--duration must be a number of seconds from 0.5 to 600, not ${JSON.stringify(value)}`);
  return n;
}

/** Kill/remove everything any live experiment made (synchronous: called from a signal handler). */
export function cleanupAllSync(): void {
  for (const env of [...liveEnvs]) {
    try { env.cleanupSync(); } catch { /* keep going */ }
  }
}

function installSignalHandlers(): () => void {
  const handler = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nberth bench: ${sig}, cleaning up…\n`);
    cleanupAllSync();
    process.exit(130);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

export async function runIsolationBench(opts: IsolationOptions = {}): Promise<BenchReport> {
  if (process.getuid && process.getuid() !== 0) throw new BenchError('berth bench isolation creates containers and cgroups: run it as root');
  const durationS = parseDuration(opts.durationS ?? 5);
  const ids = opts.only ?? [...EXPERIMENT_IDS];
  const driver = detectCgroupDriver();
  const ctx: ExperimentContext = {
    durationS,
    warmupS: Math.min(1, Math.max(0.3, durationS / 5)),
    image: opts.image,
    storeRoot: opts.storeRoot ?? DEFAULT_STORE_ROOT,
    progress: opts.progress ?? (() => {}),
  };
  // A missing image is the user's error for the whole run, not one experiment's: check first.
  if (opts.image) await assertImageAvailable(opts.storeRoot ?? DEFAULT_STORE_ROOT, opts.image);
  const removeHandlers = opts.handleSignals ? installSignalHandlers() : () => {};
  const startedAt = new Date().toISOString();
  const load = loadavg().map((x) => round(x, 2));
  const experiments: ExperimentResult[] = [];
  let rootfs = opts.image ? opts.image : 'busybox-static (/bin/busybox)';
  try {
    for (const id of ids) {
      const t0 = Date.now();
      try {
        experiments.push(await RUNNERS[id](ctx));
      } catch (e) {
        experiments.push({
          id, title: id, method: '', rows: [], charts: [], data: {},
          error: e instanceof Error ? e.message : String(e), wallSeconds: round((Date.now() - t0) / 1000, 2),
        });
      }
    }
  } finally {
    removeHandlers();
  }
  if (opts.image) rootfs = `image ${opts.image}`;
  const summary: Record<Verdict, number> = { pass: 0, warn: 0, fail: 0, skipped: 0 };
  for (const e of experiments) {
    if (e.error) summary.fail++;
    for (const r of e.rows) summary[r.verdict]++;
  }
  return {
    tool: 'berth bench isolation', startedAt, finishedAt: new Date().toISOString(),
    host: { kernel: release(), cpus: availableParallelism(), cgroupVersion: driver.version, loadavg: load },
    rootfs, durationSeconds: durationS, experiments, summary,
  };
}
