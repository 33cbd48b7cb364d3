import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { unpackLayer } from '../images/unpack.js';
import { lgetxattr, mount, umount, MNT_DETACH } from '../runtime/linux/libc.js';
import { makeRawTar, type RawEntry } from './helpers/raw-tar.js';

type Ent = RawEntry;
const makeTar = makeRawTar;

const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

function tmp(t: Test): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-unpack-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test('all entry types, modes, owners, mtimes, xattrs, whiteouts', async (t) => {
  const base = tmp(t);
  const layer = await makeTar([
    { name: './', type: 'directory', mode: 0o755 },
    { name: 'bin/', type: 'directory', mode: 0o755 },
    { name: 'bin/tool', mode: 0o4755, uid: 1000, gid: 1001, body: 'hello', pax: { 'SCHILY.xattr.user.berth': 'yes' } },
    { name: 'bin/sg', mode: 0o2711, body: 'x' },
    { name: 'tmp/', type: 'directory', mode: 0o1777, mtime: new Date(1_500_000_000_000) },
    { name: 'bin/link', type: 'symlink', linkname: '/bin/tool', uid: 5, gid: 6 },
    { name: 'bin/hard', type: 'link', linkname: 'bin/tool' },
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
    { name: 'run/fifo', type: 'fifo', mode: 0o600 },
    { name: 'etc/.wh.gone', body: '' },
    { name: 'var/.wh..wh..opq', body: '' },
    { name: '/abs/file', body: 'abs' },
  ]);
  const dir = path.join(base, 'fs');
  const r = await unpackLayer(Readable.from([layer]), dir);
  t.equal(r.diffId, sha(layer));
  t.equal(r.compression, 'none');
  const st = fs.lstatSync(path.join(dir, 'bin/tool'));
  t.equal(st.mode & 0o7777, 0o4755, 'setuid kept after chown');
  t.equal(st.uid, 1000);
  t.equal(st.gid, 1001);
  t.equal(st.mtimeMs, 1_600_000_000_000);
  t.equal(fs.readFileSync(path.join(dir, 'bin/tool'), 'utf8'), 'hello');
  t.equal(lgetxattr(path.join(dir, 'bin/tool'), 'user.berth')?.toString(), 'yes');
  t.equal(fs.lstatSync(path.join(dir, 'bin/sg')).mode & 0o7777, 0o2711);
  const tmpd = fs.lstatSync(path.join(dir, 'tmp'));
  t.equal(tmpd.mode & 0o7777, 0o1777, 'sticky');
  t.equal(tmpd.mtimeMs, 1_500_000_000_000, 'dir mtime fixed up at the end');
  t.equal(fs.lstatSync(path.join(dir, 'bin')).mtimeMs, 1_600_000_000_000, 'parent dir mtime not disturbed by children');
  const ln = fs.lstatSync(path.join(dir, 'bin/link'));
  t.ok(ln.isSymbolicLink());
  t.equal(fs.readlinkSync(path.join(dir, 'bin/link')), '/bin/tool');
  t.equal(ln.uid, 5);
  t.equal(fs.lstatSync(path.join(dir, 'bin/hard')).ino, st.ino, 'hardlink shares the inode');
  const nul = fs.lstatSync(path.join(dir, 'dev/null'));
  t.ok(nul.isCharacterDevice());
  t.equal(nul.rdev, 0x103);
  t.equal(nul.mode & 0o7777, 0o666);
  const sda = fs.lstatSync(path.join(dir, 'dev/sda'));
  t.ok(sda.isBlockDevice());
  t.equal(sda.gid, 6);
  t.ok(fs.lstatSync(path.join(dir, 'run/fifo')).isFIFO());
  const wh = fs.lstatSync(path.join(dir, 'etc/gone'));
  t.ok(wh.isCharacterDevice(), 'whiteout is a char device');
  t.equal(wh.rdev, 0, 'whiteout is 0:0');
  t.notOk(fs.existsSync(path.join(dir, 'etc/.wh.gone')));
  t.equal(lgetxattr(path.join(dir, 'var'), 'trusted.overlay.opaque')?.toString(), 'y');
  t.notOk(fs.existsSync(path.join(dir, 'var/.wh..wh..opq')));
  t.equal(fs.readFileSync(path.join(dir, 'abs/file'), 'utf8'), 'abs', 'absolute name made relative');
});

t.test('gzip, zstd and plain tar are detected by magic bytes', async (t) => {
  const base = tmp(t);
  const layer = await makeTar([{ name: 'a', body: 'A'.repeat(100000) }]);
  const gz = zlib.gzipSync(layer);
  fs.writeFileSync(path.join(base, 'l.tar'), layer);
  execFileSync('zstd', ['-q', '-f', path.join(base, 'l.tar'), '-o', path.join(base, 'l.tar.zst')]);
  const zst = fs.readFileSync(path.join(base, 'l.tar.zst'));
  for (const [kind, blob] of [['gzip', gz], ['zstd', zst], ['none', layer]] as const) {
    // feed in small chunks so the sniffer has to assemble the magic
    const chunks: Buffer[] = [];
    for (let i = 0, n = 1; i < blob.length; i += n, n = Math.min(n * 3, 8192)) chunks.push(blob.subarray(i, i + n));
    const dir = path.join(base, kind);
    const r = await unpackLayer(Readable.from(chunks), dir, { expectedDiffId: sha(layer) });
    t.equal(r.compression, kind);
    t.equal(r.diffId, sha(layer));
    t.equal(fs.readFileSync(path.join(dir, 'a'), 'utf8').length, 100000);
  }
  await t.rejects(unpackLayer(Readable.from([zst.subarray(0, 60)]), path.join(base, 'trunc')), { code: 'EDECOMPRESS' });
  t.notOk(fs.existsSync(path.join(base, 'trunc')));
});

t.test('diff_id mismatch fails and leaves nothing', async (t) => {
  const base = tmp(t);
  const layer = await makeTar([{ name: 'a', body: 'x' }]);
  await t.rejects(unpackLayer(Readable.from([zlib.gzipSync(layer)]), path.join(base, 'fs'), { expectedDiffId: 'sha256:' + '0'.repeat(64) }), { code: 'EDIFFID' });
  t.notOk(fs.existsSync(path.join(base, 'fs')));
});

t.test('hostile layers are refused and write nothing outside', async (t) => {
  const base = tmp(t);
  const host = path.join(base, 'host');
  fs.mkdirSync(host);
  fs.writeFileSync(path.join(host, 'keep'), 'orig');
  const cases: [string, Ent[], RegExp][] = [
    ['dotdot', [{ name: '../../host/x', body: 'bad' }], /escapes the layer/],
    ['dotdot-mid', [{ name: 'a/../../host/x', body: 'bad' }], /escapes the layer/],
    ['symlink-escape', [{ name: 'evil', type: 'symlink', linkname: host }, { name: 'evil/keep', body: 'pwned' }], /symlink "evil"/],
    ['symlink-chain', [
      { name: 'a', type: 'symlink', linkname: 'b' }, { name: 'b', type: 'symlink', linkname: host },
      { name: 'a/keep', body: 'pwned' }], /symlink "a"/],
    ['symlink-dir-escape', [{ name: 'd', type: 'symlink', linkname: '../../../../../../' + host }, { name: 'd/new/', type: 'directory' }], /symlink "d"/],
    ['hardlink-out', [{ name: 'pw', type: 'link', linkname: '/etc/passwd' }], /not in the layer/],
    ['hardlink-dotdot', [{ name: 'pw', type: 'link', linkname: '../../../etc/passwd' }], /escapes the layer/],
    ['hardlink-through-symlink', [{ name: 'h', type: 'symlink', linkname: host }, { name: 'pw', type: 'link', linkname: 'h/keep' }], /symlink "h"/],
    ['whiteout-through-symlink', [{ name: 'h', type: 'symlink', linkname: host }, { name: 'h/.wh.keep', body: '' }], /symlink "h"/],
  ];
  for (const [label, ents, re] of cases) {
    const dir = path.join(base, 'snap-' + label);
    await t.rejects(unpackLayer(Readable.from([await makeTar(ents)]), dir), re, label);
    t.notOk(fs.existsSync(dir), `${label}: partial snapshot removed`);
  }
  t.same(fs.readdirSync(host), ['keep'], 'nothing created in the host dir');
  t.equal(fs.readFileSync(path.join(host, 'keep'), 'utf8'), 'orig', 'host file untouched');
  t.notOk(fs.existsSync(path.join(base, 'x')));

  // a symlink that is later replaced by a file: the file entry replaces the link, it does not write through it
  const dir = path.join(base, 'replace');
  await unpackLayer(Readable.from([await makeTar([{ name: 'f', type: 'symlink', linkname: path.join(host, 'keep') }, { name: 'f', body: 'mine' }])]), dir);
  t.equal(fs.readFileSync(path.join(host, 'keep'), 'utf8'), 'orig');
  t.equal(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'mine');
});

t.test('garbage and truncated tars fail cleanly', async (t) => {
  const base = tmp(t);
  const junk = Buffer.alloc(1024, 0x41);
  await t.rejects(unpackLayer(Readable.from([junk]), path.join(base, 'a')), { code: 'ELAYERFORMAT' });
  t.notOk(fs.existsSync(path.join(base, 'a')));
  const layer = await makeTar([{ name: 'big', body: Buffer.alloc(100000, 1) }]);
  await t.rejects(unpackLayer(Readable.from([layer.subarray(0, 50000)]), path.join(base, 'b')), { code: 'ELAYERFORMAT' });
  t.notOk(fs.existsSync(path.join(base, 'b')));
  const gz = zlib.gzipSync(layer);
  await t.rejects(unpackLayer(Readable.from([gz.subarray(0, gz.length - 20)]), path.join(base, 'c')));
  t.notOk(fs.existsSync(path.join(base, 'c')));
  // a 5000-byte name (PAX path) and an over-long component are refused
  const long = await makeTar([{ name: 'a/' + 'b'.repeat(4998), body: 'x' }]);
  await t.rejects(unpackLayer(Readable.from([long]), path.join(base, 'd')), /name is 5000 bytes long/);
  const comp = await makeTar([{ name: 'x'.repeat(300), body: 'x' }]);
  await t.rejects(unpackLayer(Readable.from([comp]), path.join(base, 'e')), /longer than 255 bytes/);
  // a PAX header larger than tar-stream accepts
  const hugePax = await makeTar([{ name: 'p', body: 'x', pax: { 'SCHILY.xattr.user.big': 'v'.repeat(2 * 1024 * 1024) } }]);
  await t.rejects(unpackLayer(Readable.from([hugePax]), path.join(base, 'f')));
  for (const d of ['d', 'e', 'f']) t.notOk(fs.existsSync(path.join(base, d)), `${d} removed`);
});

t.test('overlay of two unpacked layers hides whited-out files', async (t) => {
  const base = tmp(t);
  await unpackLayer(Readable.from([await makeTar([
    { name: 'etc/', type: 'directory', mode: 0o755 },
    { name: 'etc/a', body: 'a' }, { name: 'etc/b', body: 'b' },
    { name: 'opq/', type: 'directory', mode: 0o755 }, { name: 'opq/old', body: 'old' },
  ])]), path.join(base, 'l0'));
  await unpackLayer(Readable.from([await makeTar([
    { name: 'etc/.wh.a', body: '' },
    { name: 'opq/.wh..wh..opq', body: '' }, { name: 'opq/new', body: 'new' },
  ])]), path.join(base, 'l1'));
  const merged = path.join(base, 'merged');
  fs.mkdirSync(merged);
  mount('overlay', merged, 'overlay', 0, `lowerdir=${base}/l1:${base}/l0`);
  t.teardown(() => { umount(merged, MNT_DETACH); });
  t.same(fs.readdirSync(path.join(merged, 'etc')).sort(), ['b']);
  t.same(fs.readdirSync(path.join(merged, 'opq')).sort(), ['new']);
});
