/**
 * Noisy neighbour. Method: the victim is a busybox shell doing a fixed amount of work per
 * iteration (N arithmetic loop steps) and then appending the wall clock with microsecond
 * resolution (busybox `adjtimex`, which only reads the clock: no privilege needed) to a file on a
 * bind-mounted host dir. Iteration time = gap between consecutive stamps. The stamps are taken
 * inside the container, so a busy harness cannot distort them (busybox `date` has no %N, so
 * `date` would only give 1 s resolution). Victim and hog are pinned to the same CPU so they
 * really compete. Phases: victim alone; next to a CPU hog with no quota (CFS gives each cgroup
 * half the CPU: ~2x slower); the same hog after `update` gives it a quota q (the victim should
 * get 1 - q of the CPU: ~1/(1-q) slower on average, with p99 showing the periods in which the
 * hog runs). Load from other tenants on that CPU is measured per phase (/proc/stat minus the
 * containers' usage) and reported.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BenchEnv } from '../env.js';
import { BenchError } from '../rootfs.js';
import { hostCpuTimes, now, sleep } from '../sampling.js';
import { errorPct, histogram, percentile, round, verdictFor } from '../stats.js';
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

interface Phase { name: string; from: number; to: number; expected: number | null; otherCpu: number; victimCpu: number; hogCpu: number }

export async function noisyNeighbourExperiment(ctx: ExperimentContext, opts: NoisyOptions = {}): Promise<ExperimentResult> {
  const started = Date.now();
  const work = opts.work ?? 5000;
  const q = opts.hogQuota ?? 0.25;
  const ids: string[] = [];
  const cpu = opts.cpu ?? '0';
  const env = await BenchEnv.create({ name: 'noisy', image: ctx.image, storeRoot: ctx.storeRoot });
  const phases: Phase[] = [];
  const rows: Measurement[] = [];
  const charts: Chart[] = [];
  let data: Record<string, unknown> = {};
  try {
    const stampDir = join(env.dir, 'stamps');
    mkdirSync(stampDir);
    const victimScript = `while :; do i=0; while [ $i -lt ${work} ]; do i=$((i+1)); done; adjtimex >> /data/stamps; done`;
    const wallNow = () => (performance.timeOrigin + performance.now()) / 1000;
    const runPhase = async (name: string, expected: number | null | (() => number)) => {
      ctx.progress(`noisy-neighbour: ${name}`);
      await sleep(ctx.warmupS * 1000);
      const cpuOf = (id: string | undefined) => { try { return id ? Number(env.stats(id).cpu.usageNanos) / 1e9 : 0; } catch { return 0; } };
      const c0 = hostCpuTimes(cpu);
      const v0 = cpuOf(ids[0]);
      const g0 = cpuOf(ids[1]);
      const t0 = now();
      const from = wallNow();
      await sleep(ctx.durationS * 1000);
      const to = wallNow();
      const secs = now() - t0;
      const victimCpu = (cpuOf(ids[0]) - v0) / secs;
      const hogCpu = (cpuOf(ids[1]) - g0) / secs;
      // Load on the pinned CPU from outside the experiment (other tenants of this host).
      const otherCpu = Math.max(0, (hostCpuTimes(cpu).busy - c0.busy) / secs - victimCpu - hogCpu);
      phases.push({ name, from, to, expected: typeof expected === 'function' ? expected() : expected, otherCpu, victimCpu, hogCpu });
    };
    ids.push(await env.start('victim', ['/bin/sh', '-c', victimScript], {
      resources: { cpu: { cpus: cpu } },
      mounts: [{ destination: '/data', type: 'bind', source: stampDir, options: ['rbind', 'rw'] }],
    }));
    await runPhase('alone', null);
    const hog = await env.start('hog', ['/bin/sh', '-c', 'while :; do :; done'], { resources: { cpu: { cpus: cpu } } });
    ids.push(hog);
    await runPhase('hog, no quota', 2);
    env.rt.update(hog, { cpu: { quota: Math.round(q * CPU_PERIOD_US), period: CPU_PERIOD_US } });
    // The victim alone got G CPUs of the pinned CPU (1.0 on an idle host, less when other tenants
    // use it). A hog with quota q takes min(q, G/2) of that, leaving the victim G - min(q, G/2):
    // expected slowdown G / (G - min(q, G/2)), i.e. 1/(1-q) on an idle host.
    await runPhase(`hog, quota ${q} CPU`, () => {
      const g = Math.max(0.01, phases[0].victimCpu);
      return g / (g - Math.min(q, g / 2));
    });
    await env.remove(hog);
    await env.remove(ids[0]);
    let text = '';
    try { text = readFileSync(join(stampDir, 'stamps'), 'utf8'); } catch { /* none */ }
    const stamps = [...text.matchAll(/time\.tv_sec:\s+(\d+)\s+time\.tv_usec:\s+(\d+)/g)].map((m) => Number(m[1]) + Number(m[2]) / 1e6);
    if (stamps.length < 10) throw new BenchError(`the victim wrote ${stamps.length} timestamps: does the rootfs have busybox adjtimex? (${env.output(ids[0]).trim().slice(-200)})`);
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
        rows.push({ name: 'victim alone', asked: 'baseline', measured: `p50 ${p50.toFixed(2)} ms`, askedValue: null, measuredValue: round(p50, 3), errorPct: null, verdict: it.length >= 10 ? 'pass' : 'fail', detail: `${stat}; victim ${p.victimCpu.toFixed(2)} CPU, other load on CPU ${cpu} ${p.otherCpu.toFixed(2)} CPU` });
      } else {
        const err = errorPct(p.expected, ratio);
        let verdict = it.length >= 10 ? verdictFor(err, 20, 40) : 'fail';
        // The expected slowdown assumes victim and hog are alone on the CPU; when other
        // tenants' load there changed between the baseline and this phase, say so instead.
        const drift = Math.abs(p.otherCpu - phases[0].otherCpu);
        let note = '';
        if (verdict !== 'pass' && it.length >= 10 && drift > 0.05) {
          verdict = 'warn';
          note = `; other load on CPU ${cpu} was ${p.otherCpu.toFixed(2)} CPU vs ${phases[0].otherCpu.toFixed(2)} in the baseline, so the expected slowdown does not hold exactly`;
        }
        rows.push({
          name: `victim + ${p.name}`,
          asked: `${p.expected.toFixed(2)}x slower`,
          measured: `${ratio.toFixed(2)}x (p99 ${(p99 / percentile(perPhase[0].it, 99)).toFixed(2)}x)`,
          askedValue: round(p.expected, 3), measuredValue: round(ratio, 3), errorPct: round(err, 2),
          verdict, detail: `${stat}; victim ${p.victimCpu.toFixed(2)} CPU, hog ${p.hogCpu.toFixed(2)} CPU, other load on CPU ${cpu} ${p.otherCpu.toFixed(2)} CPU${note}`,
        });
      }
      hist.series.push({ label: p.name, points: histogram(it.filter((x) => x <= hi * 1.05), 40, 0, hi * 1.05) });
      summary.push({ phase: p.name, iterations: it.length, p50Ms: round(p50, 3), p99Ms: round(p99, 3), meanMs: round(m, 3), slowdown: round(ratio, 3), expectedSlowdown: p.expected === null ? null : round(p.expected, 3), victimCpus: round(p.victimCpu, 3), hogCpus: round(p.hogCpu, 3), otherLoadCpus: round(p.otherCpu, 3) });
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
    await env.cleanup();
  }
  return {
    id: 'noisy-neighbour', title: 'Noisy neighbour',
    method: 'A fixed-work shell loop stamps each iteration with the µs wall clock (busybox adjtimex) from inside the container; alone, then next to a CPU hog on the same CPU without and with a CFS quota.',
    rows, charts, data, wallSeconds: round((Date.now() - started) / 1000, 2),
  };
}
