/**
 * The default OCI config.json, the template `runc spec` writes (runc
 * libcontainer/specconv/example.go, current main): `sh` as root in a read-only `rootfs`, the
 * standard /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys and /sys/fs/cgroup mounts, the
 * masked and read-only /proc and /sys paths, new pid/network/ipc/uts/mount namespaces (plus a
 * cgroup namespace on a pure cgroup v2 host, as runc does), three capabilities, no_new_privs
 * and RLIMIT_NOFILE 1024/1024 (never above the caller's own hard limit). `rootless` applies
 * runc's ToRootless: a user namespace mapping the caller's euid/egid to root, no network
 * namespace, /sys as a read-only rbind, no uid=/gid= mount options, no cgroup resources.
 */
import fs from 'node:fs';
import { defaultRlimits } from './rlimits.js';
import type { Mount, Namespace, Spec } from './spec.js';
import { OCI_VERSION } from '../version.js';

export { OCI_VERSION };

/** The capabilities of runc's template (bounding, effective and permitted). */
export const RUNC_TEMPLATE_CAPS: readonly string[] = Object.freeze(['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE']);

export const DEFAULT_MASKED_PATHS: readonly string[] = Object.freeze([
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/proc/scsi',
  '/sys/devices/virtual/tpm',
]);

export const DEFAULT_READONLY_PATHS: readonly string[] = Object.freeze([
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
]);

export const DEFAULT_ENV: readonly string[] = Object.freeze([
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'TERM=xterm',
]);

export interface DefaultSpecOptions {
  /** Apply runc's rootless conversion (runc spec --rootless). */
  rootless?: boolean;
  /** process.args; default ["sh"]. */
  args?: string[];
  /** process.terminal; default true, as runc's template. */
  terminal?: boolean;
  /** Add a cgroup namespace; default: only when /sys/fs/cgroup is cgroup v2 (runc's rule). */
  cgroupns?: boolean;
}

/** Whether /sys/fs/cgroup is a pure cgroup v2 mount (runc's IsCgroup2UnifiedMode). */
export function isCgroup2Unified(): boolean {
  try {
    return fs.existsSync('/sys/fs/cgroup/cgroup.controllers') && !fs.existsSync('/sys/fs/cgroup/unified');
  } catch {
    return false;
  }
}

function defaultMounts(): Mount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
}

/** A fresh copy of the default spec; callers may mutate it. */
export function defaultSpec(opts: DefaultSpecOptions = {}): Spec {
  const caps = (): string[] => [...RUNC_TEMPLATE_CAPS];
  const namespaces: Namespace[] = [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (opts.cgroupns ?? isCgroup2Unified()) namespaces.push({ type: 'cgroup' });
  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: opts.terminal ?? true,
      user: { uid: 0, gid: 0 },
      args: opts.args ? [...opts.args] : ['sh'],
      env: [...DEFAULT_ENV],
      cwd: '/',
      capabilities: { bounding: caps(), effective: caps(), permitted: caps() },
      rlimits: defaultRlimits(),
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'runc',
    mounts: defaultMounts(),
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces,
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  if (opts.rootless) toRootless(spec);
  return spec;
}

/** runc's ToRootless, in place: userns with the caller's ids, no netns, /sys rbind, no cgroup resources. */
export function toRootless(spec: Spec): void {
  const linux = (spec.linux ??= {});
  linux.namespaces = (linux.namespaces ?? []).filter((n) => n.type !== 'network' && n.type !== 'user');
  linux.namespaces.push({ type: 'user' });
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  linux.uidMappings = [{ containerID: 0, hostID: uid, size: 1 }];
  linux.gidMappings = [{ containerID: 0, hostID: gid, size: 1 }];
  spec.mounts = (spec.mounts ?? []).map((m): Mount => {
    if (m.destination.replace(/\/+$/, '') === '/sys') {
      return { destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] };
    }
    if (!m.options) return m;
    return { ...m, options: m.options.filter((o) => !o.startsWith('uid=') && !o.startsWith('gid=')) };
  });
  delete linux.resources;
}
