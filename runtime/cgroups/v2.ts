/**
 * cgroup v2 (unified) driver. One directory below `root` (the cgroup2 mount, or any directory
 * laid out like one). create() enables the controllers we program in cgroup.subtree_control of
 * every ancestor from the root down to the parent (never in the leaf: no-internal-processes rule),
 * then makes the leaf. Device rules are enforced with a BPF_PROG_TYPE_CGROUP_DEVICE program attached
 * to the leaf (bpf-devices.ts); on a directory that is not on a cgroup2 filesystem (layout tests)
 * the compiled program is only recorded in `deviceFilter` and a warning says it is not enforced.
 *
 * Blkio weight: written to io.weight converted with blkioWeightToIoWeight; when io.weight is absent
 * but io.bfq.weight exists (BFQ without io.cost), the raw 10..1000 weight goes to io.bfq.weight.
 */
import path from 'node:path';
import type { DeviceCgroup, LinuxResources, LinuxMemory, LinuxCPU, LinuxBlockIO, ThrottleDevice } from '../oci/spec.js';
import type { Cgroup, CgroupDriver, CgroupStats } from './types.js';
import {
  CgroupError, CgroupUnsupportedError, fileExists, killAndRemoveTrees, mkdirCgroup, parseIntOrNull, parseKeyValues,
  parsePids, readCgroupFile, readCgroupFileOptional, rmdirCgroup, sleep, writeCgroupFile,
} from './fs.js';
import { compileDeviceFilter, DeviceFilterError, inUserNamespace, isCgroup2Dir, setDeviceFilter, type DeviceFilterProgram } from './bpf-devices.js';
import {
  blkioWeightToIoWeight, cpuMaxValue, cpuSharesToWeight, memoryLimitV2,
  memorySwapToV2, normalizeCpuset, pidsLimitValue, resolveCgroupsPath, validatePageSize, validateUnifiedKey,
} from './convert.js';

/** Controllers this driver enables for its cgroups (when the hierarchy offers them). */
export const V2_CONTROLLERS = ['cpu', 'cpuset', 'io', 'memory', 'pids', 'hugetlb', 'rdma'] as const;

function words(text: string | null): string[] {
  return (text ?? '').split(/\s+/).filter(Boolean);
}

class V2Cgroup implements Cgroup {
  readonly version = 2 as const;
  readonly path: string;
  readonly warnings: string[] = [];
  readonly root: string;
  readonly dir: string;
  /** The device program last compiled by apply() (attached, unless a warning says otherwise). */
  deviceFilter: DeviceFilterProgram | null = null;

  constructor(root: string, cgPath: string) {
    this.root = root;
    this.path = cgPath;
    this.dir = path.join(root, cgPath);
  }

  private f(name: string): string {
    return path.join(this.dir, name);
  }

  paths(): Record<string, string> {
    return { '': this.dir };
  }

  exists(): boolean {
    return fileExists(this.dir);
  }

  /** Ancestors from the hierarchy root down to the parent of the leaf. */
  private ancestors(): string[] {
    const parts = this.path.split('/').filter(Boolean);
    const out = [this.root];
    for (let i = 0; i < parts.length - 1; i++) out.push(path.join(out[out.length - 1], parts[i]));
    return out;
  }

  /** Enable every controller we use that `dir` offers in its cgroup.subtree_control. */
  private enableControllers(dir: string): void {
    const available = words(readCgroupFileOptional(path.join(dir, 'cgroup.controllers')));
    const enabled = new Set(words(readCgroupFileOptional(path.join(dir, 'cgroup.subtree_control'))));
    const missing = V2_CONTROLLERS.filter((c) => available.includes(c) && !enabled.has(c));
    if (missing.length === 0) return;
    const file = path.join(dir, 'cgroup.subtree_control');
    try {
      writeCgroupFile(file, missing.map((c) => `+${c}`).join(' '));
    } catch (err) {
      // Find the one that fails so the error names it.
      for (const c of missing) {
        try {
          writeCgroupFile(file, `+${c}`);
        } catch (one) {
          if (one instanceof CgroupError) {
            throw new CgroupError(file, one.errnoCode, `cannot enable the "${c}" controller for children of ${dir}: ${one.message}`, { cause: one });
          }
          throw one;
        }
      }
      throw err;
    }
  }

  create(): void {
    const created: string[] = [];
    try {
      for (const a of this.ancestors()) {
        created.push(...mkdirCgroup(a));
        this.enableControllers(a);
      }
      created.push(...mkdirCgroup(this.dir));
    } catch (err) {
      for (const d of created.reverse()) rmdirCgroup(d);
      throw err;
    }
  }

  apply(r: LinuxResources): void {
    if (r.devices) this.applyDevices(r.devices);
    if (r.memory) this.applyMemory(r.memory);
    if (r.cpu) this.applyCpu(r.cpu);
    if (r.pids && r.pids.limit !== undefined) writeCgroupFile(this.f('pids.max'), pidsLimitValue(r.pids.limit));
    if (r.blockIO) this.applyIo(r.blockIO);
    (r.hugepageLimits ?? []).forEach((h, i) => {
      writeCgroupFile(this.f(`hugetlb.${validatePageSize(h.pageSize, i)}.max`), Math.trunc(h.limit));
    });
    if (r.network && (r.network.classID !== undefined || (r.network.priorities ?? []).length > 0)) {
      this.warnings.push('linux.resources.network (net_cls/net_prio) does not exist on cgroup v2 and was ignored');
    }
    for (const [name, v] of Object.entries(r.rdma ?? {})) {
      if (!/^[^\s/]+$/.test(name)) throw new CgroupError(this.f('rdma.max'), 'EINVAL', `linux.resources.rdma: "${name}" is not a device name`);
      const parts = [name];
      if (v.hcaHandles !== undefined) parts.push(`hca_handle=${v.hcaHandles}`);
      if (v.hcaObjects !== undefined) parts.push(`hca_object=${v.hcaObjects}`);
      if (parts.length > 1) writeCgroupFile(this.f('rdma.max'), parts.join(' '));
    }
    for (const [key, value] of Object.entries(r.unified ?? {})) {
      writeCgroupFile(this.f(validateUnifiedKey(key)), value);
    }
  }

  /**
   * Compile the rules (validating them) and attach the program before anything else is written.
   * In a user namespace bpf(2) is normally refused; as runc does, that is tolerated only when every
   * rule is an rwm allow (nothing would be denied that the namespace does not deny anyway).
   */
  private applyDevices(devices: DeviceCgroup[]): void {
    const prog = compileDeviceFilter(devices);
    this.deviceFilter = prog;
    if (!fileExists(this.dir)) {
      throw new CgroupError(this.dir, 'ENOENT', `linux.resources.devices: cgroup ${this.dir} does not exist (create it first)`);
    }
    if (!isCgroup2Dir(this.dir)) {
      if (!prog.allowAll) {
        this.warnings.push(`linux.resources.devices: device rules are not enforced: ${this.dir} is not on a cgroup2 filesystem, so no eBPF device program can be attached`);
      }
      return;
    }
    try {
      setDeviceFilter(this.dir, devices);
    } catch (err) {
      // Allow-all needs no program; without bpf(2) rights none of ours can be attached either.
      if (prog.allowAll && err instanceof DeviceFilterError && err.errno === 1) return;
      if (err instanceof DeviceFilterError && err.errno === 1 && inUserNamespace()
        && devices.every((d) => d.allow && (d.access ?? 'rwm').length === 3)) {
        this.warnings.push(`linux.resources.devices: not enforced: bpf(2) is not permitted in this user namespace (${err.message})`);
        return;
      }
      if (err instanceof DeviceFilterError && err.errno === 1) {
        throw new DeviceFilterError(err.op, err.errno, `linux.resources.devices: cannot enforce device rules on ${this.dir} with an eBPF program (bpf(2) needs CAP_BPF and CAP_SYS_ADMIN in the initial user namespace; an attach is also refused below a cgroup holding a non-overridable device program)`, err.verifierLog);
      }
      throw err;
    }
  }

  private applyMemory(m: LinuxMemory): void {
    const swap = memorySwapToV2(m.limit, m.swap);
    if (swap !== undefined) {
      const file = this.f('memory.swap.max');
      if (!fileExists(file) && fileExists(this.f('memory.max'))) {
        if (swap !== 'max') throw new CgroupUnsupportedError(`linux.resources.memory.swap needs swap accounting (${file} is missing)`);
      } else {
        writeCgroupFile(file, String(swap));
      }
    }
    if (m.limit !== undefined && m.limit !== 0) writeCgroupFile(this.f('memory.max'), memoryLimitV2(m.limit));
    if (m.reservation !== undefined && m.reservation !== 0) writeCgroupFile(this.f('memory.low'), memoryLimitV2(m.reservation));
    if (m.swappiness !== undefined && m.swappiness !== null) {
      this.warnings.push('linux.resources.memory.swappiness has no cgroup v2 equivalent and was ignored');
    }
    if (m.disableOOMKiller) this.warnings.push('linux.resources.memory.disableOOMKiller has no cgroup v2 equivalent and was ignored');
    if (m.kernel !== undefined || m.kernelTCP !== undefined) {
      this.warnings.push('linux.resources.memory.kernel/kernelTCP do not exist on cgroup v2 and were ignored');
    }
  }

  private applyCpu(c: LinuxCPU): void {
    if ((c.realtimeRuntime ?? 0) !== 0 || (c.realtimePeriod ?? 0) !== 0) {
      throw new CgroupUnsupportedError('linux.resources.cpu.realtimeRuntime/realtimePeriod are not supported on cgroup v2');
    }
    if (c.shares !== undefined && c.shares !== 0) writeCgroupFile(this.f('cpu.weight'), cpuSharesToWeight(c.shares));
    const quota = c.quota === 0 ? undefined : c.quota;
    const period = c.period === 0 ? undefined : c.period;
    if (quota !== undefined || period !== undefined) {
      let currentQuota = 'max';
      if (quota === undefined) currentQuota = words(readCgroupFileOptional(this.f('cpu.max')))[0] ?? 'max';
      const v = cpuMaxValue(quota, period, currentQuota);
      if (v !== undefined) writeCgroupFile(this.f('cpu.max'), v);
    }
    if (c.burst !== undefined) writeCgroupFile(this.f('cpu.max.burst'), Math.trunc(c.burst));
    if (c.idle !== undefined) writeCgroupFile(this.f('cpu.idle'), Math.trunc(c.idle));
    if (c.cpus !== undefined && c.cpus !== '') writeCgroupFile(this.f('cpuset.cpus'), normalizeCpuset(c.cpus));
    if (c.mems !== undefined && c.mems !== '') writeCgroupFile(this.f('cpuset.mems'), normalizeCpuset(c.mems, 'linux.resources.cpu.mems'));
  }

  private applyIo(b: LinuxBlockIO): void {
    const ioWeight = this.f('io.weight');
    const bfqWeight = this.f('io.bfq.weight');
    const useBfq = !fileExists(ioWeight) && fileExists(bfqWeight);
    if (b.weight !== undefined && b.weight !== 0) {
      if (useBfq) writeCgroupFile(bfqWeight, Math.trunc(b.weight));
      else writeCgroupFile(ioWeight, blkioWeightToIoWeight(b.weight));
    }
    if (b.leafWeight !== undefined && b.leafWeight !== 0) this.warnings.push('linux.resources.blockIO.leafWeight has no cgroup v2 equivalent and was ignored');
    for (const d of b.weightDevice ?? []) {
      if (d.weight === undefined) continue;
      if (useBfq) writeCgroupFile(bfqWeight, `${d.major}:${d.minor} ${Math.trunc(d.weight)}`);
      else writeCgroupFile(ioWeight, `${d.major}:${d.minor} ${blkioWeightToIoWeight(d.weight)}`);
    }
    const perDevice = new Map<string, string[]>();
    const add = (list: ThrottleDevice[] | undefined, key: string): void => {
      for (const d of list ?? []) {
        const dev = `${d.major}:${d.minor}`;
        const entry = perDevice.get(dev) ?? [];
        entry.push(`${key}=${d.rate > 0 ? Math.trunc(d.rate) : 'max'}`);
        perDevice.set(dev, entry);
      }
    };
    add(b.throttleReadBpsDevice, 'rbps');
    add(b.throttleWriteBpsDevice, 'wbps');
    add(b.throttleReadIOPSDevice, 'riops');
    add(b.throttleWriteIOPSDevice, 'wiops');
    for (const [dev, kv] of perDevice) writeCgroupFile(this.f('io.max'), `${dev} ${kv.join(' ')}`);
  }

  addProcess(pid: number): void {
    if (!Number.isInteger(pid) || pid <= 0) throw new CgroupError(this.f('cgroup.procs'), 'EINVAL', `addProcess: ${pid} is not a pid`);
    writeCgroupFile(this.f('cgroup.procs'), pid);
  }

  pids(): number[] {
    return parsePids(readCgroupFileOptional(this.f('cgroup.procs')));
  }

  private async setFrozen(frozen: boolean): Promise<void> {
    const want = frozen ? 1n : 0n;
    writeCgroupFile(this.f('cgroup.freeze'), frozen ? '1' : '0');
    const deadline = Date.now() + 5000;
    while (parseKeyValues(readCgroupFile(this.f('cgroup.events'))).get('frozen') !== want) {
      if (Date.now() > deadline) {
        if (frozen) writeCgroupFile(this.f('cgroup.freeze'), '0');
        throw new CgroupError(this.f('cgroup.events'), 'ETIMEDOUT', `${this.dir} did not become ${frozen ? 'frozen' : 'thawed'} within 5 s`);
      }
      await sleep(5);
    }
  }

  freeze(): Promise<void> {
    return this.setFrozen(true);
  }

  thaw(): Promise<void> {
    return this.setFrozen(false);
  }

  isFrozen(): boolean {
    return parseKeyValues(readCgroupFileOptional(this.f('cgroup.events'))).get('frozen') === 1n;
  }

  stats(): CgroupStats {
    const rd = (name: string): string | null => readCgroupFileOptional(this.f(name));
    const num = (s: string | null): number => (s !== null && /^\d+$/.test(s) ? Number(s) : 0);
    const cpu = parseKeyValues(rd('cpu.stat'));
    const events = parseKeyValues(rd('memory.events'));
    const swap = rd('memory.swap.current');
    let readBytes = 0;
    let writeBytes = 0;
    for (const line of (rd('io.stat') ?? '').split('\n')) {
      for (const kv of line.trim().split(/\s+/).slice(1)) {
        const [k, v] = kv.split('=');
        if (k === 'rbytes') readBytes += Number(v);
        else if (k === 'wbytes') writeBytes += Number(v);
      }
    }
    const usec = (k: string): bigint => (cpu.get(k) ?? 0n) * 1000n;
    return {
      cpu: {
        usageNanos: usec('usage_usec'),
        userNanos: usec('user_usec'),
        systemNanos: usec('system_usec'),
        periods: Number(cpu.get('nr_periods') ?? 0n),
        throttledPeriods: Number(cpu.get('nr_throttled') ?? 0n),
        throttledNanos: usec('throttled_usec'),
      },
      memory: {
        usageBytes: num(rd('memory.current')),
        maxUsageBytes: num(rd('memory.peak')),
        limitBytes: parseIntOrNull(rd('memory.max')),
        swapBytes: swap === null ? null : num(swap),
        oomKills: Number(events.get('oom_kill') ?? 0n),
        failCount: Number(events.get('max') ?? 0n),
      },
      pids: { current: num(rd('pids.current')), limit: parseIntOrNull(rd('pids.max')) },
      blkio: { readBytes, writeBytes },
    };
  }

  async destroy(): Promise<void> {
    await killAndRemoveTrees([this.dir], {
      killTree: (root) => {
        const kill = path.join(root, 'cgroup.kill');
        if (fileExists(kill)) writeCgroupFile(kill, '1');
      },
    });
  }
}

export class V2Driver implements CgroupDriver {
  readonly version = 2 as const;
  /** The cgroup2 hierarchy root directory. */
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  open(cgroupsPath: string): Cgroup {
    return new V2Cgroup(this.root, resolveCgroupsPath(cgroupsPath));
  }
}
