/**
 * Cgroup driver selection. detectCgroupDriver() looks at /proc/self/mountinfo: when the mount root
 * (/sys/fs/cgroup) is itself a cgroup2 mount the host is unified (v2); otherwise the v1 controller
 * hierarchies are taken from the cgroup (v1) mounts listed there (hybrid hosts keep their cgroup2
 * mount at /sys/fs/cgroup/unified, which the v1 driver ignores). The result is cached per root.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BerthError } from '../errors.js';
import type { CgroupDriver } from './types.js';
import { V1Driver, type V1Controller, parseMountinfo, v1MountsFromMountinfo } from './v1.js';
import { V2Driver } from './v2.js';

export type { Cgroup, CgroupDriver, CgroupStats, CpuStats, MemoryStats } from './types.js';
export { CgroupError, CgroupUnsupportedError } from './fs.js';
export { V1Driver, V1_CONTROLLERS, parseMountinfo, v1MountsFromMountinfo } from './v1.js';
export { V2Driver, V2_CONTROLLERS } from './v2.js';
export * from './convert.js';

export const DEFAULT_CGROUP_MOUNT_ROOT = '/sys/fs/cgroup';

const cache = new Map<string, CgroupDriver>();

function readMountinfo(): string {
  try {
    return fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch (err) {
    throw new BerthError('ECGROUP', 'cannot read /proc/self/mountinfo to detect the cgroup version: is /proc mounted?', { cause: err });
  }
}

function under(dir: string, root: string): boolean {
  const rel = path.relative(root, dir);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Which cgroup version the host at mountRoot runs, from mountinfo text. */
export function detectCgroupVersion(mountinfo: string, mountRoot = DEFAULT_CGROUP_MOUNT_ROOT): 1 | 2 {
  const entries = parseMountinfo(mountinfo).filter((e) => e.mountPoint === path.resolve(mountRoot));
  const top = entries[entries.length - 1];
  return top && top.fsType === 'cgroup2' ? 2 : 1;
}

/** v1 controller mounts from mountinfo, preferring those below mountRoot. */
function v1Mounts(mountinfo: string, mountRoot: string): Partial<Record<V1Controller, string>> {
  const all = v1MountsFromMountinfo(mountinfo);
  const local: Partial<Record<V1Controller, string>> = {};
  for (const [c, m] of Object.entries(all) as [V1Controller, string][]) if (under(m, mountRoot)) local[c] = m;
  return Object.keys(local).length > 0 ? local : all;
}

/**
 * The driver for this host (cached). v2 when mountRoot is a cgroup2 mount, else v1 with its
 * controller mounts from /proc/self/mountinfo. Throws when neither is usable.
 */
export function detectCgroupDriver(opts: { mountRoot?: string } = {}): CgroupDriver {
  const mountRoot = path.resolve(opts.mountRoot ?? DEFAULT_CGROUP_MOUNT_ROOT);
  const hit = cache.get(mountRoot);
  if (hit) return hit;
  const mountinfo = readMountinfo();
  let driver: CgroupDriver;
  if (detectCgroupVersion(mountinfo, mountRoot) === 2) {
    driver = new V2Driver(mountRoot);
  } else {
    const mounts = v1Mounts(mountinfo, mountRoot);
    if (Object.keys(mounts).length === 0) {
      throw new BerthError('ECGROUP', `no cgroup filesystem found: ${mountRoot} is not a cgroup2 mount and no cgroup v1 controllers are mounted (see /proc/self/mountinfo)`);
    }
    driver = new V1Driver(mounts);
  }
  cache.set(mountRoot, driver);
  return driver;
}

/**
 * A driver for an explicit hierarchy. Version 2: `root` is a cgroup2 mount, or any directory laid
 * out like one (used by layout tests). Version 1: `root` is the directory holding the controller
 * mounts (e.g. /sys/fs/cgroup); mounts come from mountinfo, limited to those below root.
 */
export function cgroupDriverFor(version: 1 | 2, root: string): CgroupDriver {
  const abs = path.resolve(root);
  if (version === 2) return new V2Driver(abs);
  const mounts = v1Mounts(readMountinfo(), abs);
  for (const [c, m] of Object.entries(mounts) as [V1Controller, string][]) if (!under(m, abs)) delete mounts[c];
  if (Object.keys(mounts).length === 0) throw new BerthError('ECGROUP', `no cgroup v1 controller is mounted below ${abs}`);
  return new V1Driver(mounts);
}
