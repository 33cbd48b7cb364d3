/**
 * koffi bindings to native/build/libberth.so (native/spawn.c): the clone→execve entry point and
 * the fd-passing helpers Node lacks. The library is found relative to this module so it works
 * from the source tree under tsx (runtime/linux/*.ts → ../../native/build) and from the compiled
 * tree (dist/runtime/linux/*.js → ../../../native/build) and from the berth-oci bundle
 * (dist/berth-oci.mjs → ../native/build). Loaded lazily on first use.
 */
import koffi from 'koffi';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, SyscallError } from '../errors.js';

export interface NativeLib {
  /** int berth_spawn(cfg, cfglen, out[4] = pid, pidfd, syncfd, fdsock, err, errlen) */
  spawn: (cfg: Buffer, len: number, out: Int32Array, err: Buffer, errlen: number) => number;
  syncSend: (fd: number, type: number) => number;
  sendFd: (sock: number, fd: number) => number;
  recvFd: (sock: number) => number;
  socketpair: (out: Int32Array) => number;
  unixConnectSendFd: (path: string, fd: number) => number;
}

let cached: NativeLib | null = null;

/** Candidate locations of libberth.so, most specific first. */
export function libberthCandidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const list = [resolve(here, '../../native/build/libberth.so'), resolve(here, '../../../native/build/libberth.so'), resolve(here, '../native/build/libberth.so')];
  if (process.env.BERTH_LIBBERTH) list.unshift(process.env.BERTH_LIBBERTH);
  return list;
}

export function native(): NativeLib {
  if (cached) return cached;
  const path = libberthCandidates().find((p) => existsSync(p));
  if (!path) {
    throw new BerthError('ENATIVE', `native library libberth.so not found (looked in ${libberthCandidates().join(', ')}); build it with "make -C native"`);
  }
  const l = koffi.load(path);
  cached = {
    spawn: l.func('int berth_spawn(const uint8_t *cfg, size_t cfglen, _Out_ int32_t *out, _Out_ uint8_t *err, size_t errlen)'),
    syncSend: l.func('int berth_sync_send(int syncfd, int type)'),
    sendFd: l.func('int berth_send_fd(int sock, int fd)'),
    recvFd: l.func('int berth_recv_fd(int sock)'),
    socketpair: l.func('int berth_socketpair(_Out_ int32_t *fds)'),
    unixConnectSendFd: l.func('int berth_unix_connect_send_fd(const char *path, int fd)'),
  } as unknown as NativeLib;
  return cached;
}

function check(rc: number, syscall: string, context: string): number {
  if (rc < 0) throw new SyscallError(syscall, -rc, context);
  return rc;
}

/** Send fd over a unix socket with SCM_RIGHTS. */
export function sendFd(sock: number, fd: number): void {
  check(native().sendFd(sock, fd), 'sendmsg', `send fd ${fd} over socket ${sock}`);
}

/** Receive one fd (O_CLOEXEC) sent with SCM_RIGHTS; blocks until it arrives. */
export function recvFd(sock: number): number {
  return check(native().recvFd(sock), 'recvmsg', `receive an fd from socket ${sock}`);
}

/** AF_UNIX SOCK_STREAM|SOCK_CLOEXEC socketpair. */
export function socketpair(): [number, number] {
  const fds = new Int32Array(2);
  check(native().socketpair(fds), 'socketpair', 'create a unix socketpair');
  return [fds[0], fds[1]];
}

/** Connect to a unix socket path and send fd over it (runc's --console-socket protocol). */
export function unixConnectSendFd(path: string, fd: number): void {
  check(native().unixConnectSendFd(path, fd), 'connect/sendmsg', `send fd ${fd} to console socket ${path}`);
}
