/**
 * Loads native/build/berth.node (native/napi.c: a Node-API addon over spawn.c and the libc calls
 * of hot paths; it loads in well under 1 ms where koffi costs ~5 ms). Found relative to this
 * module: the source tree under tsx (runtime/linux/*.ts → ../../native/build), the compiled tree
 * (dist/runtime/linux/*.js → ../../../native/build) and a bundle whose import.meta is the bundle
 * file (dist/berth-oci.cjs → ../native/build). runtime/linux/native.ts and libc.ts use it first
 * and fall back to koffi when it is not built (or BERTH_NO_ADDON=1).
 */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The exports of berth.node (protocol at the top of native/napi.c): ints, -errno on failure. */
export interface Addon {
  spawn: (cfg: Buffer, out: Int32Array, err: Buffer) => number;
  syncSend: (fd: number, type: number) => number;
  sendFd: (sock: number, fd: number) => number;
  recvFd: (sock: number) => number;
  socketpair: (out: Int32Array) => number;
  unixConnectSendFd: (path: string, fd: number) => number;
  mknod: (path: string, mode: number, major: number, minor: number) => number;
  close: (fd: number) => number;
  pidfdOpen: (pid: number) => number;
  pidfdSendSignal: (pidfd: number, sig: number) => number;
  waitpid: (pid: number, status: Int32Array) => number;
  zygoteSocketpair: (out: Int32Array) => number;
  zygoteSpawn: (sock: number, cfg: Buffer, fds: Int32Array, out: Int32Array, err: Buffer) => number;
  /** The two halves of zygoteSpawn (absent from an addon built before they existed). */
  zygoteSend?: (sock: number, cfg: Buffer, fds: Int32Array) => number;
  zygoteRecv?: (sock: number, out: Int32Array, err: Buffer) => number;
  /** Absent from an addon built before they existed (callers fall back to koffi). */
  mount?: (src: string | null, target: string, fstype: string | null, flags: number, data: string | null) => number;
  umount2?: (target: string, flags: number) => number;
  lsetxattr?: (path: string, name: string, value: Buffer, flags: number) => number;
  /** ioctl FS_IOC_GETFLAGS (set 0) or FS_IOC_SETFLAGS (set 1) on fd, through flags[0]. */
  fsFlags?: (fd: number, set: number, flags: Int32Array) => number;
  unshare?: (flags: number) => number;
  setns?: (fd: number, nstype: number) => number;
  /** Bring lo up in the calling thread's network namespace. */
  loopbackUp?: () => number;
  /** posix_spawn in a new session (protocol in native/napi.c): the pid, or -errno. */
  spawnDetached?: (path: string, argv: Buffer, fds: Int32Array) => number;
  /** runtime/oci/seccomp.ts's hash64 lanes into out[0], out[1]. */
  hash64?: (data: Uint8Array, out: Int32Array) => number;
}

let addonCache: Addon | null | undefined;

/** Where a file of native/build may be, most specific first. */
export function candidates(file: string): string[] {
  const here = import.meta.dirname ?? dirname(fileURLToPath(import.meta.url));
  return [resolve(here, '../../native/build', file), resolve(here, '../../../native/build', file), resolve(here, '../native/build', file)];
}

/** berth.node, or null when it is not built, disabled (BERTH_NO_ADDON=1) or BERTH_LIBBERTH names a library. */
export function addon(): Addon | null {
  if (addonCache !== undefined) return addonCache;
  addonCache = null;
  if (process.env.BERTH_NO_ADDON === '1' || process.env.BERTH_LIBBERTH) return null;
  const path = candidates('berth.node').find((p) => existsSync(p));
  if (!path) return null;
  const mod = { exports: {} as Addon };
  process.dlopen(mod, path);
  addonCache = mod.exports;
  return addonCache;
}
