/** Small numeric helpers for the bench: percentiles, relative error, verdicts, unit formatting. */
import type { Verdict } from './types.js';

/** The p-th percentile (0..100) of values, nearest-rank on a sorted copy; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank];
}

/** (measured - asked) / asked in percent. */
export function errorPct(asked: number, measured: number): number {
  return asked === 0 ? NaN : ((measured - asked) / asked) * 100;
}

/** pass within passPct, warn within warnPct, fail beyond (absolute error). */
export function verdictFor(errPct: number, passPct: number, warnPct: number): Verdict {
  const e = Math.abs(errPct);
  if (!Number.isFinite(e)) return 'fail';
  if (e <= passPct) return 'pass';
  if (e <= warnPct) return 'warn';
  return 'fail';
}

export function round(v: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function fmtMiB(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

export function fmtPct(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return '-';
  return `${v >= 0 ? '+' : ''}${v.toFixed(1)}%`;
}

/** Histogram of values into n equal buckets between min and max: points (bucket centre, count). */
export function histogram(values: readonly number[], buckets = 30, lo?: number, hi?: number): { t: number; v: number }[] {
  if (values.length === 0) return [];
  const min = lo ?? Math.min(...values);
  const max = hi ?? Math.max(...values);
  const width = max > min ? (max - min) / buckets : 1;
  const counts = new Array<number>(buckets).fill(0);
  for (const x of values) counts[Math.min(buckets - 1, Math.max(0, Math.floor((x - min) / width)))]++;
  return counts.map((c, i) => ({ t: round(min + (i + 0.5) * width, 3), v: c }));
}
