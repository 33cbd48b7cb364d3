/** Timed sampling of cgroup counters at a fixed cadence (absolute deadlines, so no drift). */
import { readFileSync } from 'node:fs';
import type { CgroupStats } from '../cgroups/types.js';
import type { SeriesPoint } from './types.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Seconds on a monotonic clock. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

export interface Sample {
  /** Seconds since sampling began. */
  t: number;
  stats: (CgroupStats | null)[];
}

/**
 * Read `read()` every intervalMs for durationMs (first sample at t=0). A reader that throws
 * (container gone) yields null for that slot; stop() returning true ends sampling early.
 */
export async function sampleStats(
  read: (() => CgroupStats)[], durationMs: number, intervalMs: number, stop?: () => boolean,
): Promise<Sample[]> {
  const out: Sample[] = [];
  const t0 = now();
  for (let k = 0; ; k++) {
    const t = now() - t0;
    out.push({ t, stats: read.map((r) => { try { return r(); } catch { return null; } }) });
    if (t * 1000 >= durationMs || (stop && stop())) break;
    const next = t0 + ((k + 1) * intervalMs) / 1000;
    await sleep(Math.max(0, (next - now()) * 1000));
  }
  return out;
}

/** CPUs used by slot i between the first sample at or after fromS and the last sample. */
export function cpuRate(samples: Sample[], i: number, fromS = 0): { cpus: number; seconds: number; first: CgroupStats; last: CgroupStats } | null {
  const usable = samples.filter((s) => s.stats[i] !== null);
  const first = usable.find((s) => s.t >= fromS);
  const last = usable[usable.length - 1];
  if (!first || !last || last.t <= first.t) return null;
  const a = first.stats[i]!;
  const b = last.stats[i]!;
  const seconds = last.t - first.t;
  return { cpus: Number(b.cpu.usageNanos - a.cpu.usageNanos) / 1e9 / seconds, seconds, first: a, last: b };
}

/** CPU use of slot i between consecutive samples, as a chart series (t, CPUs). */
export function cpuSeries(samples: Sample[], i: number): SeriesPoint[] {
  const pts: SeriesPoint[] = [];
  for (let k = 1; k < samples.length; k++) {
    const a = samples[k - 1].stats[i];
    const b = samples[k].stats[i];
    const dt = samples[k].t - samples[k - 1].t;
    if (!a || !b || dt <= 0) continue;
    pts.push({ t: Math.round(samples[k].t * 1000) / 1000, v: Math.round((Number(b.cpu.usageNanos - a.cpu.usageNanos) / 1e9 / dt) * 1000) / 1000 });
  }
  return pts;
}

/** `sh -c` script that keeps n CPUs busy (n background loops). */
export function busyScript(n: number): string {
  if (n <= 1) return 'while :; do :; done';
  return `i=0; while [ $i -lt ${n} ]; do (while :; do :; done) & i=$((i+1)); done; wait`;
}

/**
 * Host CPU time from /proc/stat's "cpu" line (or "cpu<N>" for one CPU), in seconds
 * (USER_HZ = 100): busy and total.
 */
export function hostCpuTimes(cpu?: string): { busy: number; total: number } {
  const prefix = cpu === undefined ? 'cpu ' : `cpu${cpu} `;
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(prefix));
    const f = (line ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return { busy: (total - idle) / 100, total: total / 100 };
  } catch {
    return { busy: 0, total: 0 };
  }
}
