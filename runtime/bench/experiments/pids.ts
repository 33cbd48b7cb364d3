/**
 * PIDs limit: a shell forks background sleeps in a loop under pids.max = N. The harness samples
 * pids.current (peak) and reads the failed-fork counter (pids.events "max"), and while the
 * container sits at its limit it forks /bin/true on the host to show the host is unaffected.
 */
import { spawnSync } from 'node:child_process';
import { BenchEnv } from '../env.js';
import { now, sampleStats, sleep } from '../sampling.js';
import { errorPct, round } from '../stats.js';
import type { Chart, ExperimentResult, Measurement, Verdict } from '../types.js';
import type { ExperimentContext } from './context.js';

export interface PidsOptions {
  limit?: number;
}

export async function pidsExperiment(ctx: ExperimentContext, opts: PidsOptions = {}): Promise<ExperimentResult> {
  const started = Date.now();
  const limit = opts.limit ?? 32;
  const env = await BenchEnv.create({ name: 'pids', image: ctx.image, storeRoot: ctx.storeRoot });
  const rows: Measurement[] = [];
  let chart: Chart | null = null;
  let data: Record<string, unknown> = {};
  try {
    ctx.progress(`pids: pids.max=${limit}`);
    // The inner subshell forks until fork fails (and keeps trying); init itself only waits.
    const forker = `i=0; while [ $i -lt ${limit * 4} ]; do sleep 600 & i=$((i+1)); done 2>/dev/null; sleep 600`;
    const id = await env.start('fork', ['/bin/sh', '-c', `(${forker}) & wait`], { resources: { pids: { limit } } });
    const half = Math.max(500, (ctx.durationS * 1000) / 2);
    const first = await sampleStats([() => env.stats(id)], half, 50);
    // Host fork while the container is at its limit.
    const h0 = now();
    const host = spawnSync('/bin/true', [], { timeout: 5000 });
    const hostMs = (now() - h0) * 1000;
    const hostOk = host.status === 0 && !host.error;
    const rest = await sampleStats([() => env.stats(id)], half, 50);
    await sleep(0);
    const all = [...first, ...rest.map((s) => ({ ...s, t: s.t + half / 1000 }))];
    const counts = all.map((s) => s.stats[0]?.pids.current ?? 0);
    const peak = Math.max(0, ...counts);
    const events = env.cgroupFile(id, 'pids', 'pids.events') ?? '';
    const failures = Number(/max (\d+)/.exec(events)?.[1] ?? NaN);
    await env.remove(id);
    const reached = peak >= limit - 1;
    const verdict: Verdict = peak > limit ? 'fail' : reached ? 'pass' : 'warn';
    rows.push({
      name: `pids.max=${limit}`,
      asked: `${limit} pids`,
      measured: `${peak} peak`,
      askedValue: limit,
      measuredValue: peak,
      errorPct: round(errorPct(limit, peak), 2),
      verdict,
      detail: `${Number.isFinite(failures) ? `${failures} forks refused by the kernel` : 'pids.events not available'}${reached ? '' : '; limit not reached'}`,
    });
    rows.push({
      name: 'host fork at limit',
      asked: 'host unaffected',
      measured: hostOk ? `forked /bin/true in ${hostMs.toFixed(1)} ms` : `host fork FAILED: ${host.error?.message ?? `status ${host.status}`}`,
      askedValue: null,
      measuredValue: round(hostMs, 2),
      errorPct: null,
      verdict: hostOk ? 'pass' : 'fail',
    });
    chart = { title: 'pids.current in the container', kind: 'line', xLabel: 's', yLabel: 'pids', series: [{ label: 'pids.current', points: all.map((s, i) => ({ t: round(s.t, 3), v: counts[i] })) }], refs: [{ label: 'pids.max', v: limit }] };
    data = { limit, peak, forkFailures: Number.isFinite(failures) ? failures : null, hostForkOk: hostOk, hostForkMs: round(hostMs, 2) };
  } finally {
    await env.cleanup();
  }
  return {
    id: 'pids', title: 'PIDs limit',
    method: 'A fork loop under pids.max; peak pids.current and refused forks from the cgroup, and a fork on the host while the container is at its limit.',
    rows, charts: chart ? [chart] : [], data, wallSeconds: round((Date.now() - started) / 1000, 2),
  };
}
