import t, { type Test } from 'tap';
import { createServer, get, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { ContentStore, DigestMismatchError, BlobSizeError, sha256Digest, type OpenResult } from '../images/content.js';
import { pseudoRandomBytes } from './fixtures/images.js';

interface Served { ranges: (string | undefined)[]; count: number }

/** A tiny blob server: /blob serves `data` honouring Range unless ignoreRange; slowMs delays the body. */
async function blobServer(t: Test, data: Buffer, opts: { ignoreRange?: boolean; slowMs?: number } = {}): Promise<{ url: string; served: Served }> {
  const served: Served = { ranges: [], count: 0 };
  const srv = createServer((req, res) => {
    served.count++;
    served.ranges.push(req.headers.range);
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const send = () => {
      if (m && !opts.ignoreRange) {
        const start = Number(m[1]);
        res.writeHead(206, { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}`, 'content-length': data.length - start });
        res.end(data.subarray(start));
      } else {
        res.writeHead(200, { 'content-length': data.length });
        res.end(data);
      }
    };
    if (opts.slowMs) setTimeout(send, opts.slowMs); else send();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/blob`, served };
}

/** open(offset) over node:http, reporting the offset the server really started at. */
function opener(url: string) {
  return (offset: number) => new Promise<OpenResult>((resolve, reject) => {
    get(url, { headers: offset > 0 ? { range: `bytes=${offset}-` } : {} }, (res: IncomingMessage) => {
      resolve({ body: res, offset: res.statusCode === 206 ? offset : 0 });
    }).on('error', reject);
  });
}

function tmpStore(t: Test): { root: string; store: ContentStore } {
  const root = mkdtempSync(join(tmpdir(), 'berth-content-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return { root, store: new ContentStore(root) };
}

t.test('ingest verifies the digest; a corrupt blob leaves nothing behind', async (t) => {
  const { store } = tmpStore(t);
  const good = pseudoRandomBytes(300_000, 'content-1');
  const digest = sha256Digest(good);
  const bad = Buffer.from(good);
  bad[1234] ^= 0xff;
  const { url } = await blobServer(t, bad);
  const err = await store.ingest(digest, good.length, opener(url)).catch((e: unknown) => e);
  t.ok(err instanceof DigestMismatchError, 'DigestMismatchError');
  t.equal((err as DigestMismatchError).code, 'EDIGEST');
  t.match((err as Error).message, new RegExp(`expected ${digest}, got ${sha256Digest(bad)}`));
  t.notOk(await store.has(digest));
  t.same(readdirSync(store.blobsDir), [], 'nothing under blobs/');
  t.same(readdirSync(store.ingestDir), [], 'partial, sidecar and lock removed');
});

t.test('ingest of a good blob, with progress and a tee that sees every byte', async (t) => {
  const { store } = tmpStore(t);
  const data = pseudoRandomBytes(500_000, 'content-2');
  const digest = sha256Digest(data);
  const { url } = await blobServer(t, data);
  const seen: Buffer[] = [];
  let last = 0;
  const r = await store.ingest(digest, data.length, opener(url), { onChunk: (c) => { seen.push(Buffer.from(c)); }, onProgress: (n) => { last = n; } });
  t.equal(r.fetched, data.length);
  t.equal(last, data.length);
  t.ok(Buffer.concat(seen).equals(data), 'tee saw the blob');
  t.ok((await store.readBytes(digest)).equals(data));
  t.equal(await store.size(digest), data.length);
  t.same(await store.list(), [{ digest, size: data.length }]);
  // already present: no fetch, the tee is replayed from disk
  const seen2: Buffer[] = [];
  const r2 = await store.ingest(digest, data.length, () => Promise.reject(new Error('must not fetch')), { onChunk: (c) => { seen2.push(Buffer.from(c)); } });
  t.equal(r2.fetched, 0);
  t.ok(Buffer.concat(seen2).equals(data));
  t.ok(await store.delete(digest));
  t.notOk(await store.has(digest));
});

t.test('too many bytes → BlobSizeError, partial removed', async (t) => {
  const { store } = tmpStore(t);
  const data = pseudoRandomBytes(10_000, 'content-3');
  const { url } = await blobServer(t, data);
  const err = await store.ingest(sha256Digest(data.subarray(0, 5000)), 5000, opener(url)).catch((e: unknown) => e);
  t.ok(err instanceof BlobSizeError);
  t.same(readdirSync(store.ingestDir), []);
});

t.test('resumes a partial download with Range', async (t) => {
  const { store } = tmpStore(t);
  const data = pseudoRandomBytes(400_000, 'content-4');
  const digest = sha256Digest(data);
  mkdirSync(store.ingestDir, { recursive: true });
  writeFileSync(join(store.ingestDir, digest.slice(7)), data.subarray(0, 150_000));
  const { url, served } = await blobServer(t, data);
  const seen: Buffer[] = [];
  const r = await store.ingest(digest, data.length, opener(url), { onChunk: (c) => { seen.push(Buffer.from(c)); } });
  t.same(served.ranges, ['bytes=150000-'], 'one Range request from the partial length');
  t.equal(r.resumedFrom, 150_000);
  t.equal(r.fetched, 250_000);
  t.ok(Buffer.concat(seen).equals(data), 'tee got the prefix replayed, then the rest');
  t.ok((await store.readBytes(digest)).equals(data));
});

t.test('server ignoring Range: restart from 0', async (t) => {
  const { store } = tmpStore(t);
  const data = pseudoRandomBytes(200_000, 'content-5');
  const digest = sha256Digest(data);
  mkdirSync(store.ingestDir, { recursive: true });
  writeFileSync(join(store.ingestDir, digest.slice(7)), Buffer.alloc(50_000)); // garbage prefix
  const { url, served } = await blobServer(t, data, { ignoreRange: true });
  const r = await store.ingest(digest, data.length, opener(url));
  t.same(served.ranges, ['bytes=50000-']);
  t.equal(r.fetched, data.length);
  t.ok((await store.readBytes(digest)).equals(data));
});

t.test('a body that breaks mid-way is resumed', async (t) => {
  const { store } = tmpStore(t);
  const data = pseudoRandomBytes(300_000, 'content-6');
  const digest = sha256Digest(data);
  const { url, served } = await blobServer(t, data);
  let first = true;
  const open = async (offset: number): Promise<OpenResult> => {
    const res = await opener(url)(offset);
    if (!first) return res;
    first = false;
    const body = (res as unknown as { body: IncomingMessage }).body;
    // deliver ~100 KB, then fail like a reset connection
    async function* broken() {
      let n = 0;
      for await (const c of body) {
        yield c as Buffer;
        n += (c as Buffer).length;
        if (n > 100_000) { body.destroy(); throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }); }
      }
    }
    return { body: broken(), offset };
  };
  await store.ingest(digest, data.length, open);
  t.equal(served.count, 2);
  t.match(served.ranges[1] ?? '', /^bytes=\d+-$/, 'second request is a Range');
  t.ok((await store.readBytes(digest)).equals(data));
});

t.test('concurrent ingests of one digest download once', async (t) => {
  const { store } = tmpStore(t);
  const data = pseudoRandomBytes(200_000, 'content-7');
  const digest = sha256Digest(data);
  const { url, served } = await blobServer(t, data, { slowMs: 100 });
  const tees = [[], [], []] as Buffer[][];
  const rs = await Promise.all(tees.map((tee) => store.ingest(digest, data.length, opener(url), { onChunk: (c) => { tee.push(Buffer.from(c)); } })));
  t.equal(served.count, 1, 'one download');
  t.equal(rs.filter((r) => r.fetched > 0).length, 1);
  for (const tee of tees) t.ok(Buffer.concat(tee).equals(data), 'every caller saw the bytes');
});

t.test('across processes: a held lock makes the second ingest wait, a dead owner is stale', async (t) => {
  const { root, store } = tmpStore(t);
  const data = pseudoRandomBytes(50_000, 'content-8');
  const digest = sha256Digest(data);
  mkdirSync(store.ingestDir, { recursive: true });
  const lock = join(store.ingestDir, `${digest.slice(7)}.lock`);
  // a live "other process" holds the lock, then finishes the blob
  const other = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => { other.kill('SIGKILL'); });
  writeFileSync(lock, `${other.pid}\n`);
  const { url, served } = await blobServer(t, data);
  const p = store.ingest(digest, data.length, opener(url));
  await new Promise((r) => setTimeout(r, 300));
  t.equal(served.count, 0, 'waits while the owner lives');
  const other2 = new ContentStore(root);
  await other2.writeBlob(data); // the owner completes the blob
  rmSync(lock);
  const r = await p;
  t.equal(r.fetched, 0, 'no second download');
  t.equal(served.count, 0);

  // a lock left by a dead process is taken over
  const data2 = pseudoRandomBytes(10_000, 'content-9');
  const d2 = sha256Digest(data2);
  const dead = spawn('true');
  await new Promise((r) => dead.on('exit', r));
  writeFileSync(join(store.ingestDir, `${d2.slice(7)}.lock`), `${dead.pid}\n`);
  const { url: url2 } = await blobServer(t, data2);
  const r2 = await store.ingest(d2, data2.length, opener(url2));
  t.equal(r2.fetched, data2.length);
  t.notOk(existsSync(join(store.ingestDir, `${d2.slice(7)}.lock`)), 'lock released');
});

t.test('writeBlob, readJSON and gcIngest', async (t) => {
  const { store } = tmpStore(t);
  const { digest, size } = await store.writeBlob('{"a":1}');
  t.equal(size, 7);
  t.same(await store.readJSON(digest), { a: 1 });
  await t.rejects(store.writeBlob('x', sha256Digest('y')), DigestMismatchError);
  await t.rejects(store.readBytes(sha256Digest('nope')), { code: 'ENOTFOUND' });
  t.throws(() => store.path('sha256:xyz'), { code: 'EINVALIDDIGEST' });
  const old = join(store.ingestDir, 'f'.repeat(64));
  writeFileSync(old, 'partial');
  const past = new Date(Date.now() - 3600_000);
  (await import('node:fs')).utimesSync(old, past, past);
  t.equal((await store.listIngests()).length, 1);
  t.same(await store.gcIngest(60_000), ['f'.repeat(64)]);
  t.notOk(existsSync(old));
  t.ok(statSync(store.blobsDir).isDirectory());
});
