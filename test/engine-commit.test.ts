/**
 * commit and export on the real kernel: changes made in a container's overlay (a deleted file,
 * a replaced directory, new files, a hardlink) become one OCI layer with proper whiteouts; the
 * committed image, mounted again, shows exactly the changed tree; export packs a merged rootfs.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, linkSync, symlinkSync, existsSync, readdirSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { ImageStore } from '../images/store.js';
import { loadImages } from '../images/archive.js';
import { mountOverlay, unmountOverlay } from '../images/snapshots.js';
import { umount, MNT_DETACH } from '../runtime/linux/libc.js';
import { baseImage, writeOciLayout } from './fixtures/images.js';
import { packTree } from '../runtime/engine/tree-tar.js';
import { commitUpperDir } from '../runtime/engine/commit.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-commit-'));
const mounted: string[] = [];
t.teardown(() => {
  for (const m of mounted) { try { unmountOverlay(m); } catch { /* gone */ } }
  rmSync(dir, { recursive: true, force: true });
});

async function entries(pack: tar.Pack): Promise<Map<string, tar.Header>> {
  const out = new Map<string, tar.Header>();
  const ex = tar.extract();
  const feed = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) if (!ex.write(c)) await new Promise<void>((r) => { ex.once('drain', () => r()); });
    (ex as unknown as { end(): void }).end();
  })();
  for await (const e of ex) {
    out.set(e.header.name.replace(/\/$/, ''), e.header);
    e.resume();
  }
  await feed;
  return out;
}

t.test('a container upper dir becomes a layer with OCI whiteouts; commit and re-mount', async (t) => {
  const layout = join(dir, 'layout');
  await writeOciLayout(layout, await baseImage(), 'latest');
  const store = ImageStore.open(join(dir, 'root'));
  t.teardown(() => (store as unknown as { close?: () => void }).close?.());
  const [img] = await loadImages(store, layout);
  const base = img.id;
  const rf = await store.rootfsFor(base);
  const ctr = join(dir, 'ctr1');
  mkdirSync(ctr);
  const m = mountOverlay(rf.lowerDirs, ctr);
  mounted.push(ctr);
  // Changes a user makes in a container.
  rmSync(join(m.target, 'etc/hostname'));
  rmSync(join(m.target, 'var'), { recursive: true });
  mkdirSync(join(m.target, 'var/cache'), { recursive: true });
  writeFileSync(join(m.target, 'var/cache/new'), 'fresh\n');
  writeFileSync(join(m.target, 'hello'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
  linkSync(join(m.target, 'hello'), join(m.target, 'hello-again'));
  symlinkSync('/hello', join(m.target, 'usr/bin/hi'));
  umount(m.target, MNT_DETACH);

  const layer = await entries(packTree(m.upper, { layer: true }));
  t.ok(layer.has('etc/.wh.hostname'), 'deleted file → .wh. entry');
  t.ok(layer.has('var/.wh..wh..opq'), 'replaced directory → opaque marker');
  t.equal(layer.get('hello')?.mode, 0o755);
  t.equal(layer.get('hello-again')?.type, 'link');
  t.equal(layer.get('usr/bin/hi')?.linkname, '/hello');
  t.notOk(layer.has('bin/busybox'), 'unchanged files are not in the layer');

  const committed = await commitUpperDir(store, base, m.upper, { tag: 'test/committed:1', changes: { Cmd: ['/hello'] }, comment: 'from a test' });
  t.equal(committed.layers.length, img.layers.length + 1);
  const cfg = await store.config(committed);
  t.same(cfg.config?.Cmd, ['/hello']);
  t.equal(cfg.history?.at(-1)?.comment, 'from a test');

  const rf2 = await store.rootfsFor('test/committed:1');
  const ctr2 = join(dir, 'ctr2');
  mkdirSync(ctr2);
  const m2 = mountOverlay(rf2.lowerDirs, ctr2);
  mounted.push(ctr2);
  t.notOk(existsSync(join(m2.target, 'etc/hostname')), 'whiteout applied');
  t.same(readdirSync(join(m2.target, 'var')), ['cache'], 'opaque dir hides the old contents');
  t.equal(readFileSync(join(m2.target, 'var/cache/new'), 'utf8'), 'fresh\n');
  t.equal(statSync(join(m2.target, 'hello')).mode & 0o7777, 0o755);
  t.equal(statSync(join(m2.target, 'hello')).ino, statSync(join(m2.target, 'hello-again')).ino, 'hardlink kept');
  t.ok(existsSync(join(m2.target, 'bin/busybox')), 'base layers still there');

  const exported = await entries(packTree(m2.target));
  t.ok(exported.has('bin/busybox') && exported.has('hello') && exported.has('var/cache/new'), 'export packs the merged tree');
  t.notOk([...exported.keys()].some((k) => k.includes('.wh.')), 'no whiteouts in an export');
});
