/**
 * Layer unpacking: streams a (gzip | zstd | plain) layer tar into a fresh directory, converting
 * OCI whiteouts to the overlayfs form (`.wh.x` → 0:0 char device, `.wh..wh..opq` →
 * trusted.overlay.opaque=y), and computes the diff_id (sha256 of the uncompressed tar) on the way.
 *
 * Security: every path stays inside the layer dir. Names are resolved lexically (absolute names
 * made relative, `..` that would escape refused), parent components are walked with lstat and a
 * symlinked parent is refused, files are opened O_NOFOLLOW|O_EXCL after removing whatever was
 * there, metadata calls are l*-variants or fd-based, and hardlink targets must already be inside
 * the layer. Nothing here ever follows a symlink. On any failure the directory is removed.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform } from 'node:stream';
import tar from 'tar-stream';
import { BerthError } from '../runtime/errors.js';
import { lsetxattr, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../runtime/linux/libc.js';
import { decompress, type Compression } from './unpack-decompress.js';

export class UnsafeLayerError extends BerthError {
  constructor(message: string) {
    super('EUNSAFELAYER', message);
  }
}

export class LayerFormatError extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ELAYERFORMAT', message, options);
  }
}

export class DiffIdMismatchError extends BerthError {
  constructor(readonly expected: string, readonly actual: string) {
    super('EDIFFID', `layer content does not match the image config: diff_id is ${actual}, config says ${expected}`);
  }
}

type LayerHeader = Partial<tar.Header> & { name: string; pax?: Record<string, string> | null };

export interface UnpackOptions {
  /** sha256:… from the image config's rootfs.diff_ids; a mismatch fails the unpack. */
  expectedDiffId?: string;
  signal?: AbortSignal;
  /**
   * Create inodes and write data with synchronous calls (default false: on libuv's threadpool).
   * For a thread whose only job is this unpack (unpack-worker.ts): no threadpool round trip and
   * event-loop turn per entry.
   */
  syncIO?: boolean;
  /**
   * unpackLayerOffThread(): nobody uses the source's chunks once they are yielded, so a chunk
   * that spans its whole ArrayBuffer is moved to the worker (transferred) instead of copied.
   */
  transferChunks?: boolean;
  /** Also hash the source's bytes (the blob, still compressed): UnpackResult.sourceDigest. */
  sourceDigest?: boolean;
}

export interface UnpackResult {
  diffId: string;
  /** Bytes of the uncompressed tar. */
  tarSize: number;
  compression: Compression;
  entries: number;
  /** With UnpackOptions.sourceDigest: sha256 of the source's bytes as given, if it was read to its end. */
  sourceDigest?: string;
}

const MAX_NAME = 4096;
const OPAQUE = '.wh..wh..opq';
const WH = '.wh.';
const O_NOFOLLOW = fs.constants.O_NOFOLLOW;
const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | O_NOFOLLOW;

/** Resolve a tar entry name to path components inside the layer, refusing escapes. */
export function safeComponents(name: string, what = 'entry'): string[] {
  if (name.length > MAX_NAME) throw new UnsafeLayerError(`${what} name is ${name.length} bytes long (limit ${MAX_NAME})`);
  if (name.includes('\0')) throw new UnsafeLayerError(`${what} "${name.replace(/\0/g, '\\0')}" contains a NUL byte`);
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) throw new UnsafeLayerError(`${what} "${name}" escapes the layer directory with ".."`);
      out.pop();
      continue;
    }
    if (Buffer.byteLength(c) > 255) throw new UnsafeLayerError(`${what} "${name}" has a path component longer than 255 bytes`);
    out.push(c);
  }
  return out;
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/*
 * Creating an inode (mkdir, symlink, open O_CREAT) and copying file data are the expensive calls
 * of an unpack (creating an inode costs ~0.3-1 ms of kernel CPU on the test VM; a busybox layer
 * has ~270 symlinks), so they run on libuv's threadpool: the main thread keeps downloading,
 * hashing and parsing the other layers meanwhile. Entries of one layer still apply strictly in
 * order (each is awaited). The cheap per-inode calls (chown, chmod, utimes) stay synchronous.
 */
const writeAt = (fd: number, b: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((resolve, reject) => fs.write(fd, b, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));

const openFd = (p: string, flags: number, mode: number) =>
  new Promise<number>((resolve, reject) => fs.open(p, flags, mode, (e, fd) => (e ? reject(e) : resolve(fd))));

/** Write all of b at pos. */
async function writeFully(fd: number, b: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < b.length) off += await writeAt(fd, b, off, b.length - off, pos + off);
}

/** Writes in flight per file (positional, so they may complete in any order). */
const MAX_PENDING = 4;

/** Write all of b at pos, synchronously. */
function writeFullySync(fd: number, b: Buffer, pos: number): void {
  let off = 0;
  while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off, pos + off);
}

/** The inode-creating calls, on the threadpool (async) or synchronous (syncIO). */
interface CreateIO {
  mkdir(p: string): Promise<void> | void;
  symlink(target: string, p: string): Promise<void> | void;
  open(p: string): Promise<number> | number;
  rm(p: string): Promise<void> | void;
}

const asyncIO: CreateIO = {
  mkdir: (p) => fsp.mkdir(p, 0o755).then(() => undefined),
  symlink: (target, p) => fsp.symlink(target, p),
  open: (p) => openFd(p, WRITE_FLAGS, 0o600),
  rm: (p) => fsp.rm(p, { recursive: true, force: true }),
};

const syncIO: CreateIO = {
  mkdir: (p) => { fs.mkdirSync(p, 0o755); },
  symlink: (target, p) => { fs.symlinkSync(target, p); },
  open: (p) => fs.openSync(p, WRITE_FLAGS, 0o600),
  rm: (p) => { fs.rmSync(p, { recursive: true, force: true }); },
};

interface DirTime { p: string; atime: number; mtime: number }

class Extractor {
  private readonly dirs = new Set<string>();
  private readonly dirTimes: DirTime[] = [];
  entries = 0;

  private readonly io: CreateIO;

  constructor(private readonly root: string, private readonly sync = false) {
    this.dirs.add(root);
    this.io = sync ? syncIO : asyncIO;
  }

  /** Make sure every parent of comps exists as a real directory (never a symlink). */
  private async parentDir(comps: string[], label: string, create: boolean): Promise<string> {
    let p = this.root;
    for (let i = 0; i < comps.length - 1; i++) {
      p = p + '/' + comps[i];
      if (this.dirs.has(p)) continue;
      const st = lstatOrNull(p);
      if (!st) {
        if (!create) throw new UnsafeLayerError(`${label}: "${comps.slice(0, i + 1).join('/')}" is not in the layer`);
        await this.io.mkdir(p);
      } else if (st.isSymbolicLink()) {
        throw new UnsafeLayerError(`${label} would go through the symlink "${comps.slice(0, i + 1).join('/')}"; refusing to follow it`);
      } else if (!st.isDirectory()) {
        throw new UnsafeLayerError(`${label}: parent "${comps.slice(0, i + 1).join('/')}" is not a directory`);
      }
      this.dirs.add(p);
    }
    return p;
  }

  private forget(p: string): void {
    const prefix = p + '/';
    for (const d of this.dirs) if (d === p || d.startsWith(prefix)) this.dirs.delete(d);
  }

  /** Remove what is at p (never following a link) unless both old and new are directories. */
  private async clear(p: string, keepDir: boolean): Promise<boolean> {
    const st = lstatOrNull(p);
    if (!st) return false;
    if (keepDir && st.isDirectory()) return true;
    this.forget(p);
    await this.io.rm(p);
    return false;
  }

  async entry(h: LayerHeader, body: AsyncIterable<Buffer>): Promise<void> {
    this.entries++;
    const name = h.name;
    const comps = safeComponents(name);
    const type = h.type ?? 'file';
    const mode = (h.mode ?? 0o644) & 0o7777;
    const uid = h.uid ?? 0;
    const gid = h.gid ?? 0;
    const mtime = mtimeOf(h);

    if (comps.length === 0) {
      if (type !== 'directory') throw new UnsafeLayerError(`entry "${name}" names the layer root but is a ${type}`);
      fs.lchownSync(this.root, uid, gid);
      fs.chmodSync(this.root, mode);
      this.xattrs(this.root, h.pax);
      this.dirTimes.push({ p: this.root, atime: mtime, mtime });
      return drain(body);
    }
    const base = comps[comps.length - 1];

    if (base.startsWith(WH)) {
      const parent = await this.parentDir(comps, `entry "${name}"`, true);
      if (base === OPAQUE) {
        lsetxattr(parent, 'trusted.overlay.opaque', Buffer.from('y'));
        return drain(body);
      }
      const hidden = base.slice(WH.length);
      if (hidden === '' || hidden === '.' || hidden === '..' || hidden.startsWith(WH)) {
        throw new UnsafeLayerError(`entry "${name}" is a malformed whiteout`);
      }
      const p = parent + '/' + hidden;
      await this.clear(p, false);
      mknod(p, S_IFCHR, 0, 0);
      fs.lchownSync(p, 0, 0);
      return drain(body);
    }

    const parent = await this.parentDir(comps, `entry "${name}"`, true);
    const p = parent + '/' + base;

    switch (type) {
      case 'file':
      case 'contiguous-file': {
        await this.clear(p, false);
        const fd = await this.io.open(p);
        if (this.sync) return this.fileSync(fd, p, h, body, uid, gid, mode, mtime);
        // never close fd while a write to it is in flight (the number could be reused)
        const pending = new Set<Promise<void>>();
        try {
          let failed: unknown = null;
          let pos = 0;
          for await (const chunk of body) {
            if (failed !== null) break;
            const w: Promise<void> = writeFully(fd, chunk, pos).then(() => { pending.delete(w); }, (e: unknown) => { pending.delete(w); failed ??= e; });
            pending.add(w);
            pos += chunk.length;
            if (pending.size >= MAX_PENDING) await Promise.race(pending);
          }
          await Promise.all(pending);
          if (failed !== null) throw failed;
          fs.fchownSync(fd, uid, gid);
          fs.fchmodSync(fd, mode);
          this.xattrs(p, h.pax);
          fs.futimesSync(fd, mtime, mtime);
        } finally {
          await Promise.all(pending);
          fs.closeSync(fd);
        }
        return;
      }
      case 'directory': {
        if (!(await this.clear(p, true))) await this.io.mkdir(p);
        this.dirs.add(p);
        fs.lchownSync(p, uid, gid);
        fs.chmodSync(p, mode);
        this.xattrs(p, h.pax);
        this.dirTimes.push({ p, atime: mtime, mtime });
        return drain(body);
      }
      case 'symlink': {
        const target = h.linkname ?? '';
        if (target === '' || target.includes('\0')) throw new LayerFormatError(`symlink "${name}" has an empty or invalid target`);
        await this.clear(p, false);
        await this.io.symlink(target, p);
        fs.lchownSync(p, uid, gid);
        this.xattrs(p, h.pax);
        fs.lutimesSync(p, mtime, mtime);
        return drain(body);
      }
      case 'link': {
        const tcomps = safeComponents(h.linkname ?? '', `hardlink "${name}" target`);
        if (tcomps.length === 0) throw new UnsafeLayerError(`hardlink "${name}" points at the layer root`);
        const tparent = await this.parentDir(tcomps, `hardlink "${name}" -> "${h.linkname}"`, false);
        const tp = tparent + '/' + tcomps[tcomps.length - 1];
        const tst = lstatOrNull(tp);
        if (!tst) throw new UnsafeLayerError(`hardlink "${name}" points at "${h.linkname}", which is not in the layer (links must point at entries extracted before them)`);
        if (tst.isDirectory()) throw new UnsafeLayerError(`hardlink "${name}" points at the directory "${h.linkname}"`);
        if (tp === p) return drain(body);
        await this.clear(p, false);
        fs.linkSync(tp, p);
        return drain(body);
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        await this.clear(p, false);
        const fmt = type === 'fifo' ? S_IFIFO : type === 'block-device' ? S_IFBLK : S_IFCHR;
        mknod(p, fmt | (mode & 0o777), h.devmajor ?? 0, h.devminor ?? 0);
        fs.lchownSync(p, uid, gid);
        fs.chmodSync(p, mode);
        this.xattrs(p, h.pax);
        fs.lutimesSync(p, mtime, mtime);
        return drain(body);
      }
      default:
        // Vendor or unknown types carry nothing we can represent: skip them (containerd does too).
        return drain(body);
    }
  }

  /** A regular file's data and metadata with synchronous calls (syncIO); closes fd. */
  private async fileSync(fd: number, p: string, h: LayerHeader, body: AsyncIterable<Buffer>, uid: number, gid: number, mode: number, mtime: number): Promise<void> {
    try {
      let pos = 0;
      for await (const chunk of body) {
        writeFullySync(fd, chunk, pos);
        pos += chunk.length;
      }
      fs.fchownSync(fd, uid, gid);
      fs.fchmodSync(fd, mode);
      this.xattrs(p, h.pax);
      fs.futimesSync(fd, mtime, mtime);
    } finally {
      fs.closeSync(fd);
    }
  }

  private xattrs(p: string, pax: Record<string, string> | null | undefined): void {
    if (!pax) return;
    for (const [k, v] of Object.entries(pax)) {
      if (!k.startsWith('SCHILY.xattr.')) continue;
      const attr = k.slice('SCHILY.xattr.'.length);
      if (attr === '') continue;
      lsetxattr(p, attr, Buffer.from(v, 'utf8'));
    }
  }

  finish(): void {
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const d = this.dirTimes[i];
      const st = lstatOrNull(d.p);
      if (st?.isDirectory()) fs.lutimesSync(d.p, d.atime, d.mtime);
    }
  }
}

function mtimeOf(h: LayerHeader): number {
  const pm = h.pax?.mtime;
  if (pm && /^-?\d+(\.\d+)?$/.test(pm)) return Number(pm);
  return h.mtime ? h.mtime.getTime() / 1000 : 0;
}

async function drain(body: AsyncIterable<Buffer>): Promise<void> {
  for await (const _ of body) { /* discard */ }
}

/**
 * Unpack one layer from `source` (compressed or not) into `dir`, which must not exist yet.
 * Returns the diff_id; on any failure (bad tar, unsafe entry, diff_id mismatch, source error)
 * `dir` is removed and the error rethrown.
 */
export async function unpackLayer(source: AsyncIterable<Buffer> | Readable, dir: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const root = path.resolve(dir);
  fs.mkdirSync(root, { mode: 0o755 });
  try {
    return await extractInto(source, root, opts);
  } catch (e) {
    fs.rmSync(root, { recursive: true, force: true });
    throw e;
  }
}

/** Yields source's chunks unchanged, hashing them; digest() is set once the source has ended. */
function hashing(source: AsyncIterable<Buffer>): { chunks: AsyncGenerator<Buffer>; digest: () => string | undefined } {
  const h = createHash('sha256');
  let done: string | undefined;
  async function* chunks(): AsyncGenerator<Buffer> {
    for await (const c of source) {
      h.update(c);
      yield c;
    }
    done = 'sha256:' + h.digest('hex');
  }
  return { chunks: chunks(), digest: () => done };
}

async function extractInto(input: AsyncIterable<Buffer> | Readable, root: string, opts: UnpackOptions): Promise<UnpackResult> {
  const src = opts.sourceDigest ? hashing(input as AsyncIterable<Buffer>) : null;
  const source = src ? src.chunks : input;
  const hash = createHash('sha256');
  let tarSize = 0;
  let compression: Compression = 'none';
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      tarSize += chunk.length;
      cb(null, chunk);
    },
  });
  const extract = tar.extract();
  const ex = new Extractor(root, opts.syncIO ?? false);
  const feeding = pipeline(decompress(source, (c) => { compression = c; }), hasher, extract, opts.signal ? { signal: opts.signal } : {});
  feeding.catch(() => {});
  try {
    for await (const entry of extract) {
      await ex.entry(entry.header as LayerHeader, entry as unknown as AsyncIterable<Buffer>);
    }
    await feeding;
  } catch (e) {
    extract.destroy();
    await feeding.catch(() => {});
    if (e instanceof BerthError) throw e;
    const msg = (e as Error).message ?? String(e);
    if (/header|tar|Unexpected end|size/i.test(msg) && !(e as NodeJS.ErrnoException).syscall) {
      throw new LayerFormatError(`layer is not a valid tar archive: ${msg}`, { cause: e });
    }
    throw e;
  }
  ex.finish();
  const diffId = 'sha256:' + hash.digest('hex');
  if (opts.expectedDiffId && opts.expectedDiffId !== diffId) throw new DiffIdMismatchError(opts.expectedDiffId, diffId);
  const res: UnpackResult = { diffId, tarSize, compression, entries: ex.entries };
  const sd = src?.digest();
  if (sd) res.sourceDigest = sd;
  return res;
}
