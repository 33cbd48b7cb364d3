/**
 * Bindings to the C core: native/build/berth.node (native/napi.c, a Node-API addon over spawn.c
 * and the libc calls of the container lifecycle's hot path; it loads in well under 1 ms where
 * koffi costs a CLI invocation ~5 ms) or, when the addon is not built (or BERTH_NO_ADDON=1),
 * koffi over native/build/libberth.so and runtime/linux/libc.ts. Both are found relative to this
 * module so it works from the source tree under tsx (runtime/linux/*.ts → ../../native/build),
 * the compiled tree (dist/runtime/linux/*.js → ../../../native/build) and the berth-oci bundle
 * (dist/berth-oci.mjs → ../native/build). Loaded lazily on first use.
 */
import koffi from 'koffi';
import { existsSync } from 'node:fs';
import { BerthError, SyscallError } from '../errors.js';
import * as L from './libc.js';
import { addon, candidates, type Addon } from './addon.js';

export interface NativeLib {
  /** int berth_spawn(cfg, cfglen, out[4] = pid, pidfd, syncfd, fdsock, err, errlen) */
  spawn: (cfg: Buffer, len: number, out: Int32Array, err: Buffer, errlen: number) => number;
  syncSend: (fd: number, type: number) => number;
  sendFd: (sock: number, fd: number) => number;
  recvFd: (sock: number) => number;
  socketpair: (out: Int32Array) => number;
  unixConnectSendFd: (path: string, fd: number) => number;
}

/** The zygote calls of the addon (protocol in native/spawn.h), or null without the addon. */
export function zygoteBindings(): Pick<Addon, 'zygoteSocketpair' | 'zygoteSpawn' | 'zygoteSend' | 'zygoteRecv'> | null {
  return addon();
}

/** native/build/berth-zygote, or null when it is not built. */
export function zygoteBinary(): string | null {
  return candidates('berth-zygote').find((p) => existsSync(p)) ?? null;
}

let cached: NativeLib | null = null;

/** Candidate locations of libberth.so, most specific first. */
export function libberthCandidates(): string[] {
  const list = candidates('libberth.so');
  if (process.env.BERTH_LIBBERTH) list.unshift(process.env.BERTH_LIBBERTH);
  return list;
}

/** Which binding serves the calls: 'addon' (berth.node) or 'koffi'. */
export function nativeBackend(): 'addon' | 'koffi' {
  return addon() ? 'addon' : 'koffi';
}

export function native(): NativeLib {
  if (cached) return cached;
  const a = addon();
  if (a) {
    cached = {
      spawn: (cfg, _len, out, err) => a.spawn(cfg, out, err),
      syncSend: a.syncSend, sendFd: a.sendFd, recvFd: a.recvFd, socketpair: a.socketpair, unixConnectSendFd: a.unixConnectSendFd,
    };
    return cached;
  }
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

// libc calls of the lifecycle's hot path: the addon when built, else runtime/linux/libc.ts (koffi).


/** close(2), ignoring errors; negative fds are skipped. */
export function closeFd(fd: number): void {
  if (fd < 0) return;
  const a = addon();
  if (a) a.close(fd);
  else L.closeFd(fd);
}

export function pidfdOpen(pid: number): number {
  const a = addon();
  if (!a) return L.pidfdOpen(pid);
  return check(a.pidfdOpen(pid), 'pidfd_open', `open pidfd for ${pid}`);
}

/** Signal through a pidfd; returns false when the process is already gone (ESRCH). */
export function pidfdSendSignal(pidfd: number, signal: number): boolean {
  const a = addon();
  if (!a) return L.pidfdSendSignal(pidfd, signal);
  const rc = a.pidfdSendSignal(pidfd, signal);
  if (rc === 0) return true;
  if (rc === -3) return false;
  throw new SyscallError('pidfd_send_signal', -rc, `send signal ${signal}`);
}

/**
 * Start `path` with `args` (argv[0] included) in a new session, its signals at their defaults
 * and unblocked, its fd i being fds[i] (-1: /dev/null; each source fd >= fds.length), through
 * posix_spawn: no fork of Node's address space (child_process.spawn copies its page tables:
 * 2-4 ms for a CLI with a warm heap). Returns the pid; the caller reaps it (waitpidNohang).
 * null when berth.node is not built or predates this call: use child_process then.
 */
export function spawnDetached(path: string, args: string[], fds: number[]): number | null {
  const f = addon()?.spawnDetached;
  if (!f) return null;
  if (args.some((x) => x.includes('\0'))) throw new BerthError('EINVAL', `an argument for ${path} contains a NUL byte`);
  const rc = f(path, Buffer.from(`${args.join('\0')}\0`), Int32Array.from(fds));
  if (rc < 0) throw new SyscallError('posix_spawn', -rc, `run ${path}`);
  return rc;
}

/** Non-blocking waitpid for one known pid. Returns null while it is still running. */
export function waitpidNohang(pid: number): L.WaitResult | null {
  const a = addon();
  if (!a) return L.waitpidNohang(pid);
  const st = new Int32Array(1);
  const rc = a.waitpid(pid, st);
  if (rc === 0) return null;
  if (rc < 0) throw new SyscallError('waitpid', -rc, `wait for pid ${pid}`);
  const s = st[0];
  if ((s & 0x7f) === 0) return { pid: rc, code: (s >> 8) & 0xff, signal: null, coreDumped: false };
  return { pid: rc, code: null, signal: s & 0x7f, coreDumped: (s & 0x80) !== 0 };
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
