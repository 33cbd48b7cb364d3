import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { buildImage, imageTree, pushTestImage, type TestImage } from './fixtures/images.js';
import { ImageStore } from '../images/store.js';
import { loadImages, saveImages } from '../images/archive.js';

t.setTimeout(180_000);

let reg: TestRegistry;
let layered: TestImage;
let work: string;

t.before(async () => {
  reg = await startRegistry();
  layered = await buildImage('layered');
  await pushTestImage(reg.host, 'berth/layered', 'v1', layered);
  await pushTestImage(reg.host, 'berth/base', 'v1', await buildImage('base'));
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-archive-'));
});
t.teardown(async () => {
  await reg?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function newStore(t: Test): ImageStore {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-store-'));
  const store = ImageStore.open(root, { fsync: false });
  t.teardown(() => { store.close(); fs.rmSync(root, { recursive: true, force: true }); });
  return store;
}

/** paths + types + modes + sizes + link targets of a tree, without following links. */
function tree(root: string): string[] {
  const out: string[] = [];
  const rec = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = `${rel}/${name}`;
      const st = fs.lstatSync(path.join(root, r));
      const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? `l->${fs.readlinkSync(path.join(root, r))}` : st.isFile() ? `f${st.size}` : 'o';
      out.push(`${r} ${kind} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
      if (st.isDirectory()) rec(r);
    }
  };
  rec('');
  return out;
}

function merged(t: Test, store: ImageStore, ref: string): string {
  const img = store.require(ref);
  const ctr = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ctr-'));
  const m = store.snapshots.mountRootfs(img.layers.map((l) => l.chainId), ctr);
  t.teardown(() => { store.snapshots.unmountRootfs(ctr); fs.rmSync(ctr, { recursive: true, force: true }); });
  return m.target;
}

t.test('docker-archive: skopeo reads it, load gives back the same image', async (t) => {
  const store = newStore(t);
  const ref = `${reg.host}/berth/layered:v1`;
  const img = await store.pull(ref);
  await store.pull(`${reg.host}/berth/base:v1`);
  const out = path.join(work, 'layered.tar');
  await saveImages(store, [ref, `${reg.host}/berth/base:v1`], out, 'docker');
  const info = JSON.parse(execFileSync('skopeo', ['inspect', `docker-archive:${out}:${ref}`], { encoding: 'utf8' })) as { Layers: string[]; Architecture: string };
  t.same(info.Layers, img.layers.map((l) => l.diffId), 'skopeo sees the uncompressed layers');
  const list = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).split('\n');
  t.ok(list.includes('manifest.json') && list.includes('repositories') && list.includes(`${img.id.slice(7)}.json`));
  const extracted = path.join(work, 'x');
  fs.mkdirSync(extracted);
  execFileSync('tar', ['-xf', out, '-C', extracted, 'manifest.json']);
  const mj = JSON.parse(fs.readFileSync(path.join(extracted, 'manifest.json'), 'utf8')) as { Config: string; RepoTags: string[]; Layers: string[] }[];
  t.equal(mj.length, 2);
  t.same(mj[0].RepoTags, [ref]);
  t.equal(mj[0].Layers.length, 2);

  const other = newStore(t);
  const loaded = await loadImages(other, out);
  t.equal(loaded.length, 2);
  t.equal(loaded[0].id, img.id, 'same image id (config digest)');
  t.same(loaded[0].layers.map((l) => l.diffId), img.layers.map((l) => l.diffId));
  t.ok(other.get(ref), 'tag restored');
  t.same(tree(merged(t, other, ref)), tree(merged(t, store, ref)), 'same tree after load');
  t.equal(imageTree(layered).length > 0, true);
});

t.test('OCI layout: skopeo and umoci read it; load of the tar round-trips', async (t) => {
  const store = newStore(t);
  const ref = `${reg.host}/berth/layered:v1`;
  const img = await store.pull(ref);
  const dir = path.join(work, 'oci') + '/';
  await saveImages(store, [ref], dir, 'oci');
  const info = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${dir}:v1`], { encoding: 'utf8' })) as { Digest: string; Layers: string[] };
  t.equal(info.Digest, img.manifestDigest);
  t.same(info.Layers, img.layers.map((l) => l.digest));
  const bundle = path.join(work, 'bundle');
  execFileSync('umoci', ['unpack', '--image', `${dir}:v1`, bundle], { stdio: 'ignore' });
  t.same(tree(path.join(bundle, 'rootfs')), tree(merged(t, store, ref)), 'umoci unpacks the saved layout to the same tree');

  const tarOut = path.join(work, 'oci.tar');
  await saveImages(store, [ref], tarOut, 'oci');
  const other = newStore(t);
  const loaded = await loadImages(other, tarOut);
  t.equal(loaded[0].id, img.id);
  t.equal(loaded[0].manifestDigest, img.manifestDigest, 'manifest kept byte for byte');
  t.ok(other.get(ref), 'name restored from io.containerd.image.name');
  // loading the layout directory works too
  const third = newStore(t);
  t.equal((await loadImages(third, dir))[0].id, img.id);
});

t.test('bad archives fail clearly and leave nothing', async (t) => {
  const store = newStore(t);
  await t.rejects(loadImages(store, path.join(work, 'missing.tar')), /no such file/);
  const junk = path.join(work, 'junk.tar');
  fs.writeFileSync(junk, Buffer.alloc(2048, 0x41));
  await t.rejects(loadImages(store, junk), { code: 'EARCHIVE' });
  const empty = path.join(work, 'empty-dir');
  fs.mkdirSync(empty);
  await t.rejects(loadImages(store, empty), /neither manifest.json/);
  t.same(fs.readdirSync(store.snapshots.dir), [], 'no temp dirs left');
  t.same(store.list(), []);
  await t.rejects(saveImages(store, ['nothere:1'], path.join(work, 'n.tar')), { code: 'ENOTFOUND' });
  t.notOk(fs.existsSync(path.join(work, 'n.tar')));
});
