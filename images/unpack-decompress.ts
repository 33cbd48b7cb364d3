/**
 * Streaming decompression for layer blobs: sniffs the first bytes (1f 8b gzip, 28 b5 2f fd zstd,
 * anything else is a plain tar) and yields the uncompressed bytes. gzip uses node:zlib. Node 20
 * has no zstd in zlib, so zstd goes through Debian's `zstd -dc` binary as a stream filter: the
 * one sanctioned exec in images/ (see ARCHITECTURE.md); its exit status and stderr are checked.
 */
import { spawn } from 'node:child_process';
import { pipeline } from 'node:stream/promises';
import { Duplex, PassThrough, Readable } from 'node:stream';
import zlib from 'node:zlib';
import { BerthError } from '../runtime/errors.js';

export type Compression = 'gzip' | 'zstd' | 'none';

/**
 * zlib's output buffer size. The default (16 KiB) costs a threadpool round trip and a stream push
 * per 16 KiB of tar: on a 119 MB pull that was ~330 ms of CPU against ~80 ms with 256 KiB.
 */
const GUNZIP_CHUNK = 256 * 1024;

export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

export class DecompressError extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EDECOMPRESS', message, options);
  }
}

/** A Duplex around `zstd -dc`: compressed bytes in, tar bytes out; fails on a non-zero exit. */
export function zstdDecompressor(): Duplex {
  const child = spawn('zstd', ['-dcq'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { if (stderr.length < 4096) stderr += d; });
  // The readable side ends only once zstd has exited 0, so a truncated input is an error, not EOF.
  const out = new PassThrough();
  child.stdout.pipe(out, { end: false });
  const duplex = Duplex.from({ writable: child.stdin, readable: out });
  child.on('error', (e: NodeJS.ErrnoException) => {
    duplex.destroy(new DecompressError(e.code === 'ENOENT'
      ? 'zstd layer: the `zstd` binary is not installed (apt-get install zstd)'
      : `zstd layer: cannot run zstd: ${e.message}`, { cause: e }));
  });
  child.on('close', (code, signal) => {
    if (code === 0) out.end();
    else duplex.destroy(new DecompressError(`zstd layer: decompression failed (${signal ?? `exit ${code}`}): ${stderr.trim() || 'corrupt data'}`));
  });
  duplex.on('close', () => { if (child.exitCode === null) child.kill('SIGKILL'); });
  return duplex;
}

async function* prepend(head: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  if (head.length) yield head;
  for (;;) {
    const r = await rest.next();
    if (r.done) return;
    yield r.value;
  }
}

/**
 * Decompress `source` (whatever its compression; detected from the magic bytes) into a stream of
 * uncompressed bytes. `onCompression` reports what was detected.
 */
export async function* decompress(source: AsyncIterable<Buffer>, onCompression?: (c: Compression) => void): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  const parts: Buffer[] = [];
  let have = 0;
  while (have < 4) {
    const r = await it.next();
    if (r.done) break;
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    parts.push(b);
    have += b.length;
  }
  const head = Buffer.concat(parts);
  const kind = detectCompression(head);
  onCompression?.(kind);
  if (kind === 'none') {
    yield* prepend(head, it);
    return;
  }
  const d: Duplex = kind === 'gzip' ? zlib.createGunzip({ chunkSize: GUNZIP_CHUNK }) : zstdDecompressor();
  const feeding = pipeline(Readable.from(prepend(head, it), { objectMode: false }), d).catch((e: unknown) => {
    d.destroy(e instanceof Error ? e : new Error(String(e)));
    throw e;
  });
  feeding.catch(() => {});
  try {
    for await (const chunk of d) yield chunk as Buffer;
    await feeding;
  } catch (e) {
    if (e instanceof BerthError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code?.startsWith('Z_')) throw new DecompressError(`${kind} layer: ${err.message}`, { cause: e });
    throw e;
  } finally {
    d.destroy();
  }
}
