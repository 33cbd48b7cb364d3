/**
 * The spawn zygote (native/zygote.c, protocol in native/spawn.h): a small process started once
 * per Node process that clones container inits on our behalf. clone() copies the caller's page
 * tables; from Node (~90 MB mapped) that costs ~0.6 ms per container plus copy-on-write faults in
 * Node afterwards, from the zygote a few microseconds. The zygote clones with CLONE_PARENT, so
 * each init is still our child (waitpid, SIGCHLD, pidfd) exactly as with a direct spawn.
 *
 * Used only by spawnInit({zygote: true}) for inits that are not CLONE_PARENT'ed to our own parent.
 * Whenever the zygote cannot be used (no berth.node or berth-zygote built, BERTH_NO_ZYGOTE=1,
 * too many fds, the zygote died) zygoteSpawn returns null and the caller clones directly.
 * The zygote dies with us (PDEATHSIG, and EOF on its socket); it never keeps Node alive. Once an
 * init asked for a new network namespace, the zygote keeps a spare one (native/spawn.c).
 */
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { SpawnError } from '../errors.js';
import { closeFd, zygoteBinary, zygoteBindings } from './native.js';

const MAX_FDS = 250;

interface Running { sock: number; child: ChildProcess }
let running: Running | null = null;
let unavailable = false;

function stop(z: Running): void {
  if (running === z) running = null;
  closeFd(z.sock);
  z.sock = -1;
  try { z.child.kill('SIGKILL'); } catch { /* gone */ }
}

function start(): Running | null {
  const b = zygoteBindings();
  const bin = zygoteBinary();
  if (!b || !bin || process.env.BERTH_NO_ZYGOTE === '1') {
    unavailable = true;
    return null;
  }
  const sv = new Int32Array(2);
  if (b.zygoteSocketpair(sv) < 0) return null;
  let child: ChildProcess;
  try {
    // node:child_process is required here, not imported: processes that never start a zygote
    // (berth-oci) do not pay for loading it.
    const { spawn } = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
    // --spare-netns: we spawn many inits, so the zygote keeps a new network namespace ready
    // for the next one (creating it inside clone() costs ~0.3 ms of each create).
    child = spawn(bin, ['--spare-netns'], { stdio: ['ignore', 'ignore', 'inherit', sv[1]] });
  } catch {
    closeFd(sv[0]);
    closeFd(sv[1]);
    unavailable = true;
    return null;
  }
  closeFd(sv[1]); // the zygote has its own copy as fd 3
  const z: Running = { sock: sv[0], child };
  child.on('error', () => stop(z));
  child.on('exit', () => stop(z));
  child.unref();
  running = z;
  return z;
}

export interface ZygoteSpawned { pid: number; pidfd: number; syncFd: number; fdSock: number }

/** A request sent to the zygote whose answer has not been read yet (zygoteBegin). */
export interface ZygoteRequest {
  /**
   * Read the zygote's answer (blocking until it has cloned). null: the zygote could not be used
   * (spawn directly then); throws SpawnError('spawn', …) when the zygote reports that the spawn
   * itself failed. Must be called exactly once.
   */
  finish(): ZygoteSpawned | null;
}

/** True while a request is in flight: one exchange at a time on the socket. */
let inFlight = false;

function decodeReply(z: Running, rc: number, out: Int32Array, err: Buffer): ZygoteSpawned | null {
  if (out[4] === 1) {
    stop(z); // unreachable or confused: retire it; the next spawn starts a new one
    return null;
  }
  if (rc < 0) {
    const msg = err.subarray(0, Math.max(0, err.indexOf(0))).toString('utf8');
    throw new SpawnError('spawn', -rc, msg || 'berth_spawn failed');
  }
  return { pid: out[0], pidfd: out[1], syncFd: out[2], fdSock: out[3] };
}

/**
 * Send a spawn request to the zygote and return at once, so the caller can do other work (create
 * the cgroup, write state) while the zygote clones; finish() reads the answer. null when the
 * zygote is not usable (or a request is already in flight): spawn directly then. The caller must
 * not spawn through the zygote again before finish().
 */
export function zygoteBegin(cfg: Buffer, fds: number[]): ZygoteRequest | null {
  if (unavailable || inFlight || fds.length > MAX_FDS) return null;
  const z = running ?? start();
  const b = zygoteBindings();
  if (!z || !b) return null;
  if (!b.zygoteSend || !b.zygoteRecv) {
    // An addon built before the split: one blocking exchange now.
    const out = new Int32Array(5);
    const err = Buffer.alloc(1024);
    const got = decodeReply(z, b.zygoteSpawn(z.sock, cfg, Int32Array.from(fds), out, err), out, err);
    return { finish: () => got };
  }
  const { zygoteRecv } = b;
  if (b.zygoteSend(z.sock, cfg, Int32Array.from(fds)) < 0) {
    stop(z);
    return null;
  }
  inFlight = true;
  let done = false;
  return {
    finish: () => {
      if (done) throw new SpawnError('spawn', 22, 'zygote request finished twice');
      done = true;
      inFlight = false;
      const out = new Int32Array(5);
      const err = Buffer.alloc(1024);
      return decodeReply(z, zygoteRecv(z.sock, out, err), out, err);
    },
  };
}

/**
 * Clone an init from the encoded config through the zygote. fds are the config's stdio and extra
 * fds that are >= 0, in order. Returns null when the zygote is not usable (spawn directly then);
 * throws SpawnError('spawn', …) when the zygote reports that the spawn itself failed.
 */
export function zygoteSpawn(cfg: Buffer, fds: number[]): ZygoteSpawned | null {
  return zygoteBegin(cfg, fds)?.finish() ?? null;
}

/** Stop the zygote now (tests; it also goes away with this process). */
export function stopZygote(): void {
  if (running) stop(running);
}
