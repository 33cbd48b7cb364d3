/**
 * Worker-thread side of off-thread layer unpacking (unpack-offthread.ts is the other side).
 * Runs unpackLayer() with synchronous inode/data calls for each job the main thread sends, so
 * gunzip glue, diff_id hashing, tar parsing and the file system calls of an unpack leave the
 * main thread (which downloads and hashes the blobs).
 *
 * Protocol (messages on parentPort; `id` names the job):
 *   worker → main  { t: 'ready' }                             sent once, when this module has loaded
 *   main → worker  { t: 'start', id, dir, expectedDiffId?, sourceDigest? }  begin unpacking into dir (must not exist)
 *                  { t: 'data', id, buf: ArrayBuffer }         next bytes of the layer blob (transferred)
 *                  { t: 'end', id }                            no more bytes
 *                  { t: 'abort', id, message }                 stop; dir is removed
 *   worker → main  { t: 'ack', id, n }                         n bytes of data were consumed (flow control)
 *                  { t: 'done', id, result: UnpackResult }
 *                  { t: 'fail', id, err: SerializedError }     dir has been removed
 */
import { parentPort } from 'node:worker_threads';
import { BerthError } from '../runtime/errors.js';
import { unpackLayer } from './unpack.js';
import type { SerializedError, ToWorker, FromWorker } from './unpack-offthread.js';

if (!parentPort) throw new Error('unpack-worker.ts must run as a worker thread');
const port = parentPort;
const post = (m: FromWorker) => port.postMessage(m);

/** An async iterable fed by 'data' messages; acknowledges bytes as the unpacker takes them. */
class Feed implements AsyncIterable<Buffer> {
  private readonly queue: Buffer[] = [];
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly id: number) {}

  push(b: Buffer): void { this.queue.push(b); this.notify(); }
  end(): void { this.ended = true; this.notify(); }
  fail(e: Error): void { this.error = e; this.notify(); }
  private notify(): void { const w = this.wake; this.wake = null; w?.(); }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.error) throw this.error;
      const b = this.queue.shift();
      if (b) {
        post({ t: 'ack', id: this.id, n: b.length });
        yield b;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => { this.wake = r; });
    }
  }
}

interface Job { feed: Feed; abort: AbortController }
const jobs = new Map<number, Job>();

function serialize(e: unknown): SerializedError {
  const x = (e ?? {}) as Record<string, unknown>;
  const out: SerializedError = { name: typeof x.name === 'string' ? x.name : 'Error', message: typeof x.message === 'string' ? x.message : String(e) };
  if (e instanceof BerthError) out.berth = true;
  for (const k of ['code', 'syscall', 'path', 'expected', 'actual'] as const) if (typeof x[k] === 'string') out[k] = x[k];
  if (typeof x.errno === 'number') out.errno = x.errno;
  return out;
}

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'start': {
      const feed = new Feed(m.id);
      const abort = new AbortController();
      jobs.set(m.id, { feed, abort });
      unpackLayer(feed, m.dir, { expectedDiffId: m.expectedDiffId, sourceDigest: m.sourceDigest, signal: abort.signal, syncIO: true }).then(
        (result) => { jobs.delete(m.id); post({ t: 'done', id: m.id, result }); },
        (e: unknown) => { jobs.delete(m.id); post({ t: 'fail', id: m.id, err: serialize(e) }); },
      );
      return;
    }
    case 'data': jobs.get(m.id)?.feed.push(Buffer.from(m.buf)); return;
    case 'end': jobs.get(m.id)?.feed.end(); return;
    case 'abort': {
      const j = jobs.get(m.id);
      if (!j) return;
      const e = new Error(m.message);
      j.feed.fail(e);
      j.abort.abort(e);
      return;
    }
  }
});

post({ t: 'ready' });
