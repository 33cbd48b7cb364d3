/**
 * The TypeScript side of native/monitor.c (the per-container monitor, conmon's role): start a
 * monitor detached so the container outlives this process, talk to its control socket, attach
 * to its output, and read the exit record it leaves behind. The wire protocol is the table at
 * the top of native/monitor.c.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, readFileSync, writeSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, ConfigError } from '../errors.js';
import { recvFd, sendFd, socketpair, spawnDetached, waitpidNohang, zygoteBinary } from '../linux/native.js';

/** What the monitor hands the engine for an in-process create (MonitorOptions.handoff). */
export interface Handoff {
  /** The monitor's spawn zygote: inits cloned through it are the monitor's children. */
  zygoteSocket: number;
  /** The init's stdin/stdout/stderr (the monitor's pipe ends); null with a terminal. */
  stdio: [number, number, number] | null;
}

/** The monitor failed to start the container; message carries the runtime's own error text. */
export class MonitorError extends BerthError {
  readonly stage: string;
  constructor(stage: string, message: string) {
    super('EMONITOR', message);
    this.stage = stage;
  }
}

export type RestartPolicy = 'no' | 'always' | 'on-failure' | `on-failure:${number}`;

export interface MonitorOptions {
  /** OCI runtime binary (runc, crun, berth-oci). */
  runtime: string;
  /** Global runtime arguments placed before the verb, e.g. ['--root', '/run/berth/runc']. */
  runtimeArgs?: string[];
  id: string;
  /** Absolute bundle directory holding config.json. */
  bundle: string;
  /** Where the monitor writes the exit record (JSON, atomically). */
  exitFile: string;
  pidFile?: string;
  /** CRI-format log file; omitted = no log. */
  logFile?: string;
  /** Rotate the log to <log>.1 when it would exceed this many bytes (0 = never). */
  logMaxBytes?: number;
  /** Control socket path (needed for start-later, status, norestart). */
  ctlSocket?: string;
  /** Attach socket path (live output, stdin, resize). */
  attachSocket?: string;
  /** Where the monitor listens for the pty master (terminal mode); default under /tmp. */
  consoleSocket?: string;
  /** config.json's process.terminal must match. */
  terminal?: boolean;
  /** Keep stdin open for attach clients (docker -i). */
  stdin?: boolean;
  /** Run `<runtime> start` right after create; false = wait for startContainer(). */
  start?: boolean;
  /** Do not `<runtime> delete` the container after it exits for good (restarts still delete first). */
  keep?: boolean;
  /**
   * The caller starts the container itself (Runtime.start, in-process) right after
   * startContainer() returns; the monitor only records the start. Restarts still run `<runtime> start`.
   */
  externalStart?: boolean;
  restart?: RestartPolicy;
  /** Path of berth-monitor; default native/build/berth-monitor (or $BERTH_MONITOR). */
  monitorPath?: string;
  /**
   * Create the init in-process instead of `<runtime> create`: called with the monitor's zygote
   * socket and stdio ends (closed afterwards); returns the init's pid and, with a terminal, its
   * pty master (handed to the monitor, then closed here). A throw fails the start with that error.
   */
  handoff?: (h: Handoff) => Promise<{ pid: number; ptyMaster: number }>;
  /**
   * With handoff: take the monitor's handoff only once this settles, so the caller can go on
   * preparing while the monitor and its zygote start (it may resolve after startMonitor returned).
   * A rejection fails the start with that error (the monitor gives up and exits).
   */
  handoffWhen?: Promise<unknown>;
  /** How long to wait for created/started before giving up (default 30 s). */
  timeoutMs?: number;
}

export interface MonitorHandle {
  monitorPid: number;
  initPid: number;
  /** true when the container was started (opts.start), false when it waits in "created". */
  started: boolean;
}

export interface ExitRecord {
  id: string;
  pid: number;
  exitCode: number | null;
  signal: number | null;
  oomKilled: boolean;
  startedAt: string | null;
  finishedAt: string;
  restarts: number;
  restarting: boolean;
  error: string | null;
}

export interface MonitorStatus {
  state: 'created' | 'running' | 'restarting' | 'stopped';
  pid: number;
  restarts: number;
}

const RESTART_RE = /^(no|always|on-failure(:\d+)?)$/;

/** Locate the berth-monitor binary. */
export function monitorBinary(): string {
  const env = process.env.BERTH_MONITOR;
  if (env) return env;
  const here = import.meta.dirname ?? dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../../native/build/berth-monitor', '../../../native/build/berth-monitor']) {
    const p = join(here, rel);
    if (existsSync(p)) return p;
  }
  throw new BerthError('ENOMONITOR', 'berth-monitor is not built: run `make -C native` (or set BERTH_MONITOR)');
}

function monitorArgs(o: MonitorOptions): string[] {
  for (const [name, p] of [['bundle', o.bundle], ['exitFile', o.exitFile], ['logFile', o.logFile], ['ctlSocket', o.ctlSocket], ['attachSocket', o.attachSocket], ['pidFile', o.pidFile], ['consoleSocket', o.consoleSocket]] as const) {
    if (p !== undefined && !isAbsolute(p)) throw new ConfigError(name, `must be an absolute path, got "${p}"`);
  }
  if (!o.id || /[\s/]/.test(o.id)) throw new ConfigError('id', `invalid container id "${o.id}"`);
  if (o.restart !== undefined && !RESTART_RE.test(o.restart)) throw new ConfigError('restart', `"${o.restart}": want no, on-failure[:N] or always`);
  if (o.logMaxBytes !== undefined && (!Number.isInteger(o.logMaxBytes) || o.logMaxBytes < 0)) throw new ConfigError('logMaxBytes', `want a byte count, got ${o.logMaxBytes}`);
  const a = ['--runtime', o.runtime, '--id', o.id, '--bundle', o.bundle, '--exit-file', o.exitFile, '--sync-fd', '3'];
  for (const r of o.runtimeArgs ?? []) a.push(`--runtime-arg=${r}`);
  if (o.pidFile) a.push('--pid-file', o.pidFile);
  if (o.logFile) a.push('--log', o.logFile);
  if (o.logMaxBytes) a.push('--log-max', String(o.logMaxBytes));
  if (o.ctlSocket) a.push('--ctl', o.ctlSocket);
  if (o.attachSocket) a.push('--attach', o.attachSocket);
  if (o.consoleSocket) a.push('--console-socket', o.consoleSocket);
  if (o.terminal) a.push('--terminal');
  if (o.stdin) a.push('--stdin');
  if (o.start) a.push('--start');
  if (o.keep) a.push('--keep');
  if (o.externalStart) {
    if (o.start) throw new ConfigError('externalStart', 'excludes start: the monitor would start the container itself');
    a.push('--external-start');
  }
  if (o.restart) a.push('--restart', o.restart);
  return a;
}

interface SyncEvent { event: 'created' | 'started' | 'error'; pid?: number; stage?: string; message?: string }

/** A started monitor process: its pid and the engine's end of its sync fd (fd 3). */
interface Launched {
  pid: number;
  sync: Socket;
  unref(): void;
  onError(f: (e: Error) => void): void;
  /** Its exit code or signal once it has exited (reaping it), else 'unknown'. */
  exitStatus(): string;
}

/**
 * Start the monitor binary in its own session with stdio on /dev/null, the sync socket as fd 3
 * and `extra` (when >= 0) as fd 4: through berth.node's posix_spawn when built (no copy of
 * Node's page tables: 2-4 ms less per start), else child_process.spawn.
 */
function launch(bin: string, args: string[], extra: number): Launched {
  const [ours, theirs] = socketpair();
  let pid: number | null = null;
  try {
    const fds = [-1, -1, -1, theirs, ...(extra >= 0 ? [extra] : [])];
    // posix_spawn dup2s in order: a source fd below fds.length would be overwritten first
    if (fds.every((fd) => fd < 0 || fd >= fds.length)) pid = spawnDetached(bin, [bin, ...args], fds);
  } catch (e) {
    closeSync(ours);
    throw new MonitorError('spawn', `cannot run ${bin}: ${(e as Error).message}`);
  } finally {
    closeSync(theirs);
  }
  if (pid !== null) {
    const p = pid;
    return {
      pid: p,
      sync: new Socket({ fd: ours, readable: true, writable: false }),
      unref: () => {},
      onError: () => {},
      exitStatus: () => {
        try {
          const w = waitpidNohang(p);
          return w ? String(w.code ?? w.signal) : 'unknown';
        } catch { return 'unknown'; }
      },
    };
  }
  closeSync(ours);
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'pipe', ...(extra >= 0 ? [extra] : [])] });
  return {
    pid: child.pid ?? 0,
    sync: child.stdio[3] as Socket,
    unref: () => child.unref(),
    onError: (f) => child.on('error', f),
    exitStatus: () => String(child.exitCode ?? child.signalCode ?? 'unknown'),
  };
}

/**
 * Spawn a detached monitor (own session, stdio /dev/null) and wait until the container is
 * created (or started, with opts.start). Rejects with MonitorError carrying the runtime's error.
 */
export async function startMonitor(opts: MonitorOptions): Promise<MonitorHandle> {
  const args = monitorArgs(opts);
  const bin = opts.monitorPath ?? monitorBinary();
  let ours = -1, theirs = -1;
  if (opts.handoff) {
    const zygote = zygoteBinary();
    if (!zygote) throw new BerthError('ENOZYGOTE', 'native/build/berth-zygote is not built: run `make -C native`');
    [ours, theirs] = socketpair();
    args.push('--handoff-fd', '4', '--zygote', zygote);
  }
  let handoffError: Error | null = null;
  return await new Promise<MonitorHandle>((resolve, reject) => {
    let child: Launched;
    try {
      child = launch(bin, args, theirs);
    } finally {
      if (theirs >= 0) closeSync(theirs);
    }
    const sync = child.sync;
    let buf = '';
    let initPid = 0;
    let settled = false;
    const finish = (err: Error | null, started = false): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sync.destroy();
      child.unref();
      if (err) reject(handoffError ?? err);
      else resolve({ monitorPid: child.pid, initPid, started });
    };
    const timer = setTimeout(() => {
      finish(new MonitorError('timeout', `monitor for ${opts.id} did not report within ${opts.timeoutMs ?? 30000} ms`));
    }, opts.timeoutMs ?? 30000);
    child.onError((e) => finish(new MonitorError('spawn', `cannot run ${bin}: ${e.message}`)));
    sync.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let ev: SyncEvent;
        try { ev = JSON.parse(line) as SyncEvent; } catch { continue; }
        if (ev.event === 'error') finish(new MonitorError(ev.stage ?? 'unknown', `container ${opts.id}: ${ev.message ?? 'unknown error'}`));
        else if (ev.event === 'created') { initPid = ev.pid ?? 0; if (!opts.start) finish(null, false); }
        else if (ev.event === 'started') { initPid = ev.pid ?? initPid; finish(null, true); }
      }
    });
    sync.on('error', () => { /* reported through close/exit */ });
    if (opts.handoff && child.pid > 0) void runHandoff(ours, !!opts.terminal, opts.handoff, opts.handoffWhen).catch((e: Error) => { handoffError = e; });
    else if (ours >= 0) closeSync(ours);
    sync.on('close', () => {
      // Give 'exit' a moment so a failing monitor's status is known. Not once settled: that
      // timer alone kept every `berth run` alive 50 ms after its work was done.
      if (settled) return;
      setTimeout(() => finish(new MonitorError('monitor', `monitor for ${opts.id} exited before reporting (exit ${child.exitStatus()})`)), 50);
    });
  });
}

/** The engine's half of --handoff-fd (protocol in native/monitor.c); always closes sock. */
async function runHandoff(sock: number, terminal: boolean, create: NonNullable<MonitorOptions['handoff']>, when?: Promise<unknown>): Promise<void> {
  const fds: number[] = [];
  try {
    if (when) await when;
    let zygoteSocket: number;
    try {
      zygoteSocket = recvFd(sock);
      fds.push(zygoteSocket);
      if (!terminal) for (let i = 0; i < 3; i++) fds.push(recvFd(sock));
    } catch {
      return; // the monitor failed before handing over: it reports why on the sync fd
    }
    const r = await create({ zygoteSocket, stdio: terminal ? null : [fds[1], fds[2], fds[3]] });
    if (r.ptyMaster >= 0) {
      try { sendFd(sock, r.ptyMaster); } finally { closeSync(r.ptyMaster); }
    }
    writeSync(sock, `${r.pid}\n`);
  } finally {
    for (const fd of fds) { try { closeSync(fd); } catch { /* closed */ } }
    closeSync(sock);
  }
}

/** Send one control request and parse the JSON reply. */
function ctlRequest(socketPath: string, req: string, timeoutMs = 10000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); reject(new MonitorError('ctl', `monitor at ${socketPath} did not answer "${req}" within ${timeoutMs} ms`)); }, timeoutMs);
    s.on('connect', () => s.write(`${req}\n`));
    s.on('data', (d) => { buf += d.toString('utf8'); });
    s.on('error', (e) => { clearTimeout(timer); reject(new MonitorError('ctl', `cannot reach monitor at ${socketPath}: ${e.message}`)); });
    s.on('close', () => {
      clearTimeout(timer);
      try { resolve(JSON.parse(buf) as Record<string, unknown>); } catch { reject(new MonitorError('ctl', `monitor at ${socketPath} sent a bad reply to "${req}": ${JSON.stringify(buf)}`)); }
    });
  });
}

/** Start a container whose monitor was started without opts.start; returns the init pid. */
export async function startContainer(ctlSocket: string): Promise<number> {
  const r = await ctlRequest(ctlSocket, 'start', 30000);
  if (r.ok !== true) throw new MonitorError('start', String(r.error ?? 'start failed'));
  return Number(r.pid);
}

export async function monitorStatus(ctlSocket: string): Promise<MonitorStatus> {
  const r = await ctlRequest(ctlSocket, 'status');
  if (r.ok !== true) throw new MonitorError('status', String(r.error ?? 'status failed'));
  return { state: r.state as MonitorStatus['state'], pid: Number(r.pid), restarts: Number(r.restarts) };
}

/** Turn the restart policy off (call before stopping a container with restart=always). */
export async function disableRestart(ctlSocket: string): Promise<void> {
  const r = await ctlRequest(ctlSocket, 'norestart');
  if (r.ok !== true) throw new MonitorError('norestart', String(r.error ?? 'norestart failed'));
}

/** The exit record, or null while the container has not exited yet. */
export function readExitStatus(file: string): ExitRecord | null {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try { return JSON.parse(text) as ExitRecord; } catch {
    throw new BerthError('EBADEXIT', `exit record ${file} is not valid JSON`);
  }
}

/** Docker's convention: the exit code, or 128 + signal. */
export function exitCodeOf(r: ExitRecord): number {
  if (r.exitCode !== null) return r.exitCode;
  if (r.signal !== null) return 128 + r.signal;
  return 125;
}

/** Whether pid is a live (not zombie) berth-monitor process. */
export function monitorAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const state = stat.slice(close + 2, close + 3);
    if (state === 'Z' && comm.startsWith('berth-monitor')) {
      // Started by this process through posix_spawn (launch): nobody else reaps it while we run.
      try { waitpidNohang(pid); } catch { /* not our child */ }
    }
    return comm.startsWith('berth-monitor') && state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Wait until the exit record is final (not "restarting") and the monitor is gone. Checks start
 * 1 ms apart and back off to pollMs, so an exit that is about to happen is seen at once.
 */
export async function waitForExit(exitFile: string, monitorPid: number, opts: { timeoutMs?: number; pollMs?: number } = {}): Promise<ExitRecord> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60000);
  let delay = 1;
  for (;;) {
    const r = readExitStatus(exitFile);
    if (r && !r.restarting && !monitorAlive(monitorPid)) return r;
    if (!r && !monitorAlive(monitorPid)) throw new MonitorError('exit', `monitor ${monitorPid} died without writing ${exitFile}`);
    if (Date.now() > deadline) throw new MonitorError('timeout', `container did not exit within ${opts.timeoutMs ?? 60000} ms`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, opts.pollMs ?? 20);
  }
}

export const FRAME_STDIN = 0;
export const FRAME_STDOUT = 1;
export const FRAME_STDERR = 2;
export const FRAME_EXIT = 3;
export const FRAME_STDIN_EOF = 4;
export const FRAME_RESIZE = 5;

export function encodeFrame(type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeUInt32BE(data.length, 1);
  return Buffer.concat([h, data]);
}

export interface AttachOptions {
  stdin?: NodeJS.ReadableStream;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** With a pty all output arrives as stdout; enables resize(). */
  tty?: boolean;
}

export interface AttachSession {
  /** Resolves with the exit record when the container exits, or null when the socket closed first. */
  done: Promise<ExitRecord | null>;
  resize(rows: number, cols: number): void;
  /** Detach without affecting the container. */
  close(): void;
}

/** Connect to a monitor's attach socket; resolves once connected. */
export function attach(socketPath: string, opts: AttachOptions = {}): Promise<AttachSession> {
  return new Promise((resolveConn, rejectConn) => {
    const s = connect(socketPath);
    let pending: Buffer = Buffer.alloc(0);
    let exit: ExitRecord | null = null;
    let resolveDone: (r: ExitRecord | null) => void = () => {};
    const done = new Promise<ExitRecord | null>((r) => { resolveDone = r; });
    const onStdin = (d: Buffer | string): void => { s.write(encodeFrame(FRAME_STDIN, Buffer.isBuffer(d) ? d : Buffer.from(d))); };
    const onStdinEnd = (): void => { s.write(encodeFrame(FRAME_STDIN_EOF)); };
    const unhookStdin = (): void => {
      opts.stdin?.removeListener('data', onStdin);
      opts.stdin?.removeListener('end', onStdinEnd);
    };
    s.on('connect', () => {
      opts.stdin?.on('data', onStdin);
      opts.stdin?.on('end', onStdinEnd);
      resolveConn({
        done,
        resize(rows, cols) {
          const b = Buffer.alloc(4);
          b.writeUInt16BE(rows, 0);
          b.writeUInt16BE(cols, 2);
          s.write(encodeFrame(FRAME_RESIZE, b));
        },
        close() { unhookStdin(); s.destroy(); resolveDone(exit); },
      });
    });
    s.on('data', (d: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      while (pending.length >= 5) {
        const len = pending.readUInt32BE(1);
        if (pending.length < 5 + len) break;
        const type = pending[0];
        const data = pending.subarray(5, 5 + len);
        pending = pending.subarray(5 + len);
        if (type === FRAME_STDOUT) opts.stdout?.write(data);
        else if (type === FRAME_STDERR) (opts.tty ? opts.stdout : opts.stderr)?.write(data);
        else if (type === FRAME_EXIT) { try { exit = JSON.parse(data.toString('utf8')) as ExitRecord; } catch { /* keep null */ } }
      }
    });
    s.on('error', (e) => rejectConn(new MonitorError('attach', `cannot attach to ${socketPath}: ${e.message}`)));
    s.on('close', () => { unhookStdin(); resolveDone(exit); });
  });
}
