/**
 * The libc calls Node has no API for. Each wrapper throws SyscallError with errno and the
 * caller's context; nothing here is async. mount, umount2, mknod and lsetxattr go through
 * native/build/berth.node when it is built (runtime/linux/addon.ts), the rest (and those, without
 * the addon) through koffi. Loaded lazily: a pull or a `berth run` loads no koffi.
 */
import koffi from 'koffi';
import { SyscallError } from '../errors.js';
import { addon } from './addon.js';

// Mount flags (linux/mount.h).
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_SYNCHRONOUS = 0x10;
export const MS_REMOUNT = 0x20;
export const MS_MANDLOCK = 0x40;
export const MS_DIRSYNC = 0x80;
export const MS_NOSYMFOLLOW = 0x100;
export const MS_NOATIME = 0x400;
export const MS_NODIRATIME = 0x800;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_SILENT = 0x8000;
export const MS_UNBINDABLE = 1 << 17;
export const MS_PRIVATE = 1 << 18;
export const MS_SLAVE = 1 << 19;
export const MS_SHARED = 1 << 20;
export const MS_RELATIME = 1 << 21;
export const MS_STRICTATIME = 1 << 24;
export const MS_LAZYTIME = 1 << 25;

export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
export const MNT_EXPIRE = 4;
export const UMOUNT_NOFOLLOW = 8;

export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

const SYS_pidfd_send_signal = 424;
const SYS_pidfd_open = 434;

interface Libc {
  mount: (src: string | null, target: string, fstype: string | null, flags: number, data: string | null) => number;
  umount2: (target: string, flags: number) => number;
  mknod: (path: string, mode: number, dev: bigint) => number;
  lsetxattr: (path: string, name: string, value: Buffer, size: number, flags: number) => number;
  lgetxattr: (path: string, name: string, value: Buffer | null, size: number) => number;
  llistxattr: (path: string, list: Buffer | null, size: number) => number;
  waitpid: (pid: number, status: Int32Array, options: number) => number;
  syscall4: (nr: number, a: number, b: number, c: unknown, d: number) => number;
  syscall2: (nr: number, a: number, b: number) => number;
  close: (fd: number) => number;
  prctl: (option: number, a2: number, a3: number, a4: number, a5: number) => number;
}

let cached: Libc | null = null;

function lib(): Libc {
  if (cached) return cached;
  const c = koffi.load('libc.so.6');
  cached = {
    mount: c.func('int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const char *data)'),
    umount2: c.func('int umount2(const char *target, int flags)'),
    mknod: c.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    lsetxattr: c.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    lgetxattr: c.func('long lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)'),
    llistxattr: c.func('long llistxattr(const char *path, _Out_ void *list, size_t size)'),
    waitpid: c.func('int waitpid(int pid, _Out_ int32_t *status, int options)'),
    syscall4: c.func('long syscall(long nr, long a, long b, void *c, long d)'),
    syscall2: c.func('long syscall(long nr, long a, long b)'),
    close: c.func('int close(int fd)'),
    prctl: c.func('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)'),
  } as unknown as Libc;
  return cached;
}

function check(rc: number, syscall: string, context: string): number {
  if (rc < 0) throw new SyscallError(syscall, koffi.errno(), context);
  return rc;
}

/** rc (0 or -errno) of an addon call, as SyscallError on failure. */
function checkNeg(rc: number, syscall: string, context: string): void {
  if (rc < 0) throw new SyscallError(syscall, -rc, context);
}

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  const a = addon();
  if (a?.mount) return checkNeg(a.mount(source, target, fstype, flags, data), 'mount', `mount ${source ?? 'none'} on ${target}${fstype ? ` (${fstype})` : ''}`);
  check(lib().mount(source, target, fstype, flags, data), 'mount', `mount ${source ?? 'none'} on ${target}${fstype ? ` (${fstype})` : ''}`);
}

/** umount2; returns false when the target was not mounted (EINVAL) or is gone (ENOENT). */
export function umount(target: string, flags = 0): boolean {
  const a = addon();
  let e: number;
  if (a?.umount2) {
    const rc = a.umount2(target, flags);
    if (rc === 0) return true;
    e = -rc;
  } else {
    if (lib().umount2(target, flags) === 0) return true;
    e = koffi.errno();
  }
  if (e === 22 || e === 2) return false;
  throw new SyscallError('umount2', e, `unmount ${target}`);
}

export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major), mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  const a = addon();
  if (a) return checkNeg(a.mknod(path, mode, major, minor), 'mknod', `create device node ${path}`);
  check(lib().mknod(path, mode, makedev(major, minor)), 'mknod', `create device node ${path}`);
}

export function lsetxattr(path: string, name: string, value: Buffer, flags = 0): void {
  const a = addon();
  if (a?.lsetxattr) return checkNeg(a.lsetxattr(path, name, value, flags), 'lsetxattr', `set xattr ${name} on ${path}`);
  check(lib().lsetxattr(path, name, value, value.length, flags), 'lsetxattr', `set xattr ${name} on ${path}`);
}

/** Returns null when the attribute is absent (ENODATA) or unsupported. */
export function lgetxattr(path: string, name: string): Buffer | null {
  const l = lib();
  const size = l.lgetxattr(path, name, null, 0);
  if (size < 0) {
    const e = koffi.errno();
    if (e === 61 || e === 95) return null;
    throw new SyscallError('lgetxattr', e, `read xattr ${name} of ${path}`);
  }
  const buf = Buffer.alloc(size);
  const n = check(l.lgetxattr(path, name, buf, size), 'lgetxattr', `read xattr ${name} of ${path}`);
  return buf.subarray(0, n);
}

export function llistxattr(path: string): string[] {
  const l = lib();
  const size = l.llistxattr(path, null, 0);
  if (size < 0) {
    const e = koffi.errno();
    if (e === 95) return [];
    throw new SyscallError('llistxattr', e, `list xattrs of ${path}`);
  }
  if (size === 0) return [];
  const buf = Buffer.alloc(size);
  const n = check(l.llistxattr(path, buf, size), 'llistxattr', `list xattrs of ${path}`);
  return buf.subarray(0, n).toString('latin1').split('\0').filter(Boolean);
}

export const WNOHANG = 1;

export interface WaitResult { pid: number; code: number | null; signal: number | null; coreDumped: boolean }

/** Non-blocking waitpid for one known pid. Returns null while it is still running. */
export function waitpidNohang(pid: number): WaitResult | null {
  const st = new Int32Array(1);
  const rc = lib().waitpid(pid, st, WNOHANG);
  if (rc === 0) return null;
  if (rc < 0) throw new SyscallError('waitpid', koffi.errno(), `wait for pid ${pid}`);
  const s = st[0];
  if ((s & 0x7f) === 0) return { pid: rc, code: (s >> 8) & 0xff, signal: null, coreDumped: false };
  return { pid: rc, code: null, signal: s & 0x7f, coreDumped: (s & 0x80) !== 0 };
}

export function pidfdOpen(pid: number): number {
  return check(lib().syscall2(SYS_pidfd_open, pid, 0), 'pidfd_open', `open pidfd for ${pid}`);
}

/** Signal through a pidfd; returns false when the process is already gone (ESRCH). */
export function pidfdSendSignal(pidfd: number, signal: number): boolean {
  const rc = lib().syscall4(SYS_pidfd_send_signal, pidfd, signal, null, 0);
  if (rc === 0) return true;
  const e = koffi.errno();
  if (e === 3) return false;
  throw new SyscallError('pidfd_send_signal', e, `send signal ${signal}`);
}

export function closeFd(fd: number): void {
  if (fd >= 0) lib().close(fd);
}

export const PR_SET_CHILD_SUBREAPER = 36;

export function prctl(option: number, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
  return check(lib().prctl(option, a2, a3, a4, a5), 'prctl', `prctl(${option})`);
}
