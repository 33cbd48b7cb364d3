/**
 * The cgroup driver interface. Two implementations: v1.ts (per-controller hierarchies) and v2.ts
 * (unified). index.ts detects which one this host runs. cgroupsPath is the OCI linux.cgroupsPath:
 * an absolute path relative to each hierarchy root ("/berth/abc123"), or relative (then placed under
 * the driver's default parent).
 */
import type { LinuxResources } from '../oci/spec.js';

export interface CpuStats {
  /** Total CPU time consumed, nanoseconds. */
  usageNanos: bigint;
  userNanos: bigint;
  systemNanos: bigint;
  periods: number;
  throttledPeriods: number;
  throttledNanos: bigint;
}

export interface MemoryStats {
  usageBytes: number;
  maxUsageBytes: number;
  limitBytes: number | null;
  /** memory+swap usage (v1 memsw) or swap usage (v2 memory.swap.current); null when not accounted. */
  swapBytes: number | null;
  /** Number of OOM kills inside this cgroup (v1 memory.oom_control oom_kill, v2 memory.events oom_kill). */
  oomKills: number;
  /** Times the limit was hit (v1 failcnt, v2 memory.events max). */
  failCount: number;
}

export interface CgroupStats {
  cpu: CpuStats;
  memory: MemoryStats;
  pids: { current: number; limit: number | null };
  blkio: { readBytes: number; writeBytes: number };
}

export interface Cgroup {
  readonly version: 1 | 2;
  /** The cgroupsPath as resolved (always absolute, relative to each hierarchy root). */
  readonly path: string;
  /**
   * Create the directories (idempotent). `madeAhead`: directories of this cgroup's paths that the
   * caller itself has just made (Runtime.prepareCgroup), so they are as new as ones made here.
   */
  create(madeAhead?: readonly string[]): void;
  /** Apply OCI resources; fields absent are left alone. Throws BerthError naming the file and value on failure. */
  apply(resources: LinuxResources): void;
  /** Put a process in this cgroup (every hierarchy). */
  addProcess(pid: number): void;
  /** Pids currently in the cgroup (recursive not required). */
  pids(): number[];
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  isFrozen(): boolean;
  stats(): CgroupStats;
  /** Absolute directory per controller ("memory" -> /sys/fs/cgroup/memory/berth/x); v2: {"": dir}. */
  paths(): Record<string, string>;
  /** SIGKILL everything inside, wait for it to be empty, then rmdir every directory (retrying EBUSY briefly). Idempotent. */
  destroy(): Promise<void>;
  exists(): boolean;
  /**
   * Settings that were requested but not enforced (e.g. device rules on cgroup v2 without eBPF,
   * swappiness on v2). apply() appends here; callers may log or surface them.
   */
  readonly warnings: string[];
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  open(cgroupsPath: string): Cgroup;
}
