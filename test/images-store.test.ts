import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { buildImage, imageTree, multilayerImage, pushTestImage, type FixtureName, type TestImage, type TreeEntry } from './fixtures/images.js';
import { ImageStore } from '../images/store.js';
import type { PullEvent } from '../images/progress.js';

t.setTimeout(240_000);

interface Node { path: string; type: string; mode: number; uid: number; gid: number; size?: number; linkname?: string; sha256?: string }

/** Walk a tree without following symlinks. */
function walk(root: string): Node[] {
  const out: Node[] = [];
  const rec = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = `${rel}/${name}`;
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      const n: Node = { path: r, type: st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (st.isFile()) { n.size = st.size; n.sha256 = 'sha256:' + createHash('sha256').update(fs.readFileSync(p)).digest('hex'); }
      if (st.isSymbolicLink()) n.linkname = fs.readlinkSync(p);
      out.push(n);
      if (st.isDirectory()) rec(r);
    }
  };
  rec('');
  return out;
}

function checkTree(t: Tap, merged: string, want: TreeEntry[], label: string): void {
  const have = new Map(walk(merged).map((n) => [n.path, n]));
  let bad = 0;
  for (const w of want) {
    const h = have.get(w.path);
    const wantType = w.type === 'hardlink' ? 'file' : w.type;
    if (!h || h.type !== wantType || h.mode !== w.mode || h.uid !== w.uid || h.gid !== w.gid
      || (w.size !== undefined && h.size !== w.size) || (w.sha256 && h.sha256 !== w.sha256) || (w.type === 'symlink' && h.linkname !== w.linkname)) {
      bad++;
      if (bad < 5) t.fail(`${label}: ${w.path}: want ${JSON.stringify(w)}, have ${JSON.stringify(h)}`);
    }
  }
  const wantPaths = new Set(want.map((w) => w.path));
  const extra = [...have.values()].filter((h) => !wantPaths.has(h.path) && h.type !== 'directory').map((h) => h.path);
  t.same(extra, [], `${label}: no unexpected entries (whiteouts hidden)`);
  t.equal(bad, 0, `${label}: ${want.length} expected entries match`);
}
type Tap = Test;

let reg: TestRegistry;
const images = new Map<string, TestImage>();

t.before(async () => {
  reg = await startRegistry();
  for (const name of ['base', 'layered', 'multiarch', 'docker-schema2', 'config-image'] as FixtureName[]) {
    const img = await buildImage(name);
    images.set(name, img);
    await pushTestImage(reg.host, `berth/${name}`, 'v1', img);
  }
});
t.teardown(async () => { await reg?.stop(); });

function newStore(t: Tap): ImageStore {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-store-'));
  const store = ImageStore.open(root, { fsync: false });
  t.teardown(() => { store.close(); fs.rmSync(root, { recursive: true, force: true }); });
  return store;
}

function mountMerged(t: Tap, store: ImageStore, chain: string[]): string {
  const ctr = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ctr-'));
  const m = store.snapshots.mountRootfs(chain, ctr);
  t.teardown(() => { store.snapshots.unmountRootfs(ctr); fs.rmSync(ctr, { recursive: true, force: true }); });
  return m.target;
}

t.test('pull every fixture image and compare the merged tree', async (t) => {
  const store = newStore(t);
  for (const name of ['base', 'layered', 'docker-schema2', 'config-image', 'multiarch']) {
    const img = images.get(name)!;
    const events: PullEvent[] = [];
    const rec = await store.pull(`${reg.host}/berth/${name}:v1`, { onProgress: (e) => events.push(e), platform: { os: 'linux', architecture: 'amd64' } });
    const m = img.index ? img.manifests.find((x) => x.platform?.architecture === 'amd64')! : img.manifests[0];
    t.equal(rec.id, m.config.digest, `${name}: image id is the config digest`);
    t.same(rec.layers.map((l) => l.diffId), m.layers.map((l) => l.diffId), `${name}: diff ids`);
    t.ok(rec.repoTags.includes(`${reg.host}/berth/${name}:v1`), `${name}: tagged`);
    t.ok(events.some((e) => e.type === 'done'), `${name}: done event`);
    const info = await store.rootfsFor(`${reg.host}/berth/${name}:v1`);
    t.equal(info.lowerDirs.length, m.layers.length);
    checkTree(t, mountMerged(t, store, info.chainIds), imageTree(img, { os: 'linux', architecture: 'amd64' }), name);
  }
  const cfg = await store.inspect(`${reg.host}/berth/config-image:v1`);
  t.match(cfg.Config, { Entrypoint: Array, WorkingDir: String });

  // the base layer is shared: base, layered, docker-schema2?, config-image all start with it
  const snaps = store.db.listSnapshots();
  t.equal(new Set(snaps.map((s) => s.chainId)).size, snaps.length, 'one snapshot per chain');

  // pulling again downloads nothing
  const ev: PullEvent[] = [];
  await store.pull(`${reg.host}/berth/layered:v1`, { onProgress: (e) => ev.push(e) });
  t.match(ev.find((e) => e.type === 'done'), { downloaded: false });

  // rmi: layered removed, its top snapshot goes, the shared base stays
  const layered = store.require(`${reg.host}/berth/layered:v1`);
  const base = store.require(`${reg.host}/berth/base:v1`);
  const topChain = layered.layers[1].chainId;
  const topDir = store.snapshots.fsDir(store.snapshots.get(topChain)!.id);
  store.addImageUse(layered.id, 'ctr-berth-1');
  t.throws(() => store.remove(`${reg.host}/berth/layered:v1`), { code: 'EIMAGEINUSE' });
  store.removeImageUse(layered.id, 'ctr-berth-1');
  const r = store.remove(`${reg.host}/berth/layered:v1`);
  t.same(r.deleted, [layered.id]);
  t.notOk(store.snapshots.get(topChain), 'unused snapshot removed');
  t.notOk(fs.existsSync(topDir));
  t.ok(store.snapshots.get(base.layers[0].chainId), 'shared base snapshot kept');
  t.notOk(store.content.hasSync(layered.layers[1].digest), 'unused blob removed');
  t.ok(store.content.hasSync(base.layers[0].digest));

  // tag + remove by tag only untags
  store.tag(`${reg.host}/berth/base:v1`, 'local/base:x');
  t.same(store.remove('local/base:x').deleted, []);
  t.ok(store.get(`${reg.host}/berth/base:v1`));
  t.throws(() => store.require('nothere:1'), { code: 'ENOTFOUND' });
});

t.test('pull by digest, --platform, errors', async (t) => {
  const store = newStore(t);
  const ma = images.get('multiarch')!;
  const arm = await store.pull(`${reg.host}/berth/multiarch:v1`, { platform: { os: 'linux', architecture: 'arm64' } });
  const armM = ma.manifests.find((m) => m.platform?.architecture === 'arm64')!;
  t.equal(arm.id, armM.config.digest);
  t.equal(arm.architecture, 'arm64');
  const base = images.get('base')!;
  const byDigest = await store.pull(`${reg.host}/berth/base@${base.digest}`);
  t.equal(byDigest.manifestDigest, base.digest);
  t.ok(store.get(`${reg.host}/berth/base@${base.digest}`));
  await t.rejects(store.pull(`${reg.host}/berth/nope:v1`), /not found/);
  await t.rejects(store.pull('bad ref!'), { code: 'EINVALIDREF' });
  await t.rejects(store.pull(`${reg.host}/berth/base:v1`, { concurrency: 9 }), /1 to 6/);
});

t.test('matches umoci unpack of the same image', async (t) => {
  const store = newStore(t);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-umoci-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  for (const name of ['layered', 'config-image']) {
    const oci = path.join(work, `${name}-oci`);
    execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/berth/${name}:v1`, `oci:${oci}:v1`]);
    const bundle = path.join(work, `${name}-bundle`);
    execFileSync('umoci', ['unpack', '--image', `${oci}:v1`, bundle], { stdio: 'ignore' });
    const rec = await store.pull(`${reg.host}/berth/${name}:v1`);
    const merged = mountMerged(t, store, rec.layers.map((l) => l.chainId));
    const strip = (ns: Node[]) => ns.map(({ path: p, type, mode, uid, gid, size, linkname, sha256 }) => ({ path: p, type, mode, uid, gid, size, linkname, sha256 }));
    t.same(strip(walk(merged)), strip(walk(path.join(bundle, 'rootfs'))), `${name}: same tree as umoci`);
  }
});

t.test('push: skopeo reads what berth pushed; cross-repo mount', async (t) => {
  const store = newStore(t);
  await store.pull(`${reg.host}/berth/layered:v1`);
  const r = await store.push(`${reg.host}/berth/layered:v1`, `${reg.host}/pushed/layered:p1`);
  const info = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/pushed/layered:p1`], { encoding: 'utf8' })) as { Digest: string; Layers: string[] };
  t.equal(info.Digest, r.digest);
  t.same(info.Layers, images.get('layered')!.manifests[0].layers.map((l) => l.digest));
  const msgs: string[] = [];
  await store.push(`${reg.host}/berth/layered:v1`, `${reg.host}/pushed/layered:p1`, { onProgress: (m) => msgs.push(m) });
  t.ok(msgs.every((m) => /already exists/.test(m)), 'second push uploads nothing');
});

t.test('kill -9 in the middle of a pull; the next pull completes', async (t) => {
  const img = await multilayerImage({ layers: 3, layerSize: 24 * 1024 * 1024, seed: 'berth-kill' });
  await pushTestImage(reg.host, 'berth/big', 'v1', img);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-store-kill-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/berth-main.ts', '--root', root, 'pull', '-q', '--concurrency', '2', `${reg.host}/berth/big:v1`], { stdio: 'ignore' });
  const ingest = path.join(root, 'content', 'ingest');
  const deadline = Date.now() + 60_000;
  let partial = 0;
  while (Date.now() < deadline) {
    try {
      partial = fs.readdirSync(ingest).filter((n) => /^[0-9a-f]{64}$/.test(n)).map((n) => fs.statSync(path.join(ingest, n)).size).reduce((a, b) => a + b, 0);
    } catch {}
    if (partial > 2 * 1024 * 1024 || child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  t.ok(partial > 0, `killed with ${partial} bytes ingested`);
  const tmpDirs = fs.readdirSync(path.join(root, 'snapshots')).filter((n) => n.startsWith('tmp-'));
  t.comment(`left behind: ${tmpDirs.length} temp snapshot dirs`);

  const store = ImageStore.open(root, { fsync: false });
  t.teardown(() => store.close());
  t.same(fs.readdirSync(path.join(root, 'snapshots')).filter((n) => n.startsWith('tmp-')), [], 'open() removed the dead pull\'s temp dirs');
  const rec = await store.pull(`${reg.host}/berth/big:v1`);
  t.equal(rec.layers.length, 4);
  t.same(rec.layers.map((l) => l.digest), img.manifests[0].layers.map((l) => l.digest));
  t.same(fs.readdirSync(ingest), [], 'no ingest leftovers');
  t.same(fs.readdirSync(path.join(root, 'snapshots')).filter((n) => !/^\d+$/.test(n)), []);
  t.equal(store.db.listSnapshots().length, 4);
  checkTree(t, mountMerged(t, store, rec.layers.map((l) => l.chainId)), imageTree(img), 'big');
});
