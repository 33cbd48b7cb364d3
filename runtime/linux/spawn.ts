/**
 * Parent side of the container init (native/spawn.c): encodes a SpawnConfig, calls berth_spawn
 * synchronously through koffi (clone happens in C; no JavaScript runs in the child), and drives
 * the sync protocol documented at the top of native/spawn.c:
 *
 *   spawnInit(cfg)          → PendingInit {pid, pidfd}: the child is blocked waiting for GO
 *   (caller: uid/gid maps, cgroup membership, network …)
 *   pending.go()            → child joins namespaces, mounts, …
 *   pending.awaitOutcome()  → 'hooks' (cfg.hookPause; call continueAfterHooks()), 'ready'
 *                             (cfg.execFifo; init blocks on the fifo), or 'exec' (execve done).
 *                             Failures reject with SpawnError(stage, errno, message).
 *
 * The sync socket is read asynchronously through a net.Socket (it is a unix socket, so libuv
 * polls it; no threadpool thread and no main-thread blocking). The pty master travels over a
 * second socket with SCM_RIGHTS; the child sends it before the PTY message, so when the PTY
 * message arrives we call berth_recv_fd synchronously and it returns at once.
 *
 * Reaping: ChildReaper (SIGCHLD + waitpid(WNOHANG) for known pids, holding a timer while any
 * pid is pending so Node stays alive until it has reaped).
 */
import net from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { closeSync, writeFileSync } from 'node:fs';
import { BerthError, ConfigError, SpawnError, SyscallError } from '../errors.js';
import type { WaitResult } from './libc.js';
import { closeFd, native, pidfdSendSignal, recvFd, unixConnectSendFd, waitpidNohang } from './native.js';
import type { NsKind, SpawnConfig } from './spawn-types.js';
import { zygoteBegin } from './zygote.js';

export const CLONE_FLAGS: Record<NsKind, number> = {
  mount: 0x00020000,
  cgroup: 0x02000000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  network: 0x40000000,
  time: 0x00000080,
};

const MAGIC = 0x31545242;
const END_MAGIC = 0x444e4542;

/** Sync message types (native/spawn.h enum berth_sync_type). */
export const SYNC = { GO: 1, HOOKS: 2, CONTINUE: 3, READY: 4, PTY: 5, ERROR: 6 } as const;
const STAGE_LEN = 16;

/** `path[index]`, or path: an error's JSON path, made only when there is an error. */
function at(path: string, index?: number): string {
  return index === undefined ? path : `${path}[${index}]`;
}

class Writer {
  private buf = Buffer.alloc(4096);
  private off = 0;
  private ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.off + n) size *= 2;
    const b = Buffer.alloc(size);
    this.buf.copy(b, 0, 0, this.off);
    this.buf = b;
  }
  u32(v: number, path: string): void {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0xffffffff) throw new ConfigError(path, `must be a 32-bit integer, got ${v}`);
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.off);
    this.off += 4;
  }
  bool(v: boolean): void { this.u32(v ? 1 : 0, ''); }
  u64(v: bigint, path: string): void {
    if (v < 0n || v > 0xffffffffffffffffn) throw new ConfigError(path, `must be an unsigned 64-bit integer, got ${v}`);
    this.u32(Number(v & 0xffffffffn), path);
    this.u32(Number(v >> 32n), path);
  }
  /** Written in place, with no Buffer per string (~80 per config: a third of a cold encode). */
  str(s: string, path: string, index?: number): void {
    if (typeof s !== 'string') throw new ConfigError(at(path, index), 'must be a string');
    if (s.includes('\0')) throw new ConfigError(at(path, index), 'must not contain a NUL byte');
    const n = Buffer.byteLength(s, 'utf8');
    this.u32(n, '');
    const padded = (n + 1 + 3) & ~3; // NUL-terminated, padded to 4: the padding is still zero (alloc'd zeroed, written once)
    this.ensure(padded);
    this.buf.write(s, this.off, n, 'utf8');
    this.off += padded;
  }
  blob(b: Buffer, extra = 0): void {
    this.u32(b.length, '');
    const padded = (b.length + extra + 3) & ~3;
    this.ensure(padded);
    b.copy(this.buf, this.off);
    this.buf.fill(0, this.off + b.length, this.off + padded);
    this.off += padded;
  }
  strs(list: string[], path: string): void {
    this.u32(list.length, path);
    for (let i = 0; i < list.length; i++) this.str(list[i], path, i); // the label is made only for an error
  }
  done(): Buffer { return this.buf.subarray(0, this.off); }
}

/** Encode a SpawnConfig in the binary layout native/spawn.c decodes (documented there). Pure. */
export function encodeSpawnConfig(cfg: SpawnConfig): Buffer {
  const w = new Writer();
  w.u32(MAGIC, '');
  w.u32(cfg.namespaces.length, 'namespaces');
  cfg.namespaces.forEach((ns, i) => {
    const flag = CLONE_FLAGS[ns.kind];
    if (flag === undefined) throw new ConfigError(`namespaces[${i}].kind`, `unknown namespace kind "${String(ns.kind)}"`);
    w.u32(flag, `namespaces[${i}]`);
    w.str(ns.path ?? '', `namespaces[${i}].path`);
  });
  w.str(cfg.rootfs, 'rootfs');
  w.bool(cfg.rootfsReadonly);
  w.u32(cfg.rootfsPropagation, 'rootfsPropagation');
  w.bool(cfg.noPivot);
  w.u32(cfg.mounts.length, 'mounts');
  cfg.mounts.forEach((m, i) => {
    const p = `mounts[${i}]`;
    if (!m.destination.startsWith('/')) throw new ConfigError(`${p}.destination`, `must be an absolute path, got "${m.destination}"`);
    w.str(m.source, `${p}.source`);
    w.str(m.destination, `${p}.destination`);
    w.str(m.fstype, `${p}.fstype`);
    w.u32(m.flags, `${p}.flags`);
    w.u32(m.propagation.length, `${p}.propagation`);
    m.propagation.forEach((f, j) => w.u32(f, `${p}.propagation[${j}]`));
    w.str(m.data, `${p}.data`);
  });
  w.bool(cfg.setupDev);
  w.u32(cfg.devices.length, 'devices');
  cfg.devices.forEach((d, i) => {
    const p = `devices[${i}]`;
    if (!d.path.startsWith('/')) throw new ConfigError(`${p}.path`, `must be an absolute path, got "${d.path}"`);
    if (!['c', 'b', 'p'].includes(d.type)) throw new ConfigError(`${p}.type`, `must be "c", "b" or "p", got "${d.type}"`);
    w.str(d.path, `${p}.path`);
    w.u32(d.type.charCodeAt(0), `${p}.type`);
    w.u32(d.major, `${p}.major`);
    w.u32(d.minor, `${p}.minor`);
    w.u32(d.mode, `${p}.mode`);
    w.u32(d.uid, `${p}.uid`);
    w.u32(d.gid, `${p}.gid`);
  });
  w.strs(cfg.maskedPaths, 'maskedPaths');
  w.strs(cfg.readonlyPaths, 'readonlyPaths');
  w.str(cfg.hostname, 'hostname');
  w.str(cfg.domainname, 'domainname');
  w.u32(cfg.sysctls.length, 'sysctls');
  cfg.sysctls.forEach((s, i) => {
    if (!/^[A-Za-z0-9_.-]+$/.test(s.key) || s.key.includes('..')) throw new ConfigError(`sysctls[${i}].key`, `invalid sysctl name "${s.key}"`);
    w.str(s.key, `sysctls[${i}].key`);
    w.str(s.value, `sysctls[${i}].value`);
  });
  w.u32(cfg.rlimits.length, 'rlimits');
  cfg.rlimits.forEach((r, i) => {
    w.u32(r.resource, `rlimits[${i}].resource`);
    w.u64(r.soft, `rlimits[${i}].soft`);
    w.u64(r.hard, `rlimits[${i}].hard`);
    if (r.soft > r.hard) throw new ConfigError(`rlimits[${i}]`, `soft limit ${r.soft} is above hard limit ${r.hard}`);
  });
  w.bool(cfg.oomScoreAdj !== null);
  if (cfg.oomScoreAdj !== null && (cfg.oomScoreAdj < -1000 || cfg.oomScoreAdj > 1000)) throw new ConfigError('oomScoreAdj', `must be in [-1000, 1000], got ${cfg.oomScoreAdj}`);
  w.u32(cfg.oomScoreAdj ?? 0, 'oomScoreAdj');
  const caps = cfg.capabilities;
  w.bool(caps !== null);
  for (const k of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const) w.u64(caps ? caps[k] : 0n, `capabilities.${k}`);
  w.bool(cfg.noNewPrivileges);
  w.bool(cfg.seccomp !== null);
  w.u32(cfg.seccomp?.flags ?? 0, 'seccomp.flags');
  if (cfg.seccomp && (cfg.seccomp.program.length === 0 || cfg.seccomp.program.length % 8 !== 0)) {
    throw new ConfigError('seccomp.program', `must be a non-empty array of 8-byte sock_filter entries, got ${cfg.seccomp.program.length} bytes`);
  }
  w.blob(cfg.seccomp?.program ?? Buffer.alloc(0));
  w.u32(cfg.uid, 'uid');
  w.u32(cfg.gid, 'gid');
  w.u32(cfg.additionalGids.length, 'additionalGids');
  cfg.additionalGids.forEach((g, i) => w.u32(g, `additionalGids[${i}]`));
  w.bool(cfg.umask !== null);
  w.u32(cfg.umask ?? 0, 'umask');
  w.str(cfg.cwd, 'cwd');
  if (cfg.args.length === 0) throw new ConfigError('args', 'must name the program to run');
  w.strs(cfg.args, 'args');
  w.strs(cfg.env, 'env');
  w.bool(cfg.terminal);
  cfg.stdio.forEach((fd, i) => w.u32(fd, `stdio[${i}]`));
  w.u32(cfg.extraFds.length, 'extraFds');
  cfg.extraFds.forEach((fd, i) => w.u32(fd, `extraFds[${i}]`));
  w.str(cfg.execFifo, 'execFifo');
  w.bool(cfg.cloneParent);
  w.u32(cfg.parentDeathSignal, 'parentDeathSignal');
  w.bool(cfg.hookPause);
  w.bool(cfg.createExecFifo ?? false);
  w.u32(END_MAGIC, '');
  return w.done();
}

// ---------------------------------------------------------------------------------------------
// Reaping

export interface ExitStatus { code: number | null; signal: number | null }

interface Waiter { promise: Promise<ExitStatus>; resolve: (s: ExitStatus) => void; reject: (e: unknown) => void }

/**
 * Reaps known child pids with SIGCHLD + waitpid(pid, WNOHANG); never blocks a thread. While any
 * pid is pending it holds a ref'd interval (also a fallback poll), so Node cannot exit before
 * reaping. wait(pid) is idempotent and may be called after the pid was reaped (the status is
 * kept until forget(pid)).
 */
export class ChildReaper {
  private readonly pending = new Map<number, Waiter>();
  private readonly done = new Map<number, ExitStatus>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly onSigchld = (): void => this.poll();
  constructor(private readonly fallbackMs = 250) {}

  /** Resolve when pid (a child of this process) exits. Rejects with SyscallError(ECHILD) for a non-child. */
  wait(pid: number): Promise<ExitStatus> {
    const finished = this.done.get(pid);
    if (finished) return Promise.resolve(finished);
    const existing = this.pending.get(pid);
    if (existing) return existing.promise;
    let resolve!: (s: ExitStatus) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<ExitStatus>((res, rej) => { resolve = res; reject = rej; });
    this.pending.set(pid, { promise, resolve, reject });
    if (!this.timer) {
      process.on('SIGCHLD', this.onSigchld);
      this.timer = setInterval(() => this.poll(), this.fallbackMs);
    }
    this.poll();
    return promise;
  }

  /** Start reaping pid now (keeps Node alive until it exits); collect the status later with wait(). */
  watch(pid: number): void {
    this.wait(pid).catch(() => undefined);
  }

  /** Stop tracking pid and drop its recorded status (pending waiters are left unresolved). */
  forget(pid: number): void {
    this.pending.delete(pid);
    this.done.delete(pid);
    this.poll();
  }

  /** Pids still being waited for. */
  get size(): number { return this.pending.size; }

  /** Check every pending pid once (called on SIGCHLD and by the fallback timer). */
  poll(): void {
    for (const [pid, w] of this.pending) {
      let r: WaitResult | null;
      try {
        r = waitpidNohang(pid);
      } catch (e) {
        this.pending.delete(pid);
        w.reject(e);
        continue;
      }
      if (r) {
        const st = { code: r.code, signal: r.signal };
        this.pending.delete(pid);
        this.done.set(pid, st);
        w.resolve(st);
      }
    }
    if (this.pending.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      process.removeListener('SIGCHLD', this.onSigchld);
    }
  }
}

/** The process-wide reaper spawn.ts uses to reap failed inits. */
export const childReaper = new ChildReaper();
/** Alias of childReaper. */
export const reaper = childReaper;

/** Connect to a unix socket and send fd with SCM_RIGHTS (runc's --console-socket). */
export function sendFdToSocket(path: string, fd: number): void {
  unixConnectSendFd(path, fd);
}

// ---------------------------------------------------------------------------------------------
// Spawning

export type OutcomeKind = 'hooks' | 'ready' | 'exec';
export interface InitOutcome { kind: OutcomeKind; ptyMaster: number }

type SyncEvent = { kind: 'msg'; type: number; payload: Buffer } | { kind: 'eof' } | { kind: 'error'; err: Error };

/**
 * A cloned container init waiting on the sync protocol. pid and pidfd (and ptyMaster once
 * received) belong to the caller; the sync sockets are closed by this object once the outcome
 * is final (exec or error) or on abort()/close().
 */
export class PendingInit {
  readonly pid: number;
  readonly pidfd: number;
  /** pty master (cfg.terminal) once the PTY message arrived, else -1. Owned by the caller. */
  ptyMaster = -1;
  private syncFd: number;
  private fdSock: number;
  private sock: net.Socket | null = null;
  private inbuf: Buffer = Buffer.alloc(0);
  private readonly events: SyncEvent[] = [];
  private wake: (() => void) | null = null;
  private finished: InitOutcome | null = null;
  private readonly reapable: boolean;

  constructor(pid: number, pidfd: number, syncFd: number, fdSock: number, reapable: boolean) {
    this.pid = pid;
    this.pidfd = pidfd;
    this.syncFd = syncFd;
    this.fdSock = fdSock;
    this.reapable = reapable;
  }

  /** Release the child: parent-side setup is done. */
  go(): void { this.send(SYNC.GO, 'GO'); }

  /** After a 'hooks' outcome: the hooks ran, let the child pivot_root and go on. */
  continueAfterHooks(): void { this.send(SYNC.CONTINUE, 'CONTINUE'); }

  private send(type: number, name: string): void {
    if (this.syncFd < 0) throw new BerthError('ESPAWNSTATE', `cannot send ${name}: the sync socket is closed`);
    const rc = native().syncSend(this.syncFd, type);
    if (rc < 0) throw new SpawnError('sync', -rc, `send ${name} to container init pid ${this.pid} (did it exit?)`);
  }

  /**
   * The next outcome: 'hooks', then 'ready' (exec fifo), then 'exec' (EOF: execve succeeded;
   * repeated calls keep returning it). Rejects with SpawnError when the child reports a failure;
   * by then the child is reaped (unless cloneParent) and every fd of this init is closed.
   */
  async awaitOutcome(): Promise<InitOutcome> {
    if (this.finished) return this.finished;
    this.startReader();
    this.sock?.ref();
    try {
      return await this.nextOutcome();
    } finally {
      // Between outcomes nobody is waiting: don't let the open sync socket keep Node alive.
      this.sock?.unref();
    }
  }

  private async nextOutcome(): Promise<InitOutcome> {
    for (;;) {
      const ev = this.events.shift();
      if (!ev) {
        await new Promise<void>((res) => { this.wake = res; });
        continue;
      }
      if (ev.kind === 'eof') {
        this.closeSync();
        this.finished = { kind: 'exec', ptyMaster: this.ptyMaster };
        return this.finished;
      }
      if (ev.kind === 'error') {
        const errno = Math.abs((ev.err as NodeJS.ErrnoException).errno ?? 0);
        await this.fail(new SpawnError('sync', errno, `read sync socket of pid ${this.pid}: ${ev.err.message}`));
      }
      if (ev.kind !== 'msg') continue;
      switch (ev.type) {
        case SYNC.PTY:
          // The child sent the fd before this message: recvmsg returns at once.
          try {
            this.ptyMaster = recvFd(this.fdSock);
          } catch (e) {
            await this.fail(e instanceof SyscallError ? new SpawnError('terminal', e.errno, 'receive pty master from container init') : e);
          }
          continue;
        case SYNC.HOOKS:
          return { kind: 'hooks', ptyMaster: this.ptyMaster };
        case SYNC.READY:
          return { kind: 'ready', ptyMaster: this.ptyMaster };
        case SYNC.ERROR: {
          const errno = ev.payload.readInt32LE(0);
          const stage = ev.payload.subarray(4, 4 + STAGE_LEN).toString('utf8').replace(/\0.*$/s, '');
          const message = ev.payload.subarray(4 + STAGE_LEN).toString('utf8');
          await this.fail(new SpawnError(stage, errno, message));
          break;
        }
        default:
          await this.fail(new SpawnError('sync', 71, `unexpected sync message type ${ev.type} from pid ${this.pid}`));
      }
    }
  }

  /** Kill the child (SIGKILL via pidfd), reap it and close every fd. For errors between clone and GO. */
  async abort(): Promise<void> {
    try { pidfdSendSignal(this.pidfd, 9); } catch { /* already gone */ }
    this.closeSync();
    if (this.reapable) await childReaper.wait(this.pid).catch(() => undefined);
    closeFd(this.pidfd);
    if (this.ptyMaster >= 0) { closeFd(this.ptyMaster); this.ptyMaster = -1; }
  }

  /** Close the sync sockets (e.g. after 'ready' when nobody will wait for exec). pid/pidfd stay. */
  close(): void { this.closeSync(); }

  private async fail(err: unknown): Promise<never> {
    await this.abort();
    throw err;
  }

  private startReader(): void {
    if (this.sock || this.syncFd < 0) return;
    const s = new net.Socket({ fd: this.syncFd, readable: true, writable: false, allowHalfOpen: true });
    this.sock = s;
    const push = (ev: SyncEvent): void => {
      this.events.push(ev);
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    s.on('data', (chunk: Buffer) => {
      this.inbuf = this.inbuf.length ? Buffer.concat([this.inbuf, chunk]) : chunk;
      while (this.inbuf.length >= 8) {
        const type = this.inbuf.readUInt32LE(0), len = this.inbuf.readUInt32LE(4);
        if (this.inbuf.length < 8 + len) break;
        push({ kind: 'msg', type, payload: this.inbuf.subarray(8, 8 + len) });
        this.inbuf = this.inbuf.subarray(8 + len);
      }
    });
    s.on('end', () => {
      // EOF: execve succeeded (or the child died). Release the handle right away so a caller
      // that stopped listening (e.g. after 'ready') does not keep Node alive.
      s.destroy();
      push({ kind: 'eof' });
    });
    s.on('error', (err) => push({ kind: 'error', err }));
  }

  private closeSync(): void {
    if (this.sock) {
      this.sock.destroy();
      this.sock = null;
    } else if (this.syncFd >= 0) {
      try { closeSync(this.syncFd); } catch { /* already closed */ }
    }
    this.syncFd = -1;
    if (this.fdSock >= 0) closeFd(this.fdSock);
    this.fdSock = -1;
  }
}

export interface SpawnOptions {
  /**
   * Clone through the spawn zygote (runtime/linux/zygote.ts) when it can be used: cheaper for a
   * long-lived Node process, a waste for one that spawns once. Ignored for cfg.cloneParent.
   */
  zygote?: boolean;
}

/**
 * Clone the container init (synchronous: the C side returns as soon as clone() does). The child
 * waits for go(). Throws SpawnError('spawn', errno, message) when nothing could be started.
 */
export function spawnInit(cfg: SpawnConfig, opts: SpawnOptions = {}): PendingInit {
  return beginSpawnInit(cfg, opts)();
}

/**
 * spawnInit in two halves: the request goes to the zygote now and the returned function waits for
 * its answer, so the caller can do synchronous work (no await) while the zygote clones. Without
 * the zygote the clone happens in the returned function. The function must be called exactly
 * once, also when the work in between failed (then abort() the PendingInit it returns).
 */
export function beginSpawnInit(cfg: SpawnConfig, opts: SpawnOptions = {}): () => PendingInit {
  if (opts.zygote && !cfg.cloneParent) {
    // The zygote's working directory need not be ours: make the host paths absolute.
    const abs = (p: string) => (p ? resolvePath(p) : p);
    const zcfg: SpawnConfig = { ...cfg, execFifo: abs(cfg.execFifo), namespaces: cfg.namespaces.map((n) => (n.path ? { ...n, path: abs(n.path) } : n)) };
    const fds = [...zcfg.stdio, ...zcfg.extraFds].filter((fd) => fd >= 0);
    const req = zygoteBegin(encodeSpawnConfig(zcfg), fds);
    if (req) {
      return () => {
        const z = req.finish();
        return z ? new PendingInit(z.pid, z.pidfd, z.syncFd, z.fdSock, true) : spawnDirect(cfg);
      };
    }
  }
  return () => spawnDirect(cfg);
}

function spawnDirect(cfg: SpawnConfig): PendingInit {
  const buf = encodeSpawnConfig(cfg);
  const out = new Int32Array(4);
  const err = Buffer.alloc(1024);
  const rc = native().spawn(buf, buf.length, out, err, err.length);
  if (rc < 0) {
    const msg = err.subarray(0, Math.max(0, err.indexOf(0))).toString('utf8');
    throw new SpawnError('spawn', -rc, msg || 'berth_spawn failed');
  }
  return new PendingInit(out[0], out[1], out[2], out[3], !cfg.cloneParent);
}

export interface SpawnHooks {
  /** Parent-side setup between clone and GO (uid/gid maps, cgroup, network). A throw aborts the child. */
  beforeGo?: (init: PendingInit) => void | Promise<void>;
  /** Runs at the 'hooks' pause (cfg.hookPause). A throw aborts the child. */
  onHooks?: (init: PendingInit) => void | Promise<void>;
}

/**
 * spawnInit + beforeGo + go + hooks, resolving when the init has exec'd (or reported READY with
 * an exec fifo). pid/pidfd/ptyMaster belong to the caller; reap pid with childReaper.wait().
 */
export async function spawnAndWaitExec(cfg: SpawnConfig, hooks: SpawnHooks = {}): Promise<{ pid: number; pidfd: number; ptyMaster: number; outcome: OutcomeKind; init: PendingInit }> {
  const init = spawnInit(cfg);
  try {
    await hooks.beforeGo?.(init);
    init.go();
  } catch (e) {
    await init.abort();
    throw e;
  }
  let o = await init.awaitOutcome();
  while (o.kind === 'hooks') {
    try {
      await hooks.onHooks?.(init);
      init.continueAfterHooks();
    } catch (e) {
      await init.abort();
      throw e;
    }
    o = await init.awaitOutcome();
  }
  return { pid: init.pid, pidfd: init.pidfd, ptyMaster: o.ptyMaster, outcome: o.kind, init };
}

/** Write /proc/<pid>/{setgroups,uid_map,gid_map} for a new user namespace (before go()). */
export function writeIdMaps(pid: number, uidMap: { containerId: number; hostId: number; size: number }[], gidMap: { containerId: number; hostId: number; size: number }[], denySetgroups: boolean): void {
  const line = (m: { containerId: number; hostId: number; size: number }): string => `${m.containerId} ${m.hostId} ${m.size}\n`;
  try {
    if (denySetgroups) writeFileSync(`/proc/${pid}/setgroups`, 'deny');
    writeFileSync(`/proc/${pid}/uid_map`, uidMap.map(line).join(''));
    writeFileSync(`/proc/${pid}/gid_map`, gidMap.map(line).join(''));
  } catch (e) {
    const ne = e as NodeJS.ErrnoException;
    throw new SyscallError('write', -(ne.errno ?? 0) || 22, `write uid/gid maps of pid ${pid}: ${ne.message}`);
  }
}
