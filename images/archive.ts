/**
 * save / load: docker-archive tars (what `docker save` writes and `docker load` reads:
 * manifest.json [{Config, RepoTags, Layers}] + repositories + <config-hex>.json +
 * <diff-id-hex>/layer.tar, layers uncompressed) and OCI image layouts (oci-layout, index.json,
 * blobs/sha256/<hex>), as a directory or a tar of one. load accepts either, as a tar (plain or
 * gzip) or a directory; the outer tar is extracted with the same no-follow extractor as layers.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { BerthError } from '../runtime/errors.js';
import { sha256Digest } from './content.js';
import type { ImageRecord } from './db.js';
import { hostPlatform, MediaType, parseManifestOrIndex, selectPlatform, type Descriptor, type ImageIndex } from './manifest.js';
import { parseReference } from './reference.js';
import { familiar, familiarRepository, type ImageStore } from './store.js';
import { decompress, detectCompression } from './unpack-decompress.js';
import { unpackLayer } from './unpack.js';

export class ArchiveError extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super('EARCHIVE', message, options); }
}

export type ArchiveFormat = 'docker' | 'oci';

const hex = (d: string) => d.replace(/^sha256:/, '');
const OCI_MANIFEST = MediaType.OCI_MANIFEST;
const OCI_INDEX = MediaType.OCI_INDEX;
const OCI_CONFIG = MediaType.OCI_CONFIG;

interface Entry { name: string; size: number; mode?: number; data: () => AsyncIterable<Uint8Array> | Buffer }

/** Write entries as a tar file (atomically: temp file + rename). */
async function writeTar(out: string, entries: Entry[]): Promise<void> {
  const tmp = `${out}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const pack = tar.pack();
  const writing = pipeline(pack as unknown as NodeJS.ReadableStream, fs.createWriteStream(tmp, { mode: 0o644 }));
  try {
    const dirs = new Set<string>();
    const mtime = new Date(0);
    for (const e of entries) {
      const parts = e.name.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/') + '/';
        if (dirs.has(d)) continue;
        dirs.add(d);
        await new Promise<void>((res, rej) => pack.entry({ name: d, type: 'directory', mode: 0o755, mtime }, (err) => (err ? rej(err) : res())));
      }
      const data = e.data();
      if (Buffer.isBuffer(data)) {
        await new Promise<void>((res, rej) => pack.entry({ name: e.name, size: data.length, mode: e.mode ?? 0o644, mtime }, data, (err) => (err ? rej(err) : res())));
        continue;
      }
      await new Promise<void>((res, rej) => {
        const sink = pack.entry({ name: e.name, size: e.size, mode: e.mode ?? 0o644, mtime }, (err) => (err ? rej(err) : res()));
        pipeline(data, sink as unknown as NodeJS.WritableStream).catch(rej);
      });
    }
    pack.finalize();
    await writing;
    fs.renameSync(tmp, out);
  } catch (e) {
    pack.destroy();
    await writing.catch(() => {});
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** Save images to `out` in the given format. OCI output is a directory when out is one or ends in '/'. */
export async function saveImages(store: ImageStore, refs: string[], out: string, format: ArchiveFormat = 'docker'): Promise<void> {
  if (refs.length === 0) throw new ArchiveError('save needs at least one image');
  const imgs: { img: ImageRecord; asked: string }[] = refs.map((r) => ({ img: store.require(r), asked: r }));
  if (format === 'docker') return saveDocker(store, imgs, out);
  const asDir = out.endsWith('/') || (fs.existsSync(out) && fs.statSync(out).isDirectory());
  return saveOci(store, imgs.map((x) => x.img), out, asDir);
}

function tagsFor(img: ImageRecord, asked: string): string[] {
  try {
    const r = parseReference(asked);
    if (r.tag && !r.digest && img.repoTags.includes(r.string())) return [familiar(r.string())];
  } catch {}
  return img.repoTags.map(familiar);
}

async function saveDocker(store: ImageStore, imgs: { img: ImageRecord; asked: string }[], out: string): Promise<void> {
  const entries: Entry[] = [];
  const seen = new Set<string>();
  const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { img, asked } of imgs) {
    const cfgName = `${hex(img.id)}.json`;
    if (!seen.has(cfgName)) {
      seen.add(cfgName);
      const bytes = await store.content.readBytes(img.id);
      entries.push({ name: cfgName, size: bytes.length, data: () => bytes });
    }
    const layers: string[] = [];
    for (const l of img.layers) {
      const name = `${hex(l.diffId)}/layer.tar`;
      layers.push(name);
      if (seen.has(name)) continue;
      seen.add(name);
      const size = store.snapshots.get(l.chainId)?.size ?? await uncompressedSize(store, l.digest);
      entries.push({ name, size, data: () => decompress(store.content.openRead(l.digest)) });
    }
    const tags = tagsFor(img, asked);
    manifest.push({ Config: cfgName, RepoTags: tags, Layers: layers });
    const top = hex(img.layers[img.layers.length - 1]?.diffId ?? img.id);
    for (const t of tags) {
      const r = parseReference(t);
      const repo = familiarRepository(r.repository);
      (repositories[repo] ??= {})[r.tag ?? 'latest'] = top;
    }
  }
  const mj = Buffer.from(JSON.stringify(manifest));
  const rj = Buffer.from(JSON.stringify(repositories));
  entries.push({ name: 'manifest.json', size: mj.length, data: () => mj });
  entries.push({ name: 'repositories', size: rj.length, data: () => rj });
  await writeTar(out, entries);
}

async function uncompressedSize(store: ImageStore, digest: string): Promise<number> {
  let n = 0;
  for await (const c of decompress(store.content.openRead(digest))) n += c.length;
  return n;
}

async function saveOci(store: ImageStore, imgs: ImageRecord[], out: string, asDir: boolean): Promise<void> {
  const blobs = new Map<string, number>();
  const manifests: Descriptor[] = [];
  for (const img of imgs) {
    blobs.set(img.manifestDigest, store.content.sizeSync(img.manifestDigest) ?? 0);
    blobs.set(img.id, store.content.sizeSync(img.id) ?? 0);
    for (const l of img.layers) blobs.set(l.digest, l.size);
    const tags = img.repoTags.length ? img.repoTags : [''];
    for (const t of tags) {
      const annotations: Record<string, string> = {};
      if (t) {
        const r = parseReference(t);
        annotations['io.containerd.image.name'] = r.string();
        annotations['org.opencontainers.image.ref.name'] = r.tag ?? 'latest';
      }
      manifests.push({
        mediaType: img.manifestMediaType, digest: img.manifestDigest, size: blobs.get(img.manifestDigest)!,
        platform: { os: img.os, architecture: img.architecture, ...(img.variant ? { variant: img.variant } : {}) },
        ...(t ? { annotations } : {}),
      });
    }
  }
  for (const d of blobs.keys()) {
    if (!store.content.hasSync(d)) throw new ArchiveError(`blob ${d} is not in the content store; pull the image again before saving`);
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  const layout = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  if (asDir) {
    const bdir = path.join(out, 'blobs', 'sha256');
    fs.mkdirSync(bdir, { recursive: true });
    for (const d of blobs.keys()) {
      const dst = path.join(bdir, hex(d));
      if (!fs.existsSync(dst)) fs.copyFileSync(store.content.path(d), dst);
    }
    fs.writeFileSync(path.join(out, 'oci-layout'), layout);
    fs.writeFileSync(path.join(out, 'index.json'), index);
    return;
  }
  const entries: Entry[] = [
    { name: 'oci-layout', size: layout.length, data: () => layout },
    ...[...blobs].map(([d, size]) => ({ name: `blobs/sha256/${hex(d)}`, size: store.content.sizeSync(d) ?? size, data: () => store.content.openRead(d) as AsyncIterable<Uint8Array> })),
    { name: 'index.json', size: index.length, data: () => index },
  ];
  await writeTar(out, entries);
}

// ------------------------------------------------------------------------------------ load

/** Load a docker-archive or OCI layout (tar or directory) into the store; returns the images. */
export async function loadImages(store: ImageStore, input: string): Promise<ImageRecord[]> {
  let st: fs.Stats;
  try { st = fs.statSync(input); } catch { throw new ArchiveError(`cannot read ${input}: no such file or directory`); }
  if (st.isDirectory()) return loadDir(store, input);
  const tmp = path.join(store.snapshots.dir, `tmp-${process.pid}-load-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(path.dirname(tmp), { recursive: true });
  try {
    try {
      await unpackLayer(fs.createReadStream(input), tmp);
    } catch (e) {
      throw new ArchiveError(`${input} is not a readable image archive: ${(e as Error).message}`, { cause: e });
    }
    return await loadDir(store, tmp);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function readJson<T>(file: string, what: string): T {
  try { return JSON.parse(fs.readFileSync(file, 'utf8')) as T; } catch (e) {
    throw new ArchiveError(`${what}: ${(e as Error).message}`, { cause: e });
  }
}

async function ingestFile(store: ImageStore, file: string, digest?: string): Promise<{ digest: string; size: number }> {
  const lst = fs.lstatSync(file);
  if (!lst.isFile()) throw new ArchiveError(`${file} in the archive is not a regular file`);
  let d = digest;
  if (!d) {
    const h = createHash('sha256');
    for await (const c of fs.createReadStream(file)) h.update(c as Buffer);
    d = `sha256:${h.digest('hex')}`;
  }
  await store.content.ingest(d, lst.size, async (off) => fs.createReadStream(file, { start: off }), { source: file });
  return { digest: d, size: lst.size };
}

async function loadDir(store: ImageStore, dir: string): Promise<ImageRecord[]> {
  if (fs.existsSync(path.join(dir, 'manifest.json'))) return loadDocker(store, dir);
  if (fs.existsSync(path.join(dir, 'index.json'))) return loadOci(store, dir);
  throw new ArchiveError('the archive has neither manifest.json (docker save) nor index.json (OCI layout)');
}

function inside(dir: string, rel: string, what: string): string {
  const p = path.resolve(dir, rel);
  if (!p.startsWith(path.resolve(dir) + path.sep)) throw new ArchiveError(`${what} "${rel}" points outside the archive`);
  return p;
}

async function loadDocker(store: ImageStore, dir: string): Promise<ImageRecord[]> {
  const entries = readJson<{ Config?: unknown; RepoTags?: unknown; Layers?: unknown }[]>(path.join(dir, 'manifest.json'), 'manifest.json');
  if (!Array.isArray(entries)) throw new ArchiveError('manifest.json is not a list');
  const out: ImageRecord[] = [];
  for (const [i, e] of entries.entries()) {
    if (typeof e.Config !== 'string' || !Array.isArray(e.Layers) || !e.Layers.every((l): l is string => typeof l === 'string')) {
      throw new ArchiveError(`manifest.json entry ${i} needs Config (string) and Layers (list of strings)`);
    }
    const tags = Array.isArray(e.RepoTags) ? e.RepoTags.filter((t): t is string => typeof t === 'string') : [];
    const cfg = await ingestFile(store, inside(dir, e.Config, 'Config'));
    const layers: Descriptor[] = [];
    for (const l of e.Layers) {
      const file = inside(dir, l, 'layer');
      const head = Buffer.alloc(4);
      const fd = fs.openSync(file, 'r');
      try { fs.readSync(fd, head, 0, 4, 0); } finally { fs.closeSync(fd); }
      const comp = detectCompression(head);
      const b = await ingestFile(store, file);
      layers.push({ mediaType: comp === 'gzip' ? MediaType.OCI_LAYER_GZIP : comp === 'zstd' ? MediaType.OCI_LAYER_ZSTD : MediaType.OCI_LAYER, digest: b.digest, size: b.size });
    }
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: cfg.digest, size: cfg.size }, layers }));
    out.push(await store.importImage(manifest, OCI_MANIFEST, tags));
  }
  return out;
}

async function loadOci(store: ImageStore, dir: string): Promise<ImageRecord[]> {
  const blob = (d: string) => inside(dir, path.join('blobs', ...d.split(':')), 'blob');
  const index = readJson<ImageIndex>(path.join(dir, 'index.json'), 'index.json');
  if (!Array.isArray(index.manifests)) throw new ArchiveError('index.json has no manifests list');
  const out: ImageRecord[] = [];
  for (const top of index.manifests) {
    let desc: Descriptor = top;
    let bytes = fs.readFileSync(blob(desc.digest));
    if (sha256Digest(bytes) !== desc.digest) throw new ArchiveError(`blob ${desc.digest} in the layout does not match its digest`);
    let parsed = parseManifestOrIndex(bytes, desc.mediaType);
    if (parsed.kind === 'index') {
      desc = selectPlatform(parsed.index, hostPlatform());
      bytes = fs.readFileSync(blob(desc.digest));
      parsed = parseManifestOrIndex(bytes, desc.mediaType);
      if (parsed.kind !== 'manifest') throw new ArchiveError(`${desc.digest}: nested indexes are not supported`);
    }
    const m = parsed.manifest;
    for (const d of [m.config, ...m.layers]) await ingestFile(store, blob(d.digest), d.digest);
    const a = top.annotations ?? {};
    const name = a['io.containerd.image.name'] ?? (a['org.opencontainers.image.ref.name']?.match(/[/:]/) ? a['org.opencontainers.image.ref.name'] : undefined);
    const tags = name ? [name] : [];
    out.push(await store.importImage(bytes, desc.mediaType || m.mediaType || OCI_MANIFEST, tags));
  }
  return out;
}
