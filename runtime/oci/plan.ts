/**
 * Turns a validated OCI spec into the SpawnConfig that native/spawn.c executes: mount options to
 * flags, capability names to masks, rlimit names to numbers, the seccomp profile to BPF, the
 * default devices, and the special "cgroup" mount type. Pure apart from reading the host's cgroup
 * layout (passed in) and compiling seccomp.
 */
import { isAbsolute, posix } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Spec, Process, Mount, DeviceCgroup, LinuxResources } from './spec.js';
import type { SpawnConfig, SpawnMount, SpawnDevice, SpawnNamespace, SpawnCapabilities } from '../linux/spawn-types.js';
import { parseMountOptions, propagationFlag } from './mount-options.js';
import { capsToMask } from './caps.js';
import { rlimitNumber } from './rlimits.js';
import { compileSeccomp } from './seccomp.js';
import * as L from '../linux/libc.js';

/** The devices every container gets (runc's AllowedDevices minus the pty ones handled by devpts). */
export const DEFAULT_DEVICES: readonly SpawnDevice[] = [
  { path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/zero', type: 'c', major: 1, minor: 5, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/full', type: 'c', major: 1, minor: 7, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/tty', type: 'c', major: 5, minor: 0, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/random', type: 'c', major: 1, minor: 8, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/urandom', type: 'c', major: 1, minor: 9, mode: 0o666, uid: 0, gid: 0 },
];

/** Device cgroup rules every container gets after the spec's own (runc's AllowedDevices). */
const DEFAULT_DEVICE_RULES: DeviceCgroup[] = [
  { allow: true, type: 'c', major: null, minor: null, access: 'm' },
  { allow: true, type: 'b', major: null, minor: null, access: 'm' },
  ...DEFAULT_DEVICES.map((d) => ({ allow: true, type: d.type as 'c', major: d.major, minor: d.minor, access: 'rwm' })),
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' },
  { allow: true, type: 'c', major: 136, minor: null, access: 'rwm' },
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' },
];

/**
 * The resources to apply to the container's cgroup: the spec's, with device rules completed so the
 * devices the runtime creates (and linux.devices) stay usable after a deny-all.
 */
export function cgroupResources(spec: Spec): LinuxResources | undefined {
  const r = spec.linux?.resources;
  if (!r) return undefined;
  if (!r.devices) return r;
  const specDevices: DeviceCgroup[] = (spec.linux?.devices ?? []).filter((d) => d.type !== 'p').map((d) => ({ allow: true, type: d.type === 'b' ? 'b' : 'c', major: d.major ?? 0, minor: d.minor ?? 0, access: 'rwm' }));
  return { ...r, devices: [...r.devices, ...specDevices, ...DEFAULT_DEVICE_RULES] };
}

export interface PlanContext {
  rootfs: string;
  /** The container's cgroup directories per v1 controller ("cpu,cpuacct" → dir), or {"": dir} on v2. */
  cgroupPaths: Record<string, string>;
  cgroupVersion: 1 | 2;
  noPivot?: boolean;
  execFifo?: string;
  stdio?: [number, number, number];
  extraFds?: number[];
  cloneParent?: boolean;
  hookPause?: boolean;
}

function cleanDest(d: string): string {
  return posix.normalize(d).replace(/\/+$/, '') || '/';
}

/** Expand the OCI "cgroup" mount into what the kernel can do on this host. */
function cgroupMounts(m: Mount, ctx: PlanContext, i: number): SpawnMount[] {
  const dest = cleanDest(m.destination);
  const opts = parseMountOptions(m.options);
  if (ctx.cgroupVersion === 2) {
    return [{ source: 'cgroup', destination: dest, fstype: 'cgroup2', flags: opts.flags, propagation: opts.propagation, data: '' }];
  }
  // v1: a tmpfs holding a read-only bind of this container's directory in each hierarchy, as runc does.
  const ro = opts.flags & L.MS_RDONLY;
  const out: SpawnMount[] = [{ source: 'tmpfs', destination: dest, fstype: 'tmpfs', flags: (opts.flags & ~L.MS_RDONLY) | L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC, propagation: [], data: 'mode=755' }];
  for (const [controllers, dir] of Object.entries(ctx.cgroupPaths)) {
    if (!isAbsolute(dir)) throw new ConfigError(`mounts[${i}]`, `bad cgroup path ${dir}`);
    for (const name of controllers.split(',')) {
      out.push({ source: dir, destination: `${dest}/${name}`, fstype: 'bind', flags: L.MS_BIND | L.MS_REC | ro | L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC, propagation: [], data: '' });
    }
  }
  if (ro) out.push({ source: 'tmpfs', destination: dest, fstype: 'tmpfs', flags: L.MS_REMOUNT | L.MS_RDONLY | L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC, propagation: [], data: 'mode=755' });
  return out;
}

export function planMounts(spec: Spec, ctx: PlanContext): SpawnMount[] {
  const out: SpawnMount[] = [];
  (spec.mounts ?? []).forEach((m, i) => {
    const type = m.type ?? '';
    if (type === 'cgroup') {
      out.push(...cgroupMounts(m, ctx, i));
      return;
    }
    const opts = parseMountOptions(m.options);
    const isBind = type === 'bind' || (opts.flags & L.MS_BIND) !== 0;
    let flags = opts.flags;
    if (isBind) flags |= L.MS_BIND;
    const source = m.source ?? (isBind ? '' : type);
    if (isBind) {
      if (!source) throw new ConfigError(`mounts[${i}].source`, 'a bind mount needs a source');
      if (!isAbsolute(source)) throw new ConfigError(`mounts[${i}].source`, `bind source must be an absolute path, got ${JSON.stringify(source)}`);
    } else if (!type) {
      throw new ConfigError(`mounts[${i}].type`, 'is required for non-bind mounts');
    }
    out.push({ source, destination: cleanDest(m.destination), fstype: isBind ? 'bind' : type, flags, propagation: opts.propagation, data: opts.data });
  });
  return out;
}

export function planDevices(spec: Spec): SpawnDevice[] {
  const byPath = new Map<string, SpawnDevice>();
  for (const d of DEFAULT_DEVICES) byPath.set(d.path, d);
  (spec.linux?.devices ?? []).forEach((d, i) => {
    if (!posix.normalize(d.path).startsWith('/dev/')) throw new ConfigError(`linux.devices[${i}].path`, `devices must live under /dev, got ${d.path}`);
    byPath.set(d.path, {
      path: posix.normalize(d.path),
      type: d.type === 'u' ? 'c' : d.type,
      major: d.major ?? 0,
      minor: d.minor ?? 0,
      mode: (d.fileMode ?? 0o666) & 0o7777,
      uid: d.uid ?? 0,
      gid: d.gid ?? 0,
    });
  });
  return [...byPath.values()];
}

export function planCapabilities(p: Process, base: string): SpawnCapabilities | null {
  if (!p.capabilities) return null;
  const c = p.capabilities;
  return {
    bounding: capsToMask(c.bounding ?? [], `${base}.capabilities.bounding`),
    effective: capsToMask(c.effective ?? [], `${base}.capabilities.effective`),
    permitted: capsToMask(c.permitted ?? [], `${base}.capabilities.permitted`),
    inheritable: capsToMask(c.inheritable ?? [], `${base}.capabilities.inheritable`),
    ambient: capsToMask(c.ambient ?? [], `${base}.capabilities.ambient`),
  };
}

/** The per-process part, shared by create and exec. */
export function planProcess(p: Process, spec: Spec, base = 'process'): Pick<SpawnConfig,
  'rlimits' | 'oomScoreAdj' | 'capabilities' | 'noNewPrivileges' | 'seccomp' | 'uid' | 'gid' | 'additionalGids' | 'umask' | 'cwd' | 'args' | 'env' | 'terminal'> {
  const args = p.args ?? (p.commandLine ? ['/bin/sh', '-c', p.commandLine] : []);
  if (args.length === 0) throw new ConfigError(`${base}.args`, 'must not be empty');
  const env = p.env ?? [];
  return {
    rlimits: (p.rlimits ?? []).map((r, i) => ({ resource: rlimitNumber(r.type, `${base}.rlimits[${i}].type`), soft: BigInt(r.soft), hard: BigInt(r.hard) })),
    oomScoreAdj: p.oomScoreAdj ?? null,
    capabilities: planCapabilities(p, base),
    noNewPrivileges: p.noNewPrivileges ?? false,
    seccomp: spec.linux?.seccomp ? compileSeccomp(spec.linux.seccomp) : null,
    uid: p.user.uid,
    gid: p.user.gid,
    additionalGids: p.user.additionalGids ?? [],
    umask: p.user.umask ?? null,
    cwd: p.cwd,
    args,
    env,
    terminal: p.terminal ?? false,
  };
}

export function planNamespaces(spec: Spec): SpawnNamespace[] {
  return (spec.linux?.namespaces ?? []).map((n) => (n.path ? { kind: n.type, path: n.path } : { kind: n.type }));
}

/** Build the SpawnConfig for a container's init. */
export function planInit(spec: Spec, ctx: PlanContext): SpawnConfig {
  if (!spec.process) throw new ConfigError('process', 'is required');
  const mounts = planMounts(spec, ctx);
  const hasMountNs = (spec.linux?.namespaces ?? []).some((n) => n.type === 'mount');
  if (!hasMountNs && !ctx.noPivot) {
    // Without a mount namespace the mounts would land on the host: refuse, as runc does.
    if (mounts.length > 0) throw new ConfigError('linux.namespaces', 'mounts need a mount namespace: add {"type": "mount"}');
  }
  const devMount = mounts.find((m) => m.destination === '/dev');
  const rp = spec.linux?.rootfsPropagation;
  const sysctls = Object.entries(spec.linux?.sysctl ?? {}).map(([key, value]) => ({ key, value }));
  return {
    namespaces: planNamespaces(spec),
    rootfs: ctx.rootfs,
    rootfsReadonly: spec.root?.readonly ?? false,
    rootfsPropagation: rp ? propagationFlag(rp) ?? 0 : 0,
    noPivot: ctx.noPivot ?? false,
    mounts,
    setupDev: devMount !== undefined && devMount.fstype !== 'bind',
    devices: planDevices(spec),
    maskedPaths: spec.linux?.maskedPaths ?? [],
    readonlyPaths: spec.linux?.readonlyPaths ?? [],
    hostname: spec.hostname ?? '',
    domainname: spec.domainname ?? '',
    sysctls,
    ...planProcess(spec.process, spec),
    stdio: ctx.stdio ?? [0, 1, 2],
    extraFds: ctx.extraFds ?? [],
    execFifo: ctx.execFifo ?? '',
    cloneParent: ctx.cloneParent ?? false,
    parentDeathSignal: 0,
    hookPause: ctx.hookPause ?? false,
  };
}
