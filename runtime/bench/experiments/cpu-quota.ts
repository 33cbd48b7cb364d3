/**
 * CPU quota accuracy: a container running busy loops (more demand than its quota) under
 * cpu.cfs_quota_us/period (v1) or cpu.max (v2) with period 100 ms, for each asked CPU count in
 * turn. Measured CPU = Δ cgroup usage / Δ wall time over the window after a warm-up; the series
 * samples the same counter every ~100 ms. Throttled periods and time come from cpu.stat.
 */
import { availableParallelism } from 'node:os';
import { BenchEnv } from '../env.js';
import { busyScript, cpuRate, cpuSeries, hostCpuTimes, now, sampleStats, sleep } from '../sampling.js';
import { errorPct, round, verdictFor } from '../stats.js';
import type { Chart, ExperimentResult, Measurement } from '../types.js';
import type { ExperimentContext } from './context.js';

export const CPU_PERIOD_US = 100_000;

export interface CpuQuotaOptions {
  cpus?: number[];
}

export async function cpuQuotaExperiment(ctx: ExperimentContext, opts: CpuQuotaOptions = {}): Promise<ExperimentResult> {
  const started = Date.now();
  const asked = opts.cpus ?? [0.25, 0.5, 1.0, 1.5];
  const ncpu = availableParallelism();
  const rows: Measurement[] = [];
  const chart: Chart = { title: 'CPU used per container (cgroup usage, ~100 ms samples)', kind: 'line', xLabel: 's', yLabel: 'CPUs', series: [], refs: [] };
  const data: Record<string, unknown>[] = [];
  const env = await BenchEnv.create({ name: 'cpu-quota', image: ctx.image, storeRoot: ctx.storeRoot });
  try {
    for (const cpus of asked) {
      ctx.progress(`cpu-quota: cpus=${cpus}`);
      // One loop more than the quota allows (capped at the host's CPUs), so demand exceeds it.
      const loops = Math.min(ncpu, Math.floor(cpus) + 1);
      const quota = Math.round(cpus * CPU_PERIOD_US);
      const id = await env.start(`q${String(cpus).replace('.', '_')}`, ['/bin/sh', '-c', busyScript(loops)], {
        resources: { cpu: { quota, period: CPU_PERIOD_US } },
      });
      await sleep(ctx.warmupS * 1000);
      const h0 = hostCpuTimes();
      const w0 = now();
      const samples = await sampleStats([() => env.stats(id)], ctx.durationS * 1000, 100);
      const h1 = hostCpuTimes();
      const wall = now() - w0;
      await env.remove(id);
      const r = cpuRate(samples, 0);
      const measured = r ? r.cpus : 0;
      const err = errorPct(cpus, measured);
      const thrP = r ? r.last.cpu.throttledPeriods - r.first.cpu.throttledPeriods : 0;
      const periods = r ? r.last.cpu.periods - r.first.cpu.periods : 0;
      const thrS = r ? Number(r.last.cpu.throttledNanos - r.first.cpu.throttledNanos) / 1e9 : 0;
      const capped = cpus > ncpu;
      // CPU the rest of the host used meanwhile: a busy host can starve the container below its
      // quota, which is contention, not a quota error.
      const otherCpus = Math.max(0, (h1.busy - h0.busy) / wall - measured);
      const throttledFrac = periods > 0 ? thrP / periods : 0;
      let verdict = capped ? 'warn' as const : verdictFor(err, 10, 25);
      let note = '';
      if (verdict !== 'pass' && err < 0 && throttledFrac < 0.9) {
        verdict = 'warn';
        note = `; short of its quota because the host was busy (other load ${otherCpus.toFixed(2)} CPU, throttled in only ${(throttledFrac * 100).toFixed(0)}% of periods)`;
      }
      rows.push({
        name: `cpus=${cpus}`,
        asked: `${cpus.toFixed(2)} CPU`,
        measured: `${measured.toFixed(3)} CPU`,
        askedValue: cpus,
        measuredValue: round(measured, 4),
        errorPct: round(err, 2),
        verdict,
        detail: `quota ${quota}/${CPU_PERIOD_US} us, ${loops} busy loop(s); throttled ${thrP}/${periods} periods, ${thrS.toFixed(2)} s throttled; rest of host ${otherCpus.toFixed(2)} CPU${capped ? `; host has only ${ncpu} CPUs` : ''}${note}`,
      });
      chart.series.push({ label: `cpus=${cpus}`, points: cpuSeries(samples, 0) });
      chart.refs!.push({ label: `${cpus}`, v: cpus });
      data.push({ cpus, quotaUs: quota, periodUs: CPU_PERIOD_US, loops, measuredCpus: round(measured, 4), windowSeconds: r ? round(r.seconds, 3) : 0, periods, throttledPeriods: thrP, throttledSeconds: round(thrS, 4), otherHostCpus: round(otherCpus, 3) });
    }
  } finally {
    await env.cleanup();
  }
  return {
    id: 'cpu-quota', title: 'CPU quota accuracy',
    method: 'Busy loops (one more than the quota allows) under CFS quota with a 100 ms period, one container at a time; CPU = Δ cgroup CPU usage / Δ wall time after a warm-up.',
    rows, charts: [chart], data: { runs: data }, wallSeconds: round((Date.now() - started) / 1000, 2),
  };
}
