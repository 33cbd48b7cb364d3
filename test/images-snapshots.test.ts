import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import tar from 'tar-stream';
import { ImageDB } from '../images/db.js';
import { chainIds, Snapshotter } from '../images/snapshots.js';

type Ent = Partial<tar.Header> & { name: string; body?: string };

async function makeTar(entries: Ent[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => { for await (const c of pack) chunks.push(c as Buffer); })();
  for (const { body, ...h } of entries) {
    await new Promise<void>((res, rej) => pack.entry({ mtime: new Date(0), ...h }, body ?? '', (e) => (e ? rej(e) : res())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}
const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

function setup(t: Test): { root: string; db: ImageDB; snaps: Snapshotter } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-snap-'));
  const db = ImageDB.open(root);
  const snaps = new Snapshotter(root, db);
  t.teardown(() => { db.close(); fs.rmSync(root, { recursive: true, force: true }); });
  return { root, db, snaps };
}

t.test('chain ids follow the OCI image spec', async (t) => {
  const d = ['sha256:' + 'a'.repeat(64), 'sha256:' + 'b'.repeat(64), 'sha256:' + 'c'.repeat(64)];
  const c = chainIds(d);
  t.equal(c[0], d[0]);
  t.equal(c[1], sha(`${d[0]} ${d[1]}`));
  t.equal(c[2], sha(`${c[1]} ${d[2]}`));
});

t.test('prepare unpacks once, shares snapshots, mounts an overlay with whiteouts', async (t) => {
  const { root, db, snaps } = setup(t);
  const l0 = await makeTar([{ name: 'etc/', type: 'directory', mode: 0o755 }, { name: 'etc/a', body: 'a' }, { name: 'etc/b', body: 'b' }]);
  const l1 = await makeTar([{ name: 'etc/.wh.a' }, { name: 'etc/c', body: 'c' }]);
  const [c0, c1] = chainIds([sha(l0), sha(l1)]);
  let opens = 0;
  const mk = (chainId: string, parent: string | null, blob: Buffer) => ({
    chainId, parent, diffId: sha(blob),
    open: async () => { opens++; return Readable.from([blob]); },
  });
  const [a, b, c] = await Promise.all([snaps.prepare(mk(c0, null, l0)), snaps.prepare(mk(c0, null, l0)), snaps.prepare(mk(c1, c0, l1))]);
  t.equal(opens, 2, 'concurrent prepares of one chain unpack once');
  t.equal(a.id, b.id);
  t.not(a.id, c.id);
  t.equal(a.state, 'ready');
  t.ok(fs.existsSync(path.join(root, 'snapshots', String(a.id), 'fs', 'etc', 'a')));
  await snaps.prepare(mk(c0, null, l0));
  t.equal(opens, 2, 'an existing snapshot is not unpacked again');
  t.same(fs.readdirSync(path.join(root, 'snapshots')).filter((n) => n.startsWith('tmp-')), [], 'no temp dirs left');

  const ctr = path.join(root, 'containers', 'berth-test-' + process.pid);
  const m = snaps.mountRootfs([c0, c1], ctr);
  t.teardown(() => snaps.unmountRootfs(ctr));
  t.same(fs.readdirSync(path.join(m.target, 'etc')).sort(), ['b', 'c']);
  fs.writeFileSync(path.join(m.target, 'etc', 'new'), 'x');
  t.ok(fs.existsSync(path.join(m.upper, 'etc', 'new')), 'writes go to the upper dir');
  t.throws(() => snaps.mountRootfs([c0, c1], ctr), /already/, 'a second mount on the same dir is refused');
  t.ok(fs.existsSync(m.upper), 'the failed second mount did not remove the first one');
  snaps.unmountRootfs(ctr);
  t.notOk(fs.existsSync(m.target));
  t.notOk(fs.existsSync(m.upper));

  // single-layer image
  const m1 = snaps.mountRootfs([c0], ctr);
  t.same(fs.readdirSync(path.join(m1.target, 'etc')).sort(), ['a', 'b']);
  snaps.unmountRootfs(ctr);
  void db;
});

t.test('diff_id mismatch leaves no snapshot', async (t) => {
  const { root, db, snaps } = setup(t);
  const l0 = await makeTar([{ name: 'x', body: 'x' }]);
  await t.rejects(snaps.prepare({ chainId: sha('bogus'), parent: null, diffId: sha('bogus'), open: async () => Readable.from([l0]) }), { code: 'EDIFFID' });
  t.same(fs.readdirSync(path.join(root, 'snapshots')), []);
  t.same(db.listSnapshots(), []);
});

t.test('mount options over one page fail clearly and leave nothing', async (t) => {
  const { root, snaps } = setup(t);
  const ctr = path.join(root, 'c1');
  const lowers = Array.from({ length: 200 }, (_, i) => path.join(root, 'snapshots', String(100000 + i), 'fs'));
  const { mountOverlay } = await import('../images/snapshots.js');
  t.throws(() => mountOverlay(lowers, ctr), /over the kernel's 4095-byte limit/);
  t.notOk(fs.existsSync(path.join(ctr, 'upper')));
  t.throws(() => snaps.mountRootfs([sha('missing')], ctr), /missing; pull the image again/);
});

t.test('cleanup removes what a crashed pull left', async (t) => {
  const { root, db, snaps } = setup(t);
  // a pid that is certainly dead: a child that has exited
  const dead = spawnSync('true').pid!;
  fs.mkdirSync(path.join(root, 'snapshots', `tmp-${dead}-abc`, 'fs'), { recursive: true });
  fs.mkdirSync(path.join(root, 'snapshots', `tmp-${process.pid}-live`, 'fs'), { recursive: true });
  const id = db.reserveSnapshot({ chainId: sha('c'), parent: null, diffId: sha('c'), size: 1 })!;
  db.db.prepare('UPDATE snapshots SET pid = ? WHERE id = ?').run(dead, id);
  fs.mkdirSync(path.join(root, 'snapshots', String(id), 'fs'), { recursive: true });
  fs.mkdirSync(path.join(root, 'snapshots', '999', 'fs'), { recursive: true });
  snaps.cleanup();
  t.same(fs.readdirSync(path.join(root, 'snapshots')).sort(), [`tmp-${process.pid}-live`], 'dead temp dirs, unfinished commits and orphans removed; live temp kept');
  t.same(db.listSnapshots(), []);
});
