/**
 * Noisy neighbour. Method: the victim is a busybox shell doing a fixed amount of work per
 * iteration (N arithmetic loop steps) and writing one line to a FIFO after each iteration; the
 * harness timestamps each line as it arrives (epoll-driven socket on the FIFO, monotonic clock),
 * so iteration time = gap between consecutive lines. busybox `date` has no %N, so timing inside
 * the container would only have 1 s resolution; harness-side timestamps add well under a
 * millisecond of jitter against iterations of several milliseconds. Victim and hog are pinned to
 * the same CPU so they really compete. Phases: victim alone; next to a CPU hog with no quota
 * (CFS gives each cgroup half the CPU: ~2x slower); the same hog after `update` gives it a
 * quota q (the victim should get 1 - q of the CPU: ~1/(1-q) slower on average, with p99 showing
 * the periods in which the hog runs).
 */
import { openSync, closeSync, constants as fsConstants } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { BenchEnv } from '../env.js';
import { now, sleep } from '../sampling.js';
import { errorPct, histogram, percentile, round, verdictFor } from '../stats.js';
import { mknod, S_IFIFO } from '../../linux/libc.js';
import type { Chart, ExperimentResult, Measurement } from '../types.js';
import type { ExperimentContext } from './context.js';
import { CPU_PERIOD_US } from './cpu-quota.js';

export interface NoisyOptions {
  /** Loop steps per iteration (fixed work). */
  work?: number;
  /** Quota given to the hog in the last phase, CPUs. */
  hogQuota?: number;
  cpu?: string;
}

interface Phase { name: string; from: number; to: number; expected: number | null }

export async function noisyNeighbourExperiment(ctx: ExperimentContext, opts: NoisyOptions = {}): Promise<ExperimentResult> {
  const started = Date.now();
  const work = opts.work ?? 5000;
  const q = opts.hogQuota ?? 0.25;
  const cpu = opts.cpu ?? '0';
  const env = await BenchEnv.create({ name: 'noisy', image: ctx.image, storeRoot: ctx.storeRoot });
  const stamps: number[] = [];
  const phases: Phase[] = [];
  let sock: net.Socket | null = null;
  let wfd = -1;
  const rows: Measurement[] = [];
  const charts: Chart[] = [];
  let data: Record<string, unknown> = {};
  try {
    const fifo = join(env.dir, 'victim.fifo');
    mknod(fifo, S_IFIFO | 0o600);
    const rfd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    sock = new net.Socket({ fd: rfd, readable: true, writable: false });
    sock.on('data', (chunk: Buffer) => {
      const t = now();
      for (const b of chunk) if (b === 10) stamps.push(t);
    });
    sock.on('error', () => { /* closed at cleanup */ });
    wfd = openSync(fifo, fsConstants.O_WRONLY);
    const victimScript = `while :; do i=0; while [ $i -lt ${work} ]; do i=$((i+1)); done; echo; done`;
    const runPhase = async (name: string, expected: number | null) => {
      ctx.progress(`noisy-neighbour: ${name}`);
      await sleep(ctx.warmupS * 1000);
      const from = now();
      await sleep(ctx.durationS * 1000);
      phases.push({ name, from, to: now(), expected });
    };
    await env.start('victim', ['/bin/sh', '-c', victimScript], { stdout: wfd, resources: { cpu: { cpus: cpu } } });
    closeSync(wfd);
    wfd = -1;
    await runPhase('alone', null);
    const hog = await env.start('hog', ['/bin/sh', '-c', 'while :; do :; done'], { resources: { cpu: { cpus: cpu } } });
    await runPhase('hog, no quota', 2);
    env.rt.update(hog, { cpu: { quota: Math.round(q * CPU_PERIOD_US), period: CPU_PERIOD_US } });
    await runPhase(`hog, quota ${q} CPU`, 1 / (1 - q));
    const iter = (p: Phase): number[] => {
      const out: number[] = [];
      for (let k = 1; k < stamps.length; k++) if (stamps[k - 1] >= p.from && stamps[k] <= p.to) out.push((stamps[k] - stamps[k - 1]) * 1000);
      return out;
    };
    const perPhase = phases.map((p) => ({ p, it: iter(p) }));
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
    const base = mean(perPhase[0].it);
    const hist: Chart = { title: `Victim iteration time (${work} shell loop steps per iteration)`, kind: 'histogram', xLabel: 'ms', yLabel: 'iterations', series: [] };
    const hi = Math.max(...perPhase.map(({ it }) => percentile(it, 99)).filter(Number.isFinite), 1);
    const summary: Record<string, unknown>[] = [];
    for (const { p, it } of perPhase) {
      const p50 = percentile(it, 50);
      const p99 = percentile(it, 99);
      const m = mean(it);
      const ratio = m / base;
      const stat = `p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, mean ${m.toFixed(2)} ms (${it.length} iterations)`;
      if (p.expected === null) {
        rows.push({ name: 'victim alone', asked: 'baseline', measured: `p50 ${p50.toFixed(2)} ms`, askedValue: null, measuredValue: round(p50, 3), errorPct: null, verdict: it.length >= 10 ? 'pass' : 'fail', detail: stat });
      } else {
        const err = errorPct(p.expected, ratio);
        rows.push({
          name: `victim + ${p.name}`,
          asked: `${p.expected.toFixed(2)}x slower`,
          measured: `${ratio.toFixed(2)}x (p99 ${(p99 / percentile(perPhase[0].it, 99)).toFixed(2)}x)`,
          askedValue: round(p.expected, 3), measuredValue: round(ratio, 3), errorPct: round(err, 2),
          verdict: it.length >= 10 ? verdictFor(err, 20, 40) : 'fail', detail: stat,
        });
      }
      hist.series.push({ label: p.name, points: histogram(it.filter((x) => x <= hi * 1.05), 40, 0, hi * 1.05) });
      summary.push({ phase: p.name, iterations: it.length, p50Ms: round(p50, 3), p99Ms: round(p99, 3), meanMs: round(m, 3), slowdown: round(ratio, 3), expectedSlowdown: p.expected });
    }
    const t0 = phases[0].from;
    const timeline: Chart = {
      title: 'Victim iteration time over time (phases: alone, + hog, + hog with quota)', kind: 'line', xLabel: 's', yLabel: 'ms',
      series: perPhase.map(({ p }) => ({
        label: p.name,
        points: stamps.flatMap((s, k) => (k > 0 && stamps[k - 1] >= p.from && s <= p.to ? [{ t: round(s - t0, 3), v: round((s - stamps[k - 1]) * 1000, 3) }] : [])),
      })),
    };
    charts.push(hist, timeline);
    data = { workSteps: work, cpu, hogQuotaCpus: q, phases: summary };
  } finally {
    if (wfd >= 0) closeSync(wfd);
    sock?.destroy();
    await env.cleanup();
  }
  return {
    id: 'noisy-neighbour', title: 'Noisy neighbour',
    method: 'A fixed-work shell loop reports each iteration through a FIFO, timestamped by the harness; alone, then next to a CPU hog on the same CPU without and with a CFS quota.',
    rows, charts, data, wallSeconds: round((Date.now() - started) / 1000, 2),
  };
}
