import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { unpackLayerOffThread } from '../images/unpack-offthread.js';
import { unpackLayer, DiffIdMismatchError, UnsafeLayerError, LayerFormatError } from '../images/unpack.js';
import { DecompressError } from '../images/unpack-decompress.js';
import { lgetxattr } from '../runtime/linux/libc.js';
import { makeRawTar, type RawEntry } from './helpers/raw-tar.js';

type Ent = RawEntry;
const makeTar = makeRawTar;

const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

function tmp(t: Test): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-unpack-ot-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Every path under dir with type, mode, owner, mtime, size, link target, content hash, xattrs. */
function describeTree(dir: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const walk = (rel: string) => {
    const p = path.join(dir, rel);
    const st = fs.lstatSync(p);
    const e: Record<string, unknown> = { rel, mode: st.mode, uid: st.uid, gid: st.gid, rdev: st.rdev, nlink: st.nlink };
    const whiteout = st.isCharacterDevice() && st.rdev === 0; // its mtime is the time of the unpack
    if (!st.isDirectory() && !whiteout) e.mtime = st.mtimeMs;
    if (st.isFile()) { e.size = st.size; e.sha = sha(fs.readFileSync(p)); e.x = lgetxattr(p, 'user.berth')?.toString() ?? null; }
    if (st.isSymbolicLink()) e.link = fs.readlinkSync(p);
    if (st.isDirectory()) {
      e.opaque = lgetxattr(p, 'trusted.overlay.opaque')?.toString() ?? null;
      for (const n of fs.readdirSync(p).sort()) walk(path.join(rel, n));
    }
    out.push(e);
  };
  walk('.');
  return out;
}

const everything: Ent[] = [
  { name: './', type: 'directory', mode: 0o755 },
  { name: 'bin/', type: 'directory', mode: 0o755 },
  { name: 'bin/tool', mode: 0o4755, uid: 1000, gid: 1001, body: 'hello', pax: { 'SCHILY.xattr.user.berth': 'yes' } },
  { name: 'bin/big', mode: 0o644, body: Buffer.alloc(3 * 1024 * 1024 + 17, 7) },
  { name: 'tmp/', type: 'directory', mode: 0o1777, mtime: new Date(1_500_000_000_000) },
  { name: 'bin/link', type: 'symlink', linkname: '/bin/tool', uid: 5, gid: 6 },
  { name: 'bin/hard', type: 'link', linkname: 'bin/tool' },
  { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
  { name: 'run/fifo', type: 'fifo', mode: 0o600 },
  { name: 'etc/.wh.gone', body: '' },
  { name: 'var/.wh..wh..opq', body: '' },
  { name: 'f', type: 'symlink', linkname: '/etc/passwd' },
  { name: 'f', body: 'replaced the link' },
];

t.test('a worker thread unpacks to exactly the tree the calling thread does', async (t) => {
  const base = tmp(t);
  const layer = await makeTar(everything);
  const gz = zlib.gzipSync(layer);
  const chunks: Buffer[] = [];
  for (let i = 0, n = 1; i < gz.length; i += n, n = Math.min(n * 3, 300_000)) chunks.push(gz.subarray(i, i + n));
  const a = await unpackLayer(Readable.from(chunks), path.join(base, 'here'), { expectedDiffId: sha(layer) });
  const b = await unpackLayerOffThread(Readable.from(chunks), path.join(base, 'there'), { expectedDiffId: sha(layer) });
  t.same(b, a, 'same diff_id, size, compression, entry count');
  t.equal(b.diffId, sha(layer));
  t.equal(b.compression, 'gzip');
  t.same(describeTree(path.join(base, 'there')), describeTree(path.join(base, 'here')), 'same tree');
  t.equal(fs.readFileSync(path.join(base, 'there', 'f'), 'utf8'), 'replaced the link');
});

t.test('several layers at once (more than the pool has workers)', async (t) => {
  const base = tmp(t);
  const layers = await Promise.all([0, 1, 2, 3, 4].map((i) => makeTar([
    { name: `d${i}/`, type: 'directory', mode: 0o755 },
    { name: `d${i}/data`, body: Buffer.alloc(1_500_000 + i, i) },
    ...Array.from({ length: 40 }, (_, k) => ({ name: `d${i}/l${k}`, type: 'symlink' as const, linkname: 'data' })),
  ])));
  const res = await Promise.all(layers.map((l, i) => unpackLayerOffThread(Readable.from([zlib.gzipSync(l)]), path.join(base, `l${i}`), { expectedDiffId: sha(l) })));
  for (let i = 0; i < layers.length; i++) {
    t.equal(res[i].diffId, sha(layers[i]));
    t.equal(fs.statSync(path.join(base, `l${i}`, `d${i}`, 'data')).size, 1_500_000 + i);
    t.equal(fs.readlinkSync(path.join(base, `l${i}`, `d${i}`, 'l39')), 'data');
  }
});

t.test('errors keep their class and code, and leave nothing', async (t) => {
  const base = tmp(t);
  const host = path.join(base, 'host');
  fs.mkdirSync(host);
  fs.writeFileSync(path.join(host, 'keep'), 'orig');

  const unsafe: [string, Ent[], RegExp][] = [
    ['dotdot', [{ name: '../../host/x', body: 'bad' }], /escapes the layer/],
    ['symlink-escape', [{ name: 'evil', type: 'symlink', linkname: host }, { name: 'evil/keep', body: 'pwned' }], /symlink "evil"/],
    ['hardlink-out', [{ name: 'pw', type: 'link', linkname: '/etc/passwd' }], /not in the layer/],
    ['whiteout-through-symlink', [{ name: 'h', type: 'symlink', linkname: host }, { name: 'h/.wh.keep', body: '' }], /symlink "h"/],
  ];
  for (const [label, ents, re] of unsafe) {
    const dir = path.join(base, 'snap-' + label);
    const err = await unpackLayerOffThread(Readable.from([await makeTar(ents)]), dir).then(() => null, (e: unknown) => e);
    t.type(err, UnsafeLayerError, label);
    t.match(err, { code: 'EUNSAFELAYER', message: re }, label);
    t.notOk(fs.existsSync(dir), `${label}: partial snapshot removed`);
  }
  t.same(fs.readdirSync(host), ['keep'], 'nothing created in the host dir');
  t.equal(fs.readFileSync(path.join(host, 'keep'), 'utf8'), 'orig');

  const layer = await makeTar([{ name: 'a', body: 'x' }]);
  const bad = 'sha256:' + '0'.repeat(64);
  const e1 = await unpackLayerOffThread(Readable.from([zlib.gzipSync(layer)]), path.join(base, 'diff'), { expectedDiffId: bad }).then(() => null, (e: unknown) => e);
  t.type(e1, DiffIdMismatchError);
  t.match(e1, { code: 'EDIFFID', expected: bad, actual: sha(layer) });
  t.notOk(fs.existsSync(path.join(base, 'diff')));

  const e2 = await unpackLayerOffThread(Readable.from([Buffer.alloc(1024, 0x41)]), path.join(base, 'junk')).then(() => null, (e: unknown) => e);
  t.type(e2, LayerFormatError);
  t.notOk(fs.existsSync(path.join(base, 'junk')));

  const big = zlib.gzipSync(await makeTar([{ name: 'big', body: Buffer.alloc(100000, 1) }]));
  const e3 = await unpackLayerOffThread(Readable.from([big.subarray(0, big.length - 20)]), path.join(base, 'trunc')).then(() => null, (e: unknown) => e);
  t.ok(e3 instanceof DecompressError || e3 instanceof LayerFormatError, `truncated gzip: ${String(e3)}`);
  t.notOk(fs.existsSync(path.join(base, 'trunc')));
});

t.test('a source that fails midway: its error is thrown and the dir is removed', async (t) => {
  const base = tmp(t);
  const gz = zlib.gzipSync(await makeTar([{ name: 'a', body: Buffer.alloc(6 * 1024 * 1024, 3) }, { name: 'b', body: 'b' }]), { level: 0 });
  async function* broken(): AsyncGenerator<Buffer> {
    yield gz.subarray(0, 3 * 1024 * 1024);
    await new Promise((r) => setTimeout(r, 20));
    throw Object.assign(new Error('connection reset by registry'), { code: 'ECONNRESET' });
  }
  const dir = path.join(base, 'fs');
  await t.rejects(unpackLayerOffThread(broken(), dir), { message: 'connection reset by registry', code: 'ECONNRESET' });
  t.notOk(fs.existsSync(dir));
});

t.test('abort signal stops the unpack and removes the dir', async (t) => {
  const base = tmp(t);
  const ac = new AbortController();
  async function* slow(): AsyncGenerator<Buffer> {
    const tarb = await makeTar([{ name: 'a', body: Buffer.alloc(2 * 1024 * 1024, 3) }]);
    yield tarb.subarray(0, 1_500_000);
    ac.abort(new Error('user pressed ^C'));
    await new Promise((r) => setTimeout(r, 50));
    yield tarb.subarray(1_500_000);
  }
  const dir = path.join(base, 'fs');
  await t.rejects(unpackLayerOffThread(slow(), dir, { signal: ac.signal }), /\^C|abort/i);
  t.notOk(fs.existsSync(dir));
});

t.test('a file system error in the worker keeps its code, syscall and path', async (t) => {
  const base = tmp(t);
  const dir = path.join(base, 'missing-parent', 'fs');
  const layer = await makeTar([{ name: 'a', body: 'x' }]);
  const here = await unpackLayer(Readable.from([layer]), dir).then(() => null, (e: unknown) => e as NodeJS.ErrnoException);
  const there = await unpackLayerOffThread(Readable.from([layer]), dir).then(() => null, (e: unknown) => e as NodeJS.ErrnoException);
  t.ok(here && there);
  t.match(there, { code: here!.code, syscall: here!.syscall, path: here!.path, errno: here!.errno });
  t.equal(there!.code, 'ENOENT');
});
