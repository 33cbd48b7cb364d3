/**
 * Content-addressable blob store (containerd's content store, simplified).
 *
 * Layout under <root>/content:
 *   blobs/sha256/<hex>        verified blobs, immutable, visible only after verification
 *   ingest/<hex>              a partial download (resumable: its length is the resume offset)
 *   ingest/<hex>.json         sidecar: { digest, size, source, startedAt }
 *   ingest/<hex>.lock         exclusive (O_EXCL) lock holding the owner's pid
 *
 * ingest() streams bytes through sha256 while writing, resumes from the partial file with
 * open(offset) (the registry client sends Range), restarts from 0 when the server ignored
 * Range, verifies size and digest, then renames atomically into blobs/. Concurrent ingests of
 * one digest share one download in-process (a map of promises) and across processes (the lock
 * file, with stale-lock detection by pid).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { BerthError } from '../runtime/errors.js';

export class DigestMismatchError extends BerthError {
  readonly expected: string;
  readonly actual: string;
  constructor(expected: string, actual: string, source?: string) {
    super('EDIGEST', `digest mismatch${source ? ` for ${source}` : ''}: expected ${expected}, got ${actual} (the download was discarded)`);
    this.expected = expected;
    this.actual = actual;
  }
}

export class BlobSizeError extends BerthError {
  constructor(digest: string, expected: number, actual: number, source?: string) {
    super('ESIZE', `blob ${digest}${source ? ` from ${source}` : ''} is ${actual > expected ? 'larger' : 'smaller'} than its descriptor says: expected ${expected} bytes, got ${actual}`);
  }
}

export class InvalidDigestError extends BerthError {
  constructor(digest: string) {
    super('EINVALIDDIGEST', `"${digest}" is not a sha256 digest (want sha256:<64 lowercase hex digits>)`);
  }
}

export class BlobNotFoundError extends BerthError {
  constructor(digest: string) { super('ENOTFOUND', `blob ${digest} is not in the content store`); }
}

const SHA256_RE = /^sha256:([0-9a-f]{64})$/;

export function hexOf(digest: string): string {
  const m = SHA256_RE.exec(digest);
  if (!m) throw new InvalidDigestError(digest);
  return m[1];
}

export function sha256Digest(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export type ByteSource = Readable | AsyncIterable<Uint8Array>;
/** What open(offset) returns: a body, and (when it differs from the requested one) the offset it starts at. */
export type OpenResult = ByteSource | { body: ByteSource; offset: number };

export interface IngestOptions {
  /** Called as bytes arrive (total bytes present so far, total size). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Receives every byte of the blob exactly once, in order from offset 0: a resumed partial
   * prefix is replayed from disk first, and a blob that already exists (or that a concurrent
   * call downloaded) is replayed from the store. A returned promise applies back-pressure.
   * If ingest throws, whatever onChunk saw must be discarded.
   * Downloaded bytes arrive in batches of up to 1 MiB, each a Buffer over memory of its own
   * that the store does not touch again (the receiver may keep it, or transfer its ArrayBuffer
   * when the Buffer spans all of it).
   */
  onChunk?: (chunk: Uint8Array) => void | Promise<void>;
  /**
   * With onChunk: the tee hashes what it receives, so ingest does not. Called once every byte
   * has gone to onChunk; resolves to the sha256 digest of exactly those bytes, which is then
   * verified as ingest's own would be (null or a rejection: ingest hashes the file instead).
   */
  teeDigest?: () => Promise<string | null>;
  /** Where the bytes come from, for error messages and the sidecar. */
  source?: string;
  /** How many times to re-open after the body broke or ended short (default 3). */
  retries?: number;
  signal?: AbortSignal;
}

export interface IngestResult {
  digest: string;
  size: number;
  path: string;
  /** Bytes fetched by this call through open() (0 when the blob was already there or shared). */
  fetched: number;
  /** Offset the first open() was asked for (> 0 when a partial download was resumed). */
  resumedFrom: number;
}

export interface ContentStoreOptions {
  /** fdatasync blobs before they become visible (default true). */
  fsync?: boolean;
}

function isOpenWithOffset(r: OpenResult): r is { body: ByteSource; offset: number } {
  return typeof r === 'object' && r !== null && 'body' in r && 'offset' in r && typeof (r as { offset: unknown }).offset === 'number';
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class ContentStore {
  readonly root: string;
  readonly blobsDir: string;
  readonly ingestDir: string;
  private readonly fsync: boolean;
  private readonly inflight = new Map<string, Promise<IngestResult>>();

  constructor(root: string, opts: ContentStoreOptions = {}) {
    this.root = root;
    this.blobsDir = join(root, 'content', 'blobs', 'sha256');
    this.ingestDir = join(root, 'content', 'ingest');
    this.fsync = opts.fsync ?? true;
  }

  private async dirs(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true, mode: 0o700 });
    await mkdir(this.ingestDir, { recursive: true, mode: 0o700 });
  }

  /** Path of a (verified) blob, whether or not it exists. */
  path(digest: string): string { return join(this.blobsDir, hexOf(digest)); }

  hasSync(digest: string): boolean { return existsSync(this.path(digest)); }
  async has(digest: string): Promise<boolean> {
    try { await stat(this.path(digest)); return true; } catch { return false; }
  }

  /** Size of a stored blob, or undefined when absent. */
  async size(digest: string): Promise<number | undefined> {
    try { return (await stat(this.path(digest))).size; } catch { return undefined; }
  }
  sizeSync(digest: string): number | undefined {
    try { return statSync(this.path(digest)).size; } catch { return undefined; }
  }

  async readBytes(digest: string): Promise<Buffer> {
    try {
      // configs and manifests (a few KB, on every `berth run`) synchronously: no fs/promises to
      // load and no threadpool round trip; anything large on the threadpool
      const p = this.path(digest);
      return statSync(p).size <= SMALL_BLOB ? readFileSync(p) : await readFile(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(digest);
      throw e;
    }
  }

  async readJSON<T = unknown>(digest: string): Promise<T> {
    const b = await this.readBytes(digest);
    try { return JSON.parse(b.toString('utf8')) as T; } catch (e) {
      throw new BerthError('EINVALIDJSON', `blob ${digest} is not valid JSON: ${(e as Error).message}`);
    }
  }

  /** A read stream over a stored blob. */
  openRead(digest: string, start = 0): Readable {
    return createReadStream(this.path(digest), { start });
  }

  /** Store bytes built locally (configs, manifests); verifies expectedDigest when given. */
  async writeBlob(bytes: Uint8Array | string, expectedDigest?: string): Promise<{ digest: string; size: number; path: string }> {
    const buf = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
    const digest = sha256Digest(buf);
    if (expectedDigest && expectedDigest !== digest) throw new DigestMismatchError(expectedDigest, digest, 'local blob');
    const dst = this.path(digest);
    if (existsSync(dst)) return { digest, size: buf.length, path: dst };
    await this.dirs();
    const tmp = join(this.ingestDir, `.w-${hexOf(digest)}-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const fh = await open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(buf);
      if (this.fsync) await fh.datasync();
    } finally { await fh.close(); }
    await rename(tmp, dst);
    return { digest, size: buf.length, path: dst };
  }

  /** Every stored blob digest. */
  async list(): Promise<{ digest: string; size: number }[]> {
    let names: string[];
    try { names = await readdir(this.blobsDir); } catch { return []; }
    const out: { digest: string; size: number }[] = [];
    for (const n of names) {
      if (!/^[0-9a-f]{64}$/.test(n)) continue;
      try { out.push({ digest: `sha256:${n}`, size: (await stat(join(this.blobsDir, n))).size }); } catch {}
    }
    return out.sort((a, b) => a.digest.localeCompare(b.digest));
  }

  /** Remove a blob; true when it existed. */
  async delete(digest: string): Promise<boolean> {
    try { await unlink(this.path(digest)); return true; } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /** Partial downloads present: digest, bytes so far, sidecar info. */
  async listIngests(): Promise<{ digest: string; offset: number; size?: number; source?: string; updatedAt: number }[]> {
    let names: string[];
    try { names = await readdir(this.ingestDir); } catch { return []; }
    const out = [];
    for (const n of names) {
      if (!/^[0-9a-f]{64}$/.test(n)) continue;
      try {
        const st = await stat(join(this.ingestDir, n));
        let side: { size?: number; source?: string } = {};
        try { side = JSON.parse(await readFile(join(this.ingestDir, `${n}.json`), 'utf8')); } catch {}
        out.push({ digest: `sha256:${n}`, offset: st.size, size: side.size, source: side.source, updatedAt: st.mtimeMs });
      } catch {}
    }
    return out;
  }

  /** Delete partial downloads (and stale temp files) untouched for olderThanMs and not locked by a live process. */
  async gcIngest(olderThanMs: number): Promise<string[]> {
    let names: string[];
    try { names = await readdir(this.ingestDir); } catch { return []; }
    const now = Date.now();
    const removed: string[] = [];
    for (const n of names) {
      if (n.endsWith('.lock') || n.endsWith('.json')) continue;
      const hex = n.startsWith('.w-') ? n.slice(3, 67) : n;
      const p = join(this.ingestDir, n);
      try {
        const st = await stat(p);
        if (now - st.mtimeMs < olderThanMs) continue;
        if (/^[0-9a-f]{64}$/.test(hex) && !n.startsWith('.w-')) {
          const lock = await this.readLock(hex);
          if (lock !== null && pidAlive(lock)) continue;
          await rm(join(this.ingestDir, `${hex}.json`), { force: true });
          await rm(join(this.ingestDir, `${hex}.lock`), { force: true });
        }
        await rm(p, { force: true });
        removed.push(n);
      } catch {}
    }
    return removed;
  }

  private async readLock(hex: string): Promise<number | null> {
    try { return Number((await readFile(join(this.ingestDir, `${hex}.lock`), 'utf8')).trim()); } catch { return null; }
  }

  /**
   * Take the cross-process lock for hex. Returns a release function, or null when another
   * process finished the blob while we waited.
   */
  private async lock(digest: string, signal?: AbortSignal): Promise<(() => Promise<void>) | null> {
    const hex = hexOf(digest);
    const lockPath = join(this.ingestDir, `${hex}.lock`);
    for (;;) {
      signal?.throwIfAborted();
      if (existsSync(this.path(digest))) return null;
      try {
        const fh = await open(lockPath, 'wx', 0o600);
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return async () => { await rm(lockPath, { force: true }); };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const owner = await this.readLock(hex);
      if (owner === process.pid || (owner !== null && !Number.isNaN(owner) && !pidAlive(owner))) {
        // stale (dead owner, or a previous run of this pid that crashed without cleanup: the
        // in-process map guarantees no live ingest of ours holds it)
        await rm(lockPath, { force: true });
        continue;
      }
      if (owner === null || Number.isNaN(owner)) {
        // being written right now, or garbage: give it a moment, then treat old garbage as stale
        try {
          const st = await stat(lockPath);
          if (Date.now() - st.mtimeMs > 5000) { await rm(lockPath, { force: true }); continue; }
        } catch { continue; }
      }
      await sleep(50);
    }
  }

  /**
   * Download a blob into the store (see the file comment). Resolves when the verified blob is
   * in blobs/. Throws DigestMismatchError (partial removed), BlobSizeError (partial removed),
   * or the transport's error after `retries` re-opens (partial kept for a later resume).
   */
  async ingest(digest: string, size: number, openFn: (offset: number) => Promise<OpenResult>, opts: IngestOptions = {}): Promise<IngestResult> {
    hexOf(digest);
    if (!Number.isSafeInteger(size) || size < 0) throw new BerthError('EINVAL', `blob ${digest}: invalid size ${size}`);
    const existing = this.inflight.get(digest);
    if (existing) {
      const r = await existing;
      await this.replay(digest, opts);
      return { ...r, fetched: 0, resumedFrom: 0 };
    }
    if (existsSync(this.path(digest))) {
      await this.replay(digest, opts);
      return { digest, size: this.sizeSync(digest) ?? size, path: this.path(digest), fetched: 0, resumedFrom: 0 };
    }
    let teeLive = true;
    const p = (async () => {
      await this.dirs();
      const release = await this.lock(digest, opts.signal);
      if (!release) { teeLive = false; return { digest, size, path: this.path(digest), fetched: 0, resumedFrom: 0 }; }
      try {
        return await this.download(digest, size, openFn, opts);
      } finally {
        await release();
      }
    })();
    this.inflight.set(digest, p);
    try {
      const r = await p;
      if (!teeLive) await this.replay(digest, opts);
      return r;
    } finally {
      this.inflight.delete(digest);
    }
  }

  private async replay(digest: string, opts: IngestOptions): Promise<void> {
    if (!opts.onChunk && !opts.onProgress) return;
    const total = this.sizeSync(digest) ?? 0;
    if (!opts.onChunk) { opts.onProgress?.(total, total); return; }
    let done = 0;
    for await (const c of this.openRead(digest)) {
      done += (c as Buffer).length; // before onChunk, which may transfer the chunk away
      await opts.onChunk(c as Buffer);
      opts.onProgress?.(done, total);
    }
  }

  private async download(digest: string, size: number, openFn: (offset: number) => Promise<OpenResult>, opts: IngestOptions): Promise<IngestResult> {
    const hex = hexOf(digest);
    const partial = join(this.ingestDir, hex);
    const sidecar = join(this.ingestDir, `${hex}.json`);
    const source = opts.source;
    let offset = 0;
    try { offset = (await stat(partial)).size; } catch {}
    if (offset > size) { await rm(partial, { force: true }); offset = 0; }
    if (offset === 0) {
      await writeFile(sidecar, JSON.stringify({ digest, size, source, startedAt: new Date().toISOString() }) + '\n');
    }
    const fh: FileHandle = await open(partial, offset > 0 ? 'r+' : 'w', 0o644);
    let hash: Hash = createHash('sha256');
    const viaTee = opts.teeDigest !== undefined && opts.onChunk !== undefined;
    let fetched = 0;
    const resumedFrom = offset;
    // Received bytes are copied into a batch of WRITE_BATCH bytes, written with one write, and
    // only then handed to onChunk (a threadpool round trip per network chunk cost the main thread
    // of a pull more than the copy; the tee gets whole batches it may keep).
    let batch: Buffer | null = null;
    let fill = 0;
    let batchAt = 0;
    const flushWrites = async () => {
      if (!batch || fill === 0) return;
      const b = fill === batch.length ? batch : batch.subarray(0, fill);
      const at = batchAt;
      batch = null;
      fill = 0;
      try {
        await writeAll(fh, b, at);
      } catch (e) {
        writeFailed = true; // the file now lags `offset`: never retry past this
        throw e;
      }
      if (opts.onChunk) await opts.onChunk(b);
    };
    let writeFailed = false;
    const discard = async () => {
      await fh.close().catch(() => undefined);
      await rm(partial, { force: true });
      await rm(sidecar, { force: true });
    };
    let closed = false;
    try {
      // re-hash (and replay to the tee) the prefix we already have
      if (offset > 0) {
        let seen = 0;
        for await (const c of createReadStream(partial, { start: 0, end: offset - 1 })) {
          const b = c as Buffer;
          if (!viaTee) hash.update(b);
          seen += b.length; // before onChunk, which may transfer the chunk away
          if (opts.onChunk) await opts.onChunk(b);
        }
        if (seen !== offset) { offset = seen; await fh.truncate(seen); }
        opts.onProgress?.(offset, size);
      }
      let retriesLeft = opts.retries ?? 3;
      while (offset < size) {
        opts.signal?.throwIfAborted();
        let lastErr: unknown = null;
        const before = offset;
        try {
          const res = await openFn(offset);
          let body: ByteSource;
          let start = offset;
          if (isOpenWithOffset(res)) { body = res.body; start = res.offset; } else body = res;
          if (start !== offset) {
            if (start !== 0) {
              destroyBody(body);
              throw new BerthError('ERANGE', `blob ${digest}${source ? ` from ${source}` : ''}: asked for offset ${offset}, server answered from ${start}`);
            }
            if (opts.onChunk && offset > 0) {
              // the tee already saw a prefix; it cannot be rewound
              destroyBody(body);
              throw new BerthError('ERANGE', `blob ${digest}${source ? ` from ${source}` : ''}: server ignored Range while a resumed stream was being consumed; retry`);
            }
            // server ignored Range: start over
            await fh.truncate(0);
            hash = createHash('sha256');
            offset = 0;
          }
          for await (const chunk of body) {
            const b = chunk instanceof Buffer ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
            if (offset + b.length > size) {
              destroyBody(body);
              const actual = offset + b.length;
              await discard(); closed = true;
              throw new BlobSizeError(digest, size, actual, source);
            }
            if (!viaTee) hash.update(b);
            for (let off = 0; off < b.length;) {
              if (!batch) {
                batchAt = offset + off;
                batch = Buffer.allocUnsafeSlow(Math.min(WRITE_BATCH, size - batchAt));
              }
              const n = b.copy(batch, fill, off);
              fill += n;
              off += n;
              if (fill === batch.length) await flushWrites();
            }
            offset += b.length;
            fetched += b.length;
            opts.onProgress?.(offset, size);
          }
        } catch (e) {
          if (writeFailed || e instanceof BlobSizeError || (e instanceof BerthError && e.code === 'ERANGE') || opts.signal?.aborted) throw e;
          lastErr = e;
        }
        await flushWrites(); // what arrived before a break is good: keep it for the resume
        if (offset >= size) break;
        // body broke or ended short: resume
        if (offset > before) retriesLeft = Math.max(retriesLeft, 1); // progress earns another try
        if (retriesLeft-- <= 0) {
          if (lastErr) throw lastErr;
          throw new BerthError('ETRUNCATED', `blob ${digest}${source ? ` from ${source}` : ''} ended after ${offset} of ${size} bytes`);
        }
        await sleep(offset > before ? 0 : 200);
      }
      let actual: string;
      if (viaTee) {
        const d = await opts.teeDigest!().catch(() => null);
        opts.signal?.throwIfAborted();
        actual = d ?? await hashFile(partial);
      } else {
        actual = `sha256:${hash.digest('hex')}`;
      }
      if (actual !== digest) {
        await discard(); closed = true;
        throw new DigestMismatchError(digest, actual, source);
      }
      if (this.fsync) await fh.datasync();
      await fh.close(); closed = true;
      await rename(partial, this.path(digest));
      // unlink, not rm: fs.promises.rm walks the path like rm -r (an lstat on the main thread)
      await unlink(sidecar).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
      return { digest, size, path: this.path(digest), fetched, resumedFrom };
    } finally {
      if (!closed) await fh.close().catch(() => undefined);
    }
  }
}

async function hashFile(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Blobs readBytes reads synchronously. */
const SMALL_BLOB = 1 << 20;

/** Bytes of a download gathered before one write. */
const WRITE_BATCH = 1 << 20;

async function writeAll(fh: FileHandle, b: Uint8Array, pos: number): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off, pos + off);
    off += bytesWritten;
  }
}

function destroyBody(body: ByteSource): void {
  const d = (body as { destroy?: () => void }).destroy;
  if (typeof d === 'function') d.call(body);
}
