/** What every experiment gets from the runner. */
export interface ExperimentContext {
  /** Measurement window per run, seconds. */
  durationS: number;
  /** Warm-up before a window starts, seconds. */
  warmupS: number;
  /** Image reference instead of the busybox rootfs. */
  image?: string;
  /** Image store root (for image). */
  storeRoot?: string;
  /** Progress messages (stderr on the terminal). */
  progress: (msg: string) => void;
}
