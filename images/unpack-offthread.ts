/**
 * Layer unpacking on worker threads (the worker is unpack-worker.ts; the protocol is described
 * there). The main thread of a pull downloads, hashes and stores every blob; decompressing,
 * hashing the tar, parsing it and creating the files of every layer on that same thread made it
 * the bottleneck (and a layer of small files waited one event-loop turn per entry). Here the
 * main thread only copies the layer's bytes to a worker in batches; the worker unpacks with
 * synchronous calls. Same result, errors and cleanup as unpackLayer(): on any failure the
 * directory is gone and an error of the same class is thrown.
 *
 * A small pool (UNPACK_THREADS workers, started on first use, unref'd while idle and ready) serves every
 * ImageStore of the process; a layer goes to the worker with the fewest jobs. If a worker cannot
 * start, unpacking falls back to the calling thread.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { BerthError } from '../runtime/errors.js';
import { DecompressError } from './unpack-decompress.js';
import { DiffIdMismatchError, LayerFormatError, UnsafeLayerError, unpackLayer, type UnpackOptions, type UnpackResult } from './unpack.js';

export type ToWorker =
  | { t: 'start'; id: number; dir: string; expectedDiffId?: string; sourceDigest?: boolean }
  | { t: 'data'; id: number; buf: ArrayBuffer }
  | { t: 'end'; id: number }
  | { t: 'abort'; id: number; message: string };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'ack'; id: number; n: number }
  | { t: 'done'; id: number; result: UnpackResult }
  | { t: 'fail'; id: number; err: SerializedError };

export interface SerializedError {
  /** A BerthError (other classes than the four rebuilt by name keep their code and name). */
  berth?: boolean;
  name: string;
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  expected?: string;
  actual?: string;
}

/** Workers in the pool. */
const UNPACK_THREADS = 2;
/** Bytes per message to a worker (a batch of the source's chunks, copied once). */
const BATCH = 1 << 20;
/** Smallest chunk moved to a worker rather than copied into a batch. */
const TRANSFER_MIN = 64 * 1024;
/** Bytes sent but not yet taken by the worker, per layer, before the sender waits. */
const WINDOW = 4 << 20;

interface Pending {
  dir: string;
  inflight: number;
  onAck: (() => void) | null;
  resolve: (r: UnpackResult) => void;
  reject: (e: unknown) => void;
}

class UnpackThread {
  readonly jobs = new Map<number, Pending>();
  private dead: Error | null = null;
  /** true once the worker has loaded its code; false if it died before that. */
  readonly ready: Promise<boolean>;
  private setReady!: (ok: boolean) => void;

  constructor(private readonly worker: Worker, private readonly onExit: () => void) {
    this.ready = new Promise<boolean>((r) => { this.setReady = r; });
    worker.on('message', (m: FromWorker) => this.message(m));
    worker.on('error', (e: Error) => this.die(e));
    worker.on('exit', (code) => this.die(new BerthError('EUNPACK', `unpack worker exited (code ${code})`)));
    // The worker stays ref'd until it is ready (a caller may be waiting on `ready` with nothing
    // else keeping the process alive), then only while it has jobs.

  }

  get alive(): boolean { return this.dead === null; }

  post(m: ToWorker, transfer?: ArrayBuffer[]): void {
    if (this.dead) throw this.dead;
    this.worker.postMessage(m, transfer);
  }

  add(id: number, p: Pending): void {
    this.worker.ref();
    this.jobs.set(id, p);
  }

  private finish(id: number): Pending | undefined {
    const p = this.jobs.get(id);
    this.jobs.delete(id);
    if (this.jobs.size === 0 && this.alive) this.worker.unref();
    return p;
  }

  private message(m: FromWorker): void {
    if (m.t === 'ready') {
      this.setReady(true);
      if (this.jobs.size === 0) this.worker.unref();
      return;
    }
    if (m.t === 'ack') {
      const p = this.jobs.get(m.id);
      if (!p) return;
      p.inflight -= m.n;
      const w = p.onAck;
      p.onAck = null;
      w?.();
      return;
    }
    const p = this.finish(m.id);
    if (!p) return;
    if (m.t === 'done') p.resolve(m.result);
    else p.reject(deserialize(m.err));
  }

  private die(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    this.setReady(false);
    this.onExit();
    for (const [id, p] of [...this.jobs]) {
      this.finish(id);
      fs.rmSync(p.dir, { recursive: true, force: true });
      p.reject(e);
    }
  }
}

function deserialize(s: SerializedError): Error {
  let e: Error;
  switch (s.name) {
    case 'UnsafeLayerError': e = new UnsafeLayerError(s.message); break;
    case 'LayerFormatError': e = new LayerFormatError(s.message); break;
    case 'DecompressError': e = new DecompressError(s.message); break;
    case 'DiffIdMismatchError': e = new DiffIdMismatchError(s.expected ?? '', s.actual ?? ''); break;
    default: {
      e = s.berth && s.code ? new BerthError(s.code, s.message) : new Error(s.message);
      if (s.berth) e.name = s.name;
      const x = e as NodeJS.ErrnoException;
      if (s.code !== undefined && !(e instanceof BerthError)) x.code = s.code;
      if (s.errno !== undefined) x.errno = s.errno;
      if (s.syscall !== undefined) x.syscall = s.syscall;
      if (s.path !== undefined) x.path = s.path;
    }
  }
  return e;
}

const pool: UnpackThread[] = [];
let nextId = 1;

/**
 * dist/unpack-worker.cjs (scripts/bundle-berth.mjs) while it is current, else null: the same
 * check the CLIs make for their bundles (bin/bundle-loader.cjs currentBundle). Once per process.
 */
let bundled: URL | null | undefined;
function workerBundle(): URL | null {
  if (bundled !== undefined) return bundled;
  bundled = null;
  try {
    // this module is dist/images/…: the package root is two levels up
    const loader = createRequire(import.meta.url)('../../bin/bundle-loader.cjs') as { currentBundle(root: string, name: string): unknown };
    if (loader.currentBundle(fileURLToPath(new URL('../../', import.meta.url)), 'unpack-worker')) bundled = new URL('../unpack-worker.cjs', import.meta.url);
  } catch { /* no loader: the compiled module */ }
  return bundled;
}

function newWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(workerBundle() ?? new URL('./unpack-worker.js', import.meta.url));
  // Running from TypeScript sources (tests, `--import tsx`): tsx's hooks do not carry over to a
  // worker, so the worker registers them before it loads unpack-worker.ts.
  const api = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const entry = JSON.stringify(new URL('./unpack-worker.ts', import.meta.url).href);
  return new Worker(`import(${api}).then((m) => { m.register(); return import(${entry}); })`, { eval: true });
}

function spawn(): UnpackThread | null {
  try {
    const th: UnpackThread = new UnpackThread(newWorker(), () => {
      const i = pool.indexOf(th);
      if (i >= 0) pool.splice(i, 1);
    });
    pool.push(th);
    return th;
  } catch {
    return null;
  }
}

/** The least busy worker, starting another while the pool is not full and all are busy; null if none can start. */
function pick(): UnpackThread | null {
  let best: UnpackThread | null = null;
  for (const w of pool) if (!best || w.jobs.size < best.jobs.size) best = w;
  if ((!best || best.jobs.size > 0) && pool.length < UNPACK_THREADS) return spawn() ?? best;
  return best;
}

/** Start the pool's workers now (each takes some milliseconds to boot), e.g. while a manifest downloads. */
export function warmUnpackThreads(): void {
  while (pool.length < UNPACK_THREADS) if (!spawn()) return;
}

/**
 * unpackLayer() on a worker thread: unpack `source` (compressed or not) into `dir`, which must
 * not exist yet. Same result and errors; `dir` is removed on failure.
 */
export async function unpackLayerOffThread(source: AsyncIterable<Buffer> | Readable, dir: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const th = pick();
  if (!th) return unpackLayer(source, dir, opts);
  const root = path.resolve(dir);
  const id = nextId++;
  let p!: Pending;
  const result = new Promise<UnpackResult>((resolve, reject) => {
    p = { dir: root, inflight: 0, onAck: null, resolve, reject };
  });
  result.catch(() => {});
  th.add(id, p); // counted at once, so layers starting together spread over the pool
  if (!(await th.ready)) return unpackLayer(source, dir, opts); // it died (and dropped the job)
  th.post({ t: 'start', id, dir: root, expectedDiffId: opts.expectedDiffId, sourceDigest: opts.sourceDigest });

  let settled = false;
  void result.then(() => { settled = true; }, () => { settled = true; });
  const waitAck = () => new Promise<void>((r) => {
    p.onAck = r;
    // the worker may have finished (or failed) without taking everything
    void result.then(() => r(), () => r());
  });

  let batch: Buffer | null = null;
  let fill = 0;
  const flush = async () => {
    if (!batch || fill === 0) return;
    const ab = batch.buffer.slice(batch.byteOffset, batch.byteOffset + fill) as ArrayBuffer;
    batch = null;
    fill = 0;
    p.inflight += ab.byteLength;
    th.post({ t: 'data', id, buf: ab }, [ab]);
    while (p.inflight > WINDOW && !settled) await waitAck();
  };

  const onAbort = () => { if (!settled) th.post({ t: 'abort', id, message: 'layer unpack aborted' }); };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    opts.signal?.throwIfAborted();
    for await (const c of source as AsyncIterable<Buffer>) {
      if (settled) break;
      if (opts.transferChunks && c.byteLength >= TRANSFER_MIN && c.byteOffset === 0 && c.byteLength === c.buffer.byteLength) {
        await flush(); // keep the order: what was batched goes first
        const ab = c.buffer as ArrayBuffer;
        p.inflight += ab.byteLength;
        th.post({ t: 'data', id, buf: ab }, [ab]);
        while (p.inflight > WINDOW && !settled) await waitAck();
        continue;
      }
      let off = 0;
      while (off < c.length) {
        if (!batch) batch = Buffer.allocUnsafeSlow(BATCH);
        const n = Math.min(c.length - off, BATCH - fill);
        c.copy(batch, fill, off, off + n);
        fill += n;
        off += n;
        if (fill === BATCH) await flush();
      }
    }
    await flush();
    if (!settled) th.post({ t: 'end', id });
  } catch (e) {
    // the source failed (or we were aborted): stop the worker, wait for its cleanup, report e
    if (!settled && th.alive) th.post({ t: 'abort', id, message: (e as Error)?.message ?? String(e) });
    await result.catch(() => {});
    throw e;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  try {
    return await result;
  } catch (e) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? e;
    throw e;
  }
}
