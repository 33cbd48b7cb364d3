/**
 * The host's device nodes, for `--privileged` (Docker adds every one of them to the container, as
 * containerd's oci.HostDevices does): char and block devices under /dev, recursively, except the
 * directories a container gets its own of (pts, shm, mqueue, fd) or that belong to other managers
 * (.lxc, .lxd-mounts, .udev), and except /dev/console (the container's console is its own).
 * Symlinks are not followed. Each entry carries the node's major/minor, permission bits and owner,
 * so the container's node matches the host's.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../oci/spec.js';

const SKIP_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);
const S_IFMT = 0o170000n;
const S_IFCHR = 0o020000n;
const S_IFBLK = 0o060000n;

/** Linux's dev_t encoding (glibc's gnu_dev_major/minor). */
export function devMajorMinor(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

/** Every char/block device node under dir (default /dev), sorted by path. */
export function hostDevices(dir = '/dev'): Device[] {
  const out: Device[] = [];
  const walk = (d: string, top: boolean): void => {
    let names: string[];
    try { names = readdirSync(d); } catch { return; } // vanished or unreadable: skip, as runc does
    for (const name of names) {
      const p = join(d, name);
      let st;
      try { st = lstatSync(p, { bigint: true }); } catch { continue; }
      if (st.isDirectory()) {
        if (!(top && SKIP_DIRS.has(name))) walk(p, false);
        continue;
      }
      if (top && name === 'console') continue;
      const fmt = st.mode & S_IFMT;
      if (fmt !== S_IFCHR && fmt !== S_IFBLK) continue;
      const { major, minor } = devMajorMinor(st.rdev);
      out.push({
        path: p, type: fmt === S_IFCHR ? 'c' : 'b', major, minor,
        fileMode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid),
      });
    }
  };
  walk(dir, true);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
