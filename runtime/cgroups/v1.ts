/**
 * cgroup v1 driver: one directory per mounted controller hierarchy. Mount points come from
 * /proc/self/mountinfo (see readV1Mounts); controllers that are not mounted are skipped, and a
 * resource that needs one of them is refused with a clear error. Co-mounted controllers
 * (cpu,cpuacct) share one directory.
 */
import path from 'node:path';
import type { LinuxResources, LinuxMemory, LinuxCPU, LinuxBlockIO } from '../oci/spec.js';
import type { Cgroup, CgroupDriver, CgroupStats } from './types.js';
import {
  CgroupError, CgroupUnsupportedError, fileExists, killAndRemoveTrees, mkdirCgroup, parseIntOrNull, parseKeyValues,
  parsePids, readCgroupFile, readCgroupFileOptional, removeEmptyCgroups, rmdirCgroup, sleep, writeCgroupFile, writeCgroupValues,
} from './fs.js';
import {
  USER_HZ, V1_UNLIMITED_THRESHOLD, deviceRuleToV1, normalizeCpuset, pidsLimitValue, resolveCgroupsPath,
  validatePageSize, validateSwappiness,
} from './convert.js';

/** The v1 controllers this driver programs. */
export const V1_CONTROLLERS = [
  'cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'blkio', 'devices', 'freezer', 'hugetlb', 'net_cls', 'net_prio',
] as const;
export type V1Controller = (typeof V1_CONTROLLERS)[number];

/** Decode the octal escapes (\040 etc.) mountinfo uses in paths. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export interface MountinfoEntry { root: string; mountPoint: string; fsType: string; superOptions: string[] }

/** Parse /proc/self/mountinfo text. */
export function parseMountinfo(text: string): MountinfoEntry[] {
  const out: MountinfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 6 || fields.length < sep + 4) continue;
    out.push({
      root: unescapeMountinfo(fields[3]),
      mountPoint: unescapeMountinfo(fields[4]),
      fsType: fields[sep + 1],
      superOptions: fields[sep + 3].split(','),
    });
  }
  return out;
}

/** controller -> mount point of its v1 hierarchy, from mountinfo text. Later mounts win. */
export function v1MountsFromMountinfo(text: string): Partial<Record<V1Controller, string>> {
  const mounts: Partial<Record<V1Controller, string>> = {};
  for (const e of parseMountinfo(text)) {
    if (e.fsType !== 'cgroup') continue;
    for (const opt of e.superOptions) {
      if ((V1_CONTROLLERS as readonly string[]).includes(opt)) mounts[opt as V1Controller] = e.mountPoint;
    }
  }
  return mounts;
}

function fmtThrottle(list: { major: number; minor: number; rate: number }[] | undefined): string[] {
  return (list ?? []).map((d) => `${d.major}:${d.minor} ${Math.trunc(d.rate)}`);
}

class V1Cgroup implements Cgroup {
  readonly version = 1 as const;
  readonly path: string;
  readonly warnings: string[] = [];
  private readonly dirs: Partial<Record<V1Controller, string>>;
  private readonly mounts: Partial<Record<V1Controller, string>>;

  constructor(mounts: Partial<Record<V1Controller, string>>, cgPath: string) {
    this.path = cgPath;
    this.mounts = mounts;
    this.dirs = {};
    for (const c of V1_CONTROLLERS) {
      const m = mounts[c];
      if (m) this.dirs[c] = path.join(m, cgPath);
    }
  }

  /** Unique directories (co-mounted controllers share one). */
  private uniqueDirs(): string[] {
    return [...new Set(Object.values(this.dirs))];
  }

  private dir(c: V1Controller, what: string): string {
    const d = this.dirs[c];
    if (!d) throw new CgroupUnsupportedError(`${what} needs the cgroup v1 "${c}" controller, which is not mounted on this host`);
    return d;
  }

  private file(c: V1Controller, name: string, what: string): string {
    return path.join(this.dir(c, what), name);
  }

  paths(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [c, d] of Object.entries(this.dirs)) out[c] = d;
    return out;
  }

  exists(): boolean {
    return this.uniqueDirs().some((d) => fileExists(d));
  }

  create(madeAhead: readonly string[] = []): void {
    const created: string[] = [];
    try {
      let cpusetCreated: string[] = [];
      const cpusetDir = this.dirs.cpuset;
      for (const d of this.uniqueDirs()) {
        const made = mkdirCgroup(d);
        if (d === cpusetDir) cpusetCreated = made;
        created.push(...made);
      }
      // Made just before by the caller (prepareCgroup: mkdir -p on the threadpool): as empty as
      // ones made here, so the fast path below applies (not a read of every level's files).
      if (cpusetDir && cpusetCreated.length === 0) {
        cpusetCreated = madeAhead.filter((d) => d === cpusetDir || cpusetDir.startsWith(`${d}/`)).sort((a, b) => a.length - b.length);
      }
      const cpusetMount = this.mounts.cpuset;
      if (cpusetMount) this.fillCpuset(cpusetMount, cpusetCreated);
    } catch (err) {
      for (const d of created.reverse()) rmdirCgroup(d);
      throw err;
    }
  }

  /**
   * cpuset.cpus/mems start empty in a new v1 cgroup and no task can join: copy from the parent.
   * Directories we just made (made, top-down) are empty for sure: when the first one's parent
   * has both values, write them down the new chain without reading anything else (the usual case:
   * 2 reads, 2 writes per new level). Otherwise every level is checked and filled.
   */
  private fillCpuset(mount: string, made: string[]): void {
    if (made.length > 0) {
      const parent = path.dirname(made[0]);
      const cpus = readCgroupFile(path.join(parent, 'cpuset.cpus'));
      const mems = readCgroupFile(path.join(parent, 'cpuset.mems'));
      if (cpus !== '' && mems !== '') {
        for (const d of made) {
          writeCgroupFile(path.join(d, 'cpuset.cpus'), cpus);
          writeCgroupFile(path.join(d, 'cpuset.mems'), mems);
        }
        return;
      }
    }
    this.fillCpusetLevels(mount);
  }

  private fillCpusetLevels(mount: string): void {
    const parts = this.path.split('/').filter(Boolean);
    let parent = mount;
    for (const p of parts) {
      const cur = path.join(parent, p);
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        if (readCgroupFile(path.join(cur, f)) === '') writeCgroupFile(path.join(cur, f), readCgroupFile(path.join(parent, f)));
      }
      parent = cur;
    }
  }

  apply(r: LinuxResources): void {
    if (r.unified && Object.keys(r.unified).length > 0) {
      throw new CgroupUnsupportedError(`linux.resources.unified (${Object.keys(r.unified).join(', ')}) needs cgroup v2; this host uses cgroup v1`);
    }
    if (r.rdma && Object.keys(r.rdma).length > 0) {
      throw new CgroupUnsupportedError('linux.resources.rdma is not supported by berth');
    }
    if (r.devices) this.applyDevices(r);
    if (r.memory) this.applyMemory(r.memory);
    if (r.cpu) this.applyCpu(r.cpu);
    if (r.pids && r.pids.limit !== undefined) {
      writeCgroupFile(this.file('pids', 'pids.max', 'linux.resources.pids'), pidsLimitValue(r.pids.limit));
    }
    if (r.blockIO) this.applyBlkio(r.blockIO);
    if (r.hugepageLimits) {
      r.hugepageLimits.forEach((h, i) => {
        const size = validatePageSize(h.pageSize, i);
        writeCgroupFile(this.file('hugetlb', `hugetlb.${size}.limit_in_bytes`, 'linux.resources.hugepageLimits'), Math.trunc(h.limit));
      });
    }
    if (r.network) {
      if (r.network.classID !== undefined) {
        writeCgroupFile(this.file('net_cls', 'net_cls.classid', 'linux.resources.network.classID'), r.network.classID);
      }
      for (const p of r.network.priorities ?? []) {
        if (!/^[^\s/]+$/.test(p.name)) throw new CgroupError('net_prio.ifpriomap', 'EINVAL', `linux.resources.network.priorities: "${p.name}" is not an interface name`);
        writeCgroupFile(this.file('net_prio', 'net_prio.ifpriomap', 'linux.resources.network.priorities'), `${p.name} ${p.priority}`);
      }
    }
  }

  /** Like runc: start from deny-all ("a" to devices.deny), then each rule in order. [] denies all. */
  private applyDevices(r: LinuxResources): void {
    const devices = r.devices ?? [];
    const lines = devices.map((d, i) => ({ allow: d.allow, line: deviceRuleToV1(d, i) }));
    const dir = this.dir('devices', 'linux.resources.devices');
    writeCgroupFile(path.join(dir, 'devices.deny'), 'a');
    // Runs of rules for the same file share one open file (one write per rule, in order).
    for (let i = 0; i < lines.length;) {
      let j = i;
      while (j < lines.length && lines[j].allow === lines[i].allow) j++;
      writeCgroupValues(path.join(dir, lines[i].allow ? 'devices.allow' : 'devices.deny'), lines.slice(i, j).map((l) => l.line));
      i = j;
    }
  }

  private applyMemory(m: LinuxMemory): void {
    const what = 'linux.resources.memory';
    const swappiness = validateSwappiness(m);
    const any = m.limit !== undefined || m.swap !== undefined || m.reservation !== undefined || swappiness !== undefined || m.disableOOMKiller !== undefined;
    if (!any && m.kernel === undefined && m.kernelTCP === undefined) return;
    if (m.kernel !== undefined || m.kernelTCP !== undefined) {
      this.warnings.push('linux.resources.memory.kernel/kernelTCP are deprecated by the kernel and were ignored');
    }
    if (!any) return;
    const dir = this.dir('memory', what);
    const limitFile = path.join(dir, 'memory.limit_in_bytes');
    const swapFile = path.join(dir, 'memory.memsw.limit_in_bytes');
    const limit = m.limit;
    let swap = m.swap;
    const swapAccounting = fileExists(swapFile);
    if (limit === -1 && swap === undefined && swapAccounting) swap = -1;
    if (swap !== undefined && swap !== 0 && !swapAccounting) {
      throw new CgroupUnsupportedError(`${what}.swap needs swap accounting (${swapFile} is missing: boot with swapaccount=1)`);
    }
    const v = (n: number): string => (n < 0 ? '-1' : String(Math.trunc(n)));
    if (limit !== undefined && limit !== 0 && swap !== undefined && swap !== 0) {
      // Kernel invariant: limit <= memsw. Raising: memsw first. Lowering: limit first (as runc).
      const cur = BigInt(readCgroupFile(limitFile));
      if (swap === -1 || cur < BigInt(Math.trunc(swap))) {
        writeCgroupFile(swapFile, v(swap));
        writeCgroupFile(limitFile, v(limit));
      } else {
        writeCgroupFile(limitFile, v(limit));
        writeCgroupFile(swapFile, v(swap));
      }
    } else {
      if (limit !== undefined && limit !== 0) writeCgroupFile(limitFile, v(limit));
      if (swap !== undefined && swap !== 0) writeCgroupFile(swapFile, v(swap));
    }
    if (m.reservation !== undefined && m.reservation !== 0) writeCgroupFile(path.join(dir, 'memory.soft_limit_in_bytes'), v(m.reservation));
    if (swappiness !== undefined) writeCgroupFile(path.join(dir, 'memory.swappiness'), swappiness);
    if (m.disableOOMKiller !== undefined) writeCgroupFile(path.join(dir, 'memory.oom_control'), m.disableOOMKiller ? '1' : '0');
  }

  private applyCpu(c: LinuxCPU): void {
    const what = 'linux.resources.cpu';
    if (c.shares !== undefined && c.shares !== 0) writeCgroupFile(this.file('cpu', 'cpu.shares', `${what}.shares`), Math.trunc(c.shares));
    const period = c.period !== undefined && c.period !== 0 ? String(Math.trunc(c.period)) : undefined;
    const quota = c.quota !== undefined && c.quota !== 0 ? (c.quota < 0 ? '-1' : String(Math.trunc(c.quota))) : undefined;
    if (period !== undefined || quota !== undefined) {
      const dir = this.dir('cpu', `${what}.quota/period`);
      const periodFile = path.join(dir, 'cpu.cfs_period_us');
      const quotaFile = path.join(dir, 'cpu.cfs_quota_us');
      if (period !== undefined) {
        try {
          writeCgroupFile(periodFile, period);
        } catch (err) {
          // A shorter period can make the existing quota invalid: set quota first, then retry.
          if (!(err instanceof CgroupError) || err.errnoCode !== 'EINVAL' || quota === undefined) throw err;
          writeCgroupFile(quotaFile, quota);
          writeCgroupFile(periodFile, period);
        }
      }
      if (quota !== undefined) writeCgroupFile(quotaFile, quota);
    }
    if (c.burst !== undefined) writeCgroupFile(this.file('cpu', 'cpu.cfs_burst_us', `${what}.burst`), Math.trunc(c.burst));
    if (c.realtimePeriod !== undefined && c.realtimePeriod !== 0) writeCgroupFile(this.file('cpu', 'cpu.rt_period_us', `${what}.realtimePeriod`), Math.trunc(c.realtimePeriod));
    if (c.realtimeRuntime !== undefined && c.realtimeRuntime !== 0) writeCgroupFile(this.file('cpu', 'cpu.rt_runtime_us', `${what}.realtimeRuntime`), Math.trunc(c.realtimeRuntime));
    if (c.idle !== undefined) writeCgroupFile(this.file('cpu', 'cpu.idle', `${what}.idle`), Math.trunc(c.idle));
    if (c.cpus !== undefined && c.cpus !== '') writeCgroupFile(this.file('cpuset', 'cpuset.cpus', `${what}.cpus`), normalizeCpuset(c.cpus));
    if (c.mems !== undefined && c.mems !== '') writeCgroupFile(this.file('cpuset', 'cpuset.mems', `${what}.mems`), normalizeCpuset(c.mems, `${what}.mems`));
  }

  private applyBlkio(b: LinuxBlockIO): void {
    const what = 'linux.resources.blockIO';
    const pick = (names: string[], field: string): string => {
      const dir = this.dir('blkio', field);
      for (const n of names) if (fileExists(path.join(dir, n))) return path.join(dir, n);
      throw new CgroupUnsupportedError(`${field} is not supported by this kernel's blkio controller (none of ${names.join(', ')} exist in ${dir}; the I/O scheduler may not be BFQ/CFQ)`);
    };
    if (b.weight !== undefined && b.weight !== 0) writeCgroupFile(pick(['blkio.weight', 'blkio.bfq.weight'], `${what}.weight`), Math.trunc(b.weight));
    if (b.leafWeight !== undefined && b.leafWeight !== 0) writeCgroupFile(pick(['blkio.leaf_weight'], `${what}.leafWeight`), Math.trunc(b.leafWeight));
    for (const d of b.weightDevice ?? []) {
      if (d.weight !== undefined) writeCgroupFile(pick(['blkio.weight_device', 'blkio.bfq.weight_device'], `${what}.weightDevice`), `${d.major}:${d.minor} ${d.weight}`);
      if (d.leafWeight !== undefined) writeCgroupFile(pick(['blkio.leaf_weight_device'], `${what}.weightDevice.leafWeight`), `${d.major}:${d.minor} ${d.leafWeight}`);
    }
    const throttles: [string, string[]][] = [
      ['blkio.throttle.read_bps_device', fmtThrottle(b.throttleReadBpsDevice)],
      ['blkio.throttle.write_bps_device', fmtThrottle(b.throttleWriteBpsDevice)],
      ['blkio.throttle.read_iops_device', fmtThrottle(b.throttleReadIOPSDevice)],
      ['blkio.throttle.write_iops_device', fmtThrottle(b.throttleWriteIOPSDevice)],
    ];
    for (const [file, lines] of throttles) for (const l of lines) writeCgroupFile(pick([file], `${what} throttle`), l);
  }

  addProcess(pid: number): void {
    if (!Number.isInteger(pid) || pid <= 0) throw new CgroupError('cgroup.procs', 'EINVAL', `addProcess: ${pid} is not a pid`);
    for (const d of this.uniqueDirs()) writeCgroupFile(path.join(d, 'cgroup.procs'), pid);
  }

  private primaryDir(): string | undefined {
    return this.dirs.pids ?? this.dirs.freezer ?? this.dirs.memory ?? this.dirs.cpu ?? this.uniqueDirs()[0];
  }

  pids(): number[] {
    const d = this.primaryDir();
    return d ? parsePids(readCgroupFileOptional(path.join(d, 'cgroup.procs'))) : [];
  }

  private async setFreezer(state: 'FROZEN' | 'THAWED'): Promise<void> {
    const file = this.file('freezer', 'freezer.state', state === 'FROZEN' ? 'freeze' : 'thaw');
    const deadline = Date.now() + 5000;
    for (;;) {
      writeCgroupFile(file, state);
      if (readCgroupFile(file) === state) return;
      if (Date.now() > deadline) {
        if (state === 'FROZEN') writeCgroupFile(file, 'THAWED');
        throw new CgroupError(file, 'ETIMEDOUT', `${file} did not reach ${state} within 5 s (a task may be in uninterruptible sleep)`);
      }
      await sleep(10);
    }
  }

  freeze(): Promise<void> {
    return this.setFreezer('FROZEN');
  }

  thaw(): Promise<void> {
    return this.setFreezer('THAWED');
  }

  isFrozen(): boolean {
    const d = this.dirs.freezer;
    if (!d) return false;
    return readCgroupFileOptional(path.join(d, 'freezer.state')) === 'FROZEN';
  }

  stats(): CgroupStats {
    const rd = (c: V1Controller, f: string): string | null => {
      const d = this.dirs[c];
      return d ? readCgroupFileOptional(path.join(d, f)) : null;
    };
    const big = (s: string | null): bigint => (s !== null && /^\d+$/.test(s) ? BigInt(s) : 0n);
    const num = (s: string | null): number => Number(big(s));
    const cpuacct = parseKeyValues(rd('cpuacct', 'cpuacct.stat'));
    const cpuStat = parseKeyValues(rd('cpu', 'cpu.stat'));
    const nsPerTick = 1_000_000_000n / USER_HZ;
    const limitRaw = big(rd('memory', 'memory.limit_in_bytes'));
    const memswRaw = rd('memory', 'memory.memsw.usage_in_bytes');
    const pidsMax = rd('pids', 'pids.max');
    let readBytes = 0;
    let writeBytes = 0;
    for (const line of (rd('blkio', 'blkio.throttle.io_service_bytes') ?? '').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length !== 3) continue;
      if (f[1] === 'Read') readBytes += Number(f[2]);
      else if (f[1] === 'Write') writeBytes += Number(f[2]);
    }
    return {
      cpu: {
        usageNanos: big(rd('cpuacct', 'cpuacct.usage')),
        userNanos: (cpuacct.get('user') ?? 0n) * nsPerTick,
        systemNanos: (cpuacct.get('system') ?? 0n) * nsPerTick,
        periods: Number(cpuStat.get('nr_periods') ?? 0n),
        throttledPeriods: Number(cpuStat.get('nr_throttled') ?? 0n),
        throttledNanos: cpuStat.get('throttled_time') ?? 0n,
      },
      memory: {
        usageBytes: num(rd('memory', 'memory.usage_in_bytes')),
        maxUsageBytes: num(rd('memory', 'memory.max_usage_in_bytes')),
        limitBytes: limitRaw === 0n || limitRaw >= V1_UNLIMITED_THRESHOLD ? null : Number(limitRaw),
        swapBytes: memswRaw === null ? null : num(memswRaw),
        oomKills: Number(parseKeyValues(rd('memory', 'memory.oom_control')).get('oom_kill') ?? 0n),
        // With memsw limited, charges hit the memsw counter first: report whichever limit was hit more.
        failCount: Math.max(num(rd('memory', 'memory.failcnt')), num(rd('memory', 'memory.memsw.failcnt'))),
      },
      pids: { current: num(rd('pids', 'pids.current')), limit: parseIntOrNull(pidsMax) },
      blkio: { readBytes, writeBytes },
    };
  }

  async destroy(): Promise<void> {
    // Empty (the common case once the init has exited): one rmdir per hierarchy.
    if (removeEmptyCgroups(this.uniqueDirs())) return;
    // Frozen tasks cannot die: thaw first.
    if (this.isFrozen()) await this.thaw();
    await killAndRemoveTrees(this.uniqueDirs());
  }
}

export class V1Driver implements CgroupDriver {
  readonly version = 1 as const;
  /** controller -> mount point. */
  readonly mounts: Partial<Record<V1Controller, string>>;

  constructor(mounts: Partial<Record<V1Controller, string>>) {
    this.mounts = { ...mounts };
  }

  open(cgroupsPath: string): Cgroup {
    return new V1Cgroup(this.mounts, resolveCgroupsPath(cgroupsPath));
  }
}
