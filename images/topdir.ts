/**
 * Marks a directory as the top of independent hierarchies for ext4's inode allocator
 * (FS_TOPDIR_FL, what `chattr +T` sets): directories created in it are spread over block groups
 * (the Orlov allocator, as for directories in /) instead of packed next to their parent.
 *
 * Each layer snapshot is such a hierarchy. Packed next to the store (under a busy /tmp, say), a
 * snapshot's inodes go to a block group full of recently freed inodes, and on ext4 without a
 * journal every new inode scans past all of those (ext4's recently_deleted check): on the test
 * VM ~0.3-0.9 ms per symlink, against ~15 µs in a group of its own (300 symlinks: 256 ms vs 7 ms).
 * Best effort: file systems without these flags (tmpfs, overlay, xfs...) and errors are ignored.
 */
import fs from 'node:fs';
import koffi from 'koffi';
import { addon } from '../runtime/linux/addon.js';

/** FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (linux/fs.h: _IOR/_IOW('f', 1/2, long)), FS_TOPDIR_FL. */
const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
const FS_TOPDIR_FL = 0x00020000;

type Ioctl = (fd: number, req: number, arg: Int32Array) => number;
let ioctl: Ioctl | null = null;

/** FS_IOC_GETFLAGS/SETFLAGS: berth.node's fsFlags when built (every `berth` call that opens the store makes this check), else koffi. */
function flagsIoctl(): Ioctl {
  if (ioctl) return ioctl;
  const fsFlags = addon()?.fsFlags;
  ioctl = fsFlags
    ? (fd, req, arg) => (fsFlags(fd, req === FS_IOC_SETFLAGS ? 1 : 0, arg) === 0 ? 0 : -1)
    : koffi.load('libc.so.6').func('int ioctl(int fd, unsigned long req, _Inout_ int32_t *arg)') as unknown as Ioctl;
  return ioctl;
}

/** Set FS_TOPDIR_FL on dir if it lacks it; true when the flag is set afterwards. */
export function markTopDir(dir: string): boolean {
  let fd = -1;
  try {
    const ioctl = flagsIoctl();
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    const flags = new Int32Array(1);
    if (ioctl(fd, FS_IOC_GETFLAGS, flags) !== 0) return false;
    if (flags[0] & FS_TOPDIR_FL) return true;
    flags[0] |= FS_TOPDIR_FL;
    return ioctl(fd, FS_IOC_SETFLAGS, flags) === 0;
  } catch {
    return false;
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}
