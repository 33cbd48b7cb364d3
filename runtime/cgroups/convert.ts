/**
 * Pure conversions between OCI linux.resources values and cgroup file contents, shared by the v1
 * and v2 drivers. Nothing here touches the filesystem.
 *
 * shares -> cpu.weight: we use runc's (opencontainers/cgroups utils.go) current QUADRATIC fit,
 *   l = log2(shares); weight = ceil(10^((l^2 + 125 l)/612 - 7/34)), clamped to [1, 10000],
 * chosen because it maps the v1 default 1024 to exactly the v2 default 100 (and 2 -> 1,
 * 262144 -> 10000), so a container with default shares gets the default weight. The older linear
 * formula `1 + ((shares - 2) * 9999) / 262142` (kubelet, containerd, older runc) maps 1024 to 39,
 * i.e. a default container would get less CPU than a sibling created directly on v2. The linear
 * formula is exported as cpuSharesToWeightLinear for callers that must match those tools.
 */
import { ConfigError } from '../errors.js';
import type { DeviceCgroup, LinuxMemory } from '../oci/spec.js';

/** Parent directory for relative cgroupsPaths. */
export const DEFAULT_CGROUP_PARENT = 'berth';

/**
 * OCI cgroupsPath -> absolute path below each hierarchy root. Absolute: used as is (normalised).
 * Relative: placed under /berth. Rejects "..", the hierarchy root itself and systemd-style
 * "slice:prefix:name" paths (we only implement the cgroupfs driver).
 */
export function resolveCgroupsPath(cgroupsPath: string): string {
  if (typeof cgroupsPath !== 'string' || cgroupsPath.trim() === '') {
    throw new ConfigError('linux.cgroupsPath', 'must be a non-empty path');
  }
  if (cgroupsPath.includes('\0')) throw new ConfigError('linux.cgroupsPath', 'must not contain NUL bytes');
  if (!cgroupsPath.includes('/') && cgroupsPath.split(':').length === 3) {
    throw new ConfigError('linux.cgroupsPath', `"${cgroupsPath}" looks like a systemd "slice:prefix:name" path; berth only supports the cgroupfs driver (use an absolute path such as /berth/<id>)`);
  }
  const parts = cgroupsPath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) {
    throw new ConfigError('linux.cgroupsPath', `"${cgroupsPath}" must not contain ".." components`);
  }
  if (parts.length === 0) {
    throw new ConfigError('linux.cgroupsPath', `"${cgroupsPath}" names the hierarchy root; a container needs its own cgroup`);
  }
  if (!cgroupsPath.startsWith('/')) parts.unshift(DEFAULT_CGROUP_PARENT);
  return '/' + parts.join('/');
}

/** cpu.shares -> cpu.weight, runc's quadratic fit (see the header). 0 means "unset" and returns 0. */
export function cpuSharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  const l = Math.log2(shares);
  const exponent = (l * l + 125 * l) / 612 - 7 / 34;
  return Math.min(10000, Math.max(1, Math.ceil(Math.pow(10, exponent))));
}

/** cpu.shares -> cpu.weight, the older linear formula (kubelet/containerd). 0 returns 0. */
export function cpuSharesToWeightLinear(shares: number): number {
  if (shares === 0) return 0;
  const s = Math.min(262144, Math.max(2, shares));
  return 1 + Math.floor(((s - 2) * 9999) / 262142);
}

/** blkio.weight (10..1000) -> io.weight (1..10000): 1 + (w - 10) * 9999 / 990 (integer). 0 returns 0. */
export function blkioWeightToIoWeight(weight: number): number {
  if (weight === 0) return 0;
  if (weight < 10 || weight > 1000) {
    throw new ConfigError('linux.resources.blockIO.weight', `${weight} is out of range 10..1000`);
  }
  return 1 + Math.floor(((weight - 10) * 9999) / 990);
}

/**
 * OCI memory.swap is memory+swap (v1 memsw). v2 memory.swap.max is swap alone: swap - limit.
 * Returns undefined to leave memory.swap.max alone, 'max' for unlimited.
 */
export function memorySwapToV2(limit: number | undefined, swap: number | undefined): number | 'max' | undefined {
  const lim = limit ?? 0;
  const sw = swap ?? 0;
  if (lim === -1 && sw === 0) return 'max';
  if (sw === -1) return 'max';
  if (sw === 0) return undefined;
  if (lim === 0 || lim === -1) {
    throw new ConfigError('linux.resources.memory.swap', 'a swap limit on cgroup v2 needs a memory limit as well (OCI swap is memory+swap)');
  }
  if (sw < lim) {
    throw new ConfigError('linux.resources.memory.swap', `memory+swap limit ${sw} must be >= the memory limit ${lim}`);
  }
  return sw - lim;
}

/** Memory byte limits: -1 (or any negative) means unlimited. */
export function memoryLimitV2(value: number): string {
  return value < 0 ? 'max' : String(Math.trunc(value));
}

/** pids.max: <= 0 means unlimited ("max"). */
export function pidsLimitValue(limit: number): string {
  return limit <= 0 ? 'max' : String(Math.trunc(limit));
}

/**
 * cpu.max contents. quota <= 0 means unlimited. When only the period changes, the current quota
 * (from the existing cpu.max) is kept; when only the quota changes the kernel keeps the period.
 */
export function cpuMaxValue(quota: number | undefined, period: number | undefined, currentQuota = 'max'): string | undefined {
  if (quota === undefined && period === undefined) return undefined;
  const q = quota === undefined ? currentQuota : quota > 0 ? String(Math.trunc(quota)) : 'max';
  return period === undefined || period === 0 ? q : `${q} ${Math.trunc(period)}`;
}

/**
 * Canonical cpuset list: "3,0-1,2" -> "0-3". Throws ConfigError on malformed input. Empty string
 * stays empty (meaning "inherit").
 */
export function normalizeCpuset(value: string, field = 'linux.resources.cpu.cpus'): string {
  const text = value.trim();
  if (text === '') return '';
  const ids = new Set<number>();
  for (const raw of text.split(',')) {
    const part = raw.trim();
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new ConfigError(field, `"${value}" is not a CPU/memory-node list such as "0-3,5"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new ConfigError(field, `"${value}": range ${part} is reversed`);
    if (b - a > 65536) throw new ConfigError(field, `"${value}": range ${part} is too large`);
    for (let i = a; i <= b; i++) ids.add(i);
  }
  const sorted = [...ids].sort((x, y) => x - y);
  const out: string[] = [];
  let start = sorted[0];
  let prev = sorted[0];
  for (let i = 1; i <= sorted.length; i++) {
    const cur = sorted[i];
    if (cur !== undefined && cur === prev + 1) {
      prev = cur;
      continue;
    }
    out.push(start === prev ? String(start) : `${start}-${prev}`);
    if (cur !== undefined) {
      start = cur;
      prev = cur;
    }
  }
  return out.join(',');
}

/** One OCI device rule -> a v1 devices.allow/deny line, e.g. "c 1:3 rwm", "a *:* rwm". */
export function deviceRuleToV1(rule: DeviceCgroup, index = 0): string {
  const field = `linux.resources.devices[${index}]`;
  const type = rule.type ?? 'a';
  if (!['a', 'c', 'b'].includes(type)) throw new ConfigError(`${field}.type`, `"${String(type)}" must be a, c or b`);
  const access = rule.access ?? 'rwm';
  if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) {
    throw new ConfigError(`${field}.access`, `"${access}" must be a combination of r, w and m`);
  }
  const num = (n: number | null | undefined, what: string): string => {
    if (n === undefined || n === null || n === -1) return '*';
    if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${field}.${what}`, `${n} must be a non-negative integer or -1/null for any`);
    return String(n);
  };
  return `${type} ${num(rule.major, 'major')}:${num(rule.minor, 'minor')} ${access}`;
}

/**
 * True when the device rules amount to "allow everything" (what v2 without eBPF gives). As in
 * runc, the rule list starts from deny-all: undefined means "leave alone" (allow-all here), but an
 * empty list denies every device.
 */
export function devicesAllowAll(devices: DeviceCgroup[] | undefined): boolean {
  if (!devices) return true;
  // Effective result: the last rule that is a full wildcard decides the default, and any rule after
  // it that denies something narrows it. Allow-all only if the last wildcard rule is an allow with
  // rwm and no deny follows it.
  let allowAll = false;
  for (const r of devices) {
    const wildcard = (r.type ?? 'a') === 'a';
    if (wildcard) {
      allowAll = r.allow && (r.access ?? 'rwm').length === 3;
    } else if (!r.allow) {
      allowAll = false;
    }
  }
  return allowAll;
}

/** "hugepages-2048kB" (sysfs) -> "2MB" (cgroup file infix). */
export function hugepageSizeFromKb(kb: number): string {
  const units = ['KB', 'MB', 'GB', 'TB'];
  let size = kb;
  let unit = 0;
  while (size >= 1024 && size % 1024 === 0 && unit < units.length - 1) {
    size /= 1024;
    unit++;
  }
  return `${size}${units[unit]}`;
}

/** Validate an OCI hugepage pageSize such as "2MB" / "1GB" for use in a file name. */
export function validatePageSize(pageSize: string, index: number): string {
  if (!/^\d+(KB|MB|GB|TB)$/.test(pageSize)) {
    throw new ConfigError(`linux.resources.hugepageLimits[${index}].pageSize`, `"${pageSize}" must look like "2MB" or "1GB"`);
  }
  return pageSize;
}

/** Validate a linux.resources.unified key: a plain cgroup interface file name, nothing else. */
export function validateUnifiedKey(key: string): string {
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/.test(key)) {
    throw new ConfigError(`linux.resources.unified["${key}"]`, 'must be a plain cgroup file name such as "memory.high" (no slashes, no "..")');
  }
  if (['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control', 'cgroup.kill', 'cgroup.freeze'].includes(key)) {
    throw new ConfigError(`linux.resources.unified["${key}"]`, 'is managed by the runtime and cannot be set through unified');
  }
  return key;
}

/** Validate swappiness 0..100. */
export function validateSwappiness(memory: LinuxMemory): number | undefined {
  const s = memory.swappiness;
  if (s === undefined || s === null) return undefined;
  if (!Number.isInteger(s) || s < 0 || s > 100) {
    throw new ConfigError('linux.resources.memory.swappiness', `${s} must be an integer 0..100`);
  }
  return s;
}

/** USER_HZ on Linux (cpuacct.stat unit). */
export const USER_HZ = 100n;

/** A value in v1 memory files at or above this means "unlimited" (PAGE_COUNTER_MAX * page size). */
export const V1_UNLIMITED_THRESHOLD = 1n << 62n;

/** Kubelet's CFS period (100 ms) and the smallest quota it writes (1 ms). */
export const KUBE_CFS_PERIOD_US = 100000;
export const KUBE_MIN_QUOTA_US = 1000;

/** Kubelet milliCPU request -> cpu.shares: req*1024/1000, clamped to [2, 262144]; no request -> 2. */
export function milliCpuToShares(milliCpu: number): number {
  if (milliCpu <= 0) return 2;
  return Math.min(262144, Math.max(2, Math.floor((milliCpu * 1024) / 1000)));
}

/** Kubelet milliCPU limit -> CFS quota (us): lim*period/1000, at least 1 ms; no limit -> -1 (unlimited). */
export function milliCpuToQuota(milliCpu: number, period = KUBE_CFS_PERIOD_US): number {
  if (milliCpu <= 0) return -1;
  return Math.max(KUBE_MIN_QUOTA_US, Math.floor((milliCpu * period) / 1000));
}
