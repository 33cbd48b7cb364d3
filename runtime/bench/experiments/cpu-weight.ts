/**
 * CPU weight fairness: busy containers pinned to the same CPU (cpuset.cpus "0") with cpu.shares
 * 1024/512/256 (v1) — on v2 the driver converts shares to cpu.weight, and the expected split uses
 * the converted weights. Each container's share = its Δ usage / the sum of Δ usage over the
 * window, compared with weight / Σ weights. Other load on CPU 0 takes from all three alike, so the
 * ratios stay meaningful on a busy host.
 */
import { BenchEnv } from '../env.js';
import { cpuRate, cpuSeries, sampleStats, sleep } from '../sampling.js';
import { errorPct, round, verdictFor } from '../stats.js';
import { cpuSharesToWeight } from '../../cgroups/convert.js';
import type { Chart, ExperimentResult, Measurement } from '../types.js';
import type { ExperimentContext } from './context.js';

export interface CpuWeightOptions {
  shares?: number[];
  cpu?: string;
}

export async function cpuWeightExperiment(ctx: ExperimentContext, opts: CpuWeightOptions = {}): Promise<ExperimentResult> {
  const started = Date.now();
  const shares = opts.shares ?? [1024, 512, 256];
  const cpu = opts.cpu ?? '0';
  const env = await BenchEnv.create({ name: 'cpu-weight', image: ctx.image, storeRoot: ctx.storeRoot });
  const rows: Measurement[] = [];
  const chart: Chart = { title: `CPU used per container, all pinned to CPU ${cpu}`, kind: 'line', xLabel: 's', yLabel: 'CPUs', series: [] };
  let data: Record<string, unknown> = {};
  try {
    ctx.progress(`cpu-weight: shares ${shares.join('/')} on CPU ${cpu}`);
    const ids: string[] = [];
    for (const s of shares) {
      ids.push(await env.start(`w${s}`, ['/bin/sh', '-c', 'while :; do :; done'], { resources: { cpu: { shares: s, cpus: cpu } } }));
    }
    await sleep(ctx.warmupS * 1000);
    const samples = await sampleStats(ids.map((id) => () => env.stats(id)), ctx.durationS * 1000, 100);
    const v2 = env.cgroupVersion === 2;
    const weights = shares.map((s) => (v2 ? cpuSharesToWeight(s) : s));
    const wsum = weights.reduce((a, b) => a + b, 0);
    const used = ids.map((_, i) => cpuRate(samples, i)?.cpus ?? 0);
    const usum = used.reduce((a, b) => a + b, 0);
    const split: Record<string, unknown>[] = [];
    shares.forEach((s, i) => {
      const expected = weights[i] / wsum;
      const got = usum > 0 ? used[i] / usum : 0;
      const err = errorPct(expected, got);
      rows.push({
        name: v2 ? `shares=${s} (weight ${weights[i]})` : `shares=${s}`,
        asked: `${(expected * 100).toFixed(1)}% of CPU ${cpu}`,
        measured: `${(got * 100).toFixed(1)}%`,
        askedValue: round(expected, 4),
        measuredValue: round(got, 4),
        errorPct: round(err, 2),
        verdict: verdictFor(err, 15, 30),
        detail: `${used[i].toFixed(3)} CPU of ${usum.toFixed(3)} used by the group`,
      });
      chart.series.push({ label: `shares=${s}`, points: cpuSeries(samples, i) });
      split.push({ shares: s, weight: weights[i], expectedShare: round(expected, 4), measuredShare: round(got, 4), cpus: round(used[i], 4) });
    });
    data = { cpu, split, groupCpus: round(usum, 4) };
  } finally {
    await env.cleanup();
  }
  return {
    id: 'cpu-weight', title: 'CPU weight fairness',
    method: 'Busy containers pinned to one CPU with cpu.shares (v1) or the converted cpu.weight (v2); share = Δ usage / Σ Δ usage over the window vs weight / Σ weights.',
    rows, charts: [chart], data, wallSeconds: round((Date.now() - started) / 1000, 2),
  };
}
