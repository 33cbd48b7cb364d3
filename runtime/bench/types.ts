/**
 * Result types of `berth bench isolation`: every experiment returns rows of asked vs. measured
 * with an error and a verdict, plus time series for the HTML report's charts. The whole run is one
 * JSON document (BenchReport), which is what `--json` prints.
 */

export type Verdict = 'pass' | 'warn' | 'fail' | 'skipped';

/** One line of the results table. */
export interface Measurement {
  /** What was measured, e.g. "cpus=0.5". */
  name: string;
  /** The limit asked for, human readable ("0.50 CPU", "64 MiB"). */
  asked: string;
  /** What the kernel delivered, human readable. */
  measured: string;
  /** Numeric forms of asked / measured (same unit), null when not numeric. */
  askedValue: number | null;
  measuredValue: number | null;
  /** (measured - asked) / asked in percent; null when not meaningful. */
  errorPct: number | null;
  verdict: Verdict;
  /** Extra facts for this row (throttled periods, OOM evidence, …). */
  detail?: string;
}

export interface SeriesPoint { t: number; v: number }

export interface Series {
  label: string;
  points: SeriesPoint[];
}

export interface Chart {
  title: string;
  /** line: value over time (x = seconds); histogram: distribution (x = value bucket, y = count). */
  kind: 'line' | 'histogram';
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Optional horizontal reference lines (e.g. the asked CPU). */
  refs?: { label: string; v: number }[];
}

export interface ExperimentResult {
  id: ExperimentId;
  title: string;
  /** How it was measured, one or two sentences (shown in the report). */
  method: string;
  rows: Measurement[];
  charts: Chart[];
  /** Experiment-specific raw numbers for scripts. */
  data: Record<string, unknown>;
  /** Set when the machine does not allow the experiment (only blkio may be skipped). */
  skipped?: string;
  /** Set when the experiment failed to run at all. */
  error?: string;
  wallSeconds: number;
}

export const EXPERIMENT_IDS = ['cpu-quota', 'cpu-weight', 'noisy-neighbour', 'memory', 'pids', 'blkio'] as const;
export type ExperimentId = (typeof EXPERIMENT_IDS)[number];

export interface BenchReport {
  tool: 'berth bench isolation';
  startedAt: string;
  finishedAt: string;
  host: { kernel: string; cpus: number; cgroupVersion: 1 | 2; loadavg: number[] };
  rootfs: string;
  durationSeconds: number;
  experiments: ExperimentResult[];
  summary: Record<Verdict, number>;
}
