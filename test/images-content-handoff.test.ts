/**
 * The content store hands its write batches to the tee (IngestOptions.onChunk) and never touches
 * them again: a tee that transfers each chunk's memory away (as the off-thread unpacker does)
 * must not change what is stored, the digest check, progress, or a resumed download's replay.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentStore, sha256Digest, type OpenResult } from '../images/content.js';
import { pseudoRandomBytes } from './fixtures/images.js';

function tmpStore(t: Test): ContentStore {
  const root = mkdtempSync(join(tmpdir(), 'berth-content-handoff-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return new ContentStore(root, { fsync: false });
}

/** open(offset) serving data from offset in uneven chunks (views into one big buffer, like a socket's). */
function opener(data: Buffer, breakAt?: number) {
  let opens = 0;
  return async (offset: number): Promise<OpenResult> => {
    const first = opens++ === 0;
    async function* body(): AsyncGenerator<Uint8Array> {
      const sizes = [1, 7000, 65536, 300_000, 123_457];
      for (let i = offset, k = 0; i < data.length; k++) {
        const n = Math.min(sizes[k % sizes.length], data.length - i);
        if (first && breakAt !== undefined && i + n > breakAt) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
        yield data.subarray(i, i + n);
        i += n;
      }
    }
    return { body: body(), offset };
  };
}

/** A tee that keeps a copy, then moves the chunk's memory away when it owns all of it. */
function transferringTee(seen: Buffer[], moved: { n: number }) {
  return (c: Uint8Array) => {
    seen.push(Buffer.from(c));
    if (c.byteOffset === 0 && c.byteLength === c.buffer.byteLength) {
      structuredClone(c.buffer, { transfer: [c.buffer as ArrayBuffer] });
      moved.n++;
    }
  };
}

t.test('a tee that transfers every batch away: same blob, digest, progress', async (t) => {
  const store = tmpStore(t);
  const data = pseudoRandomBytes(3 * 1024 * 1024 + 4321, 'handoff-1');
  const digest = sha256Digest(data);
  const seen: Buffer[] = [];
  const moved = { n: 0 };
  let last = 0;
  const r = await store.ingest(digest, data.length, opener(data), { onChunk: transferringTee(seen, moved), onProgress: (d) => { last = d; } });
  t.equal(r.digest, digest);
  t.ok(Buffer.concat(seen).equals(data), 'the tee saw every byte once, in order');
  t.ok(moved.n >= 3, `batches were the tee's to keep (${moved.n} moved)`);
  t.equal(last, data.length, 'progress reached the size');
  t.ok((await store.readBytes(digest)).equals(data), 'the stored blob is intact');
});

t.test('a body that breaks midway and a resumed partial: the replay can be transferred too', async (t) => {
  const store = tmpStore(t);
  const data = pseudoRandomBytes(2 * 1024 * 1024 + 99, 'handoff-2');
  const digest = sha256Digest(data);
  // a partial download left by a killed pull
  mkdirSync(store.ingestDir, { recursive: true });
  writeFileSync(join(store.ingestDir, digest.slice(7)), data.subarray(0, 700_000));
  const seen: Buffer[] = [];
  const moved = { n: 0 };
  const r = await store.ingest(digest, data.length, opener(data, 1_500_000), { onChunk: transferringTee(seen, moved) });
  t.equal(r.resumedFrom, 700_000);
  t.ok(Buffer.concat(seen).equals(data), 'prefix replayed, then the rest, across the break');
  t.ok((await store.readBytes(digest)).equals(data));

  // the blob exists now: a second ingest replays it from the store
  const seen2: Buffer[] = [];
  await store.ingest(digest, data.length, opener(data), { onChunk: transferringTee(seen2, { n: 0 }) });
  t.ok(Buffer.concat(seen2).equals(data), 'replay of a stored blob');
  t.ok((await store.readBytes(digest)).equals(data), 'the stored blob is untouched by the transfer');
});
