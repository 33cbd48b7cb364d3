/**
 * Memory limit: a shell that grows a variable by 4 MiB per step (printing its size after each
 * step) under memory limit L with swap forbidden (v1 memsw = L, v2 memory.swap.max = 0). The
 * kernel OOM-kills it when the cgroup charge reaches L. Evidence: the cgroup's peak usage
 * (v1 max_usage_in_bytes, v2 memory.peak), its oom_kill counter, the init's SIGKILL as reported
 * by Runtime.wait (oomKilled), and swap use sampled during the run (v1 memsw - usage, v2
 * memory.swap.current).
 */
import { BenchEnv } from '../env.js';
import { now, sleep } from '../sampling.js';
import { errorPct, fmtMiB, round } from '../stats.js';
import type { Chart, ExperimentResult, Measurement, SeriesPoint, Verdict } from '../types.js';
import type { ExperimentContext } from './context.js';

export interface MemoryOptions {
  limitBytes?: number;
  stepBytes?: number;
  timeoutMs?: number;
}

/**
 * Bytes of the cgroup's memory in swap now: v1 memory.stat "swap" (present with swap
 * accounting), v2 memory.swap.current (CgroupStats.swapBytes); null when not accounted.
 */
function swapNow(env: BenchEnv, id: string, v2Swap: number | null): number | null {
  if (env.cgroupVersion === 2) return v2Swap;
  const stat = env.cgroupFile(id, 'memory', 'memory.stat');
  const m = stat === null ? null : /^swap (\d+)$/m.exec(stat);
  return m ? Number(m[1]) : null;
}

export async function memoryExperiment(ctx: ExperimentContext, opts: MemoryOptions = {}): Promise<ExperimentResult> {
  const started = Date.now();
  const limit = opts.limitBytes ?? 64 * 1024 * 1024;
  const step = opts.stepBytes ?? 4 * 1024 * 1024;
  const maxSteps = Math.ceil((limit * 4) / step);
  const env = await BenchEnv.create({ name: 'memory', image: ctx.image, storeRoot: ctx.storeRoot });
  const rows: Measurement[] = [];
  const usage: SeriesPoint[] = [];
  let data: Record<string, unknown> = {};
  try {
    ctx.progress(`memory: limit ${fmtMiB(limit)}, ${fmtMiB(step)} steps`);
    const script = `x=; n=0; while [ $n -lt ${maxSteps} ]; do x="$x$(head -c ${step} /dev/zero | tr '\\000' a)"; n=$((n+1)); echo "$n \${#x}"; done; echo survived`;
    const id = await env.start('mem', ['/bin/sh', '-c', script], { resources: { memory: { limit, swap: limit } } });
    let exited = false;
    const waitP = env.wait(id, opts.timeoutMs ?? 60_000).finally(() => { exited = true; });
    const t0 = now();
    let swapPeak = 0;
    let swapAccounted = false;
    while (!exited) {
      try {
        const s = env.stats(id);
        usage.push({ t: round(now() - t0, 3), v: round(s.memory.usageBytes / 1048576, 2) });
        const sw = swapNow(env, id, s.memory.swapBytes);
        if (sw !== null) {
          swapAccounted = true;
          swapPeak = Math.max(swapPeak, sw);
        }
      } catch { /* exiting */ }
      await Promise.race([waitP, sleep(20)]);
    }
    const exit = await waitP;
    const st = env.stats(id);
    // v2 keeps a swap peak (memory.swap.peak, kernel 6.5+): more exact than sampling.
    if (env.cgroupVersion === 2) {
      const p = Number(env.cgroupFile(id, 'memory', 'memory.swap.peak') ?? NaN);
      if (Number.isFinite(p)) swapPeak = Math.max(swapPeak, p);
    }
    const finalSwap = swapNow(env, id, st.memory.swapBytes);
    if (finalSwap !== null) swapPeak = Math.max(swapPeak, finalSwap);
    const out = env.output(id);
    const lines = out.split('\n').filter((l) => /^\d+ \d+$/.test(l));
    const lastAllocated = lines.length ? Number(lines[lines.length - 1].split(' ')[1]) : 0;
    const survived = /survived/.test(out);
    await env.remove(id);
    const peak = st.memory.maxUsageBytes;
    const err = errorPct(limit, peak);
    const oomEvidence = exit.oomKilled && st.memory.oomKills > 0 && exit.signal === 9;
    let verdict: Verdict = 'pass';
    if (survived || exit.timedOut || !oomEvidence) verdict = 'fail';
    else if (Math.abs(err) > 10 || swapPeak > 0) verdict = Math.abs(err) > 25 ? 'fail' : 'warn';
    rows.push({
      name: `memory=${fmtMiB(limit)}`,
      asked: fmtMiB(limit),
      measured: `${fmtMiB(peak)} peak`,
      askedValue: limit,
      measuredValue: peak,
      errorPct: round(err, 2),
      verdict,
      detail: `${survived ? 'NOT killed' : exit.signal === 9 ? 'killed by SIGKILL' : `exited ${exit.exitCode}`}; oomKilled=${exit.oomKilled}, oom_kill=${st.memory.oomKills}; last step reached ${fmtMiB(lastAllocated)} in the variable; swap ${swapAccounted ? `used ${fmtMiB(Math.max(0, swapPeak))}` : 'not accounted'}`,
    });
    rows.push({
      name: 'swap (forbidden)',
      asked: '0 MiB',
      measured: swapAccounted ? fmtMiB(Math.max(0, swapPeak)) : 'not accounted',
      askedValue: 0,
      measuredValue: swapAccounted ? Math.max(0, swapPeak) : null,
      errorPct: null,
      verdict: !swapAccounted ? 'warn' : swapPeak > 0 ? 'fail' : 'pass',
      detail: env.cgroupVersion === 1 ? 'memory.memsw.limit_in_bytes = limit' : 'memory.swap.max = 0',
    });
    data = {
      limitBytes: limit, stepBytes: step, maxUsageBytes: peak, oomKilled: exit.oomKilled, oomKills: st.memory.oomKills,
      failCount: st.memory.failCount, exitSignal: exit.signal, exitCode: exit.exitCode, lastAllocatedBytes: lastAllocated,
      survived, swapAccounted, swapUsedBytes: Math.max(0, swapPeak),
    };
  } finally {
    await env.cleanup();
  }
  const chart: Chart = { title: 'Memory charged to the cgroup until the OOM kill', kind: 'line', xLabel: 's', yLabel: 'MiB', series: [{ label: 'usage', points: usage }], refs: [{ label: 'limit', v: limit / 1048576 }] };
  return {
    id: 'memory', title: 'Memory limit',
    method: 'A shell grows a variable in fixed steps past the limit (swap forbidden); peak cgroup usage, OOM counters and the exit signal are read from the kernel.',
    rows, charts: [chart], data, wallSeconds: round((Date.now() - started) / 1000, 2),
  };
}
