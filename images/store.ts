/**
 * ImageStore: pull / list / inspect / tag / remove / prune / push over the content store
 * (content.ts), the snapshotter (snapshots.ts) and the metadata DB (db.ts).
 *
 * Pull: HEAD the tag (an image we already have under that digest costs no GET), GET the
 * manifest (index → platform), fetch the config, then every missing layer streams ONCE from the
 * registry into both the content store's ingest (hash + write, resumable) and the unpacker
 * (decompress → untar into the layer's own snapshot dir), up to `concurrency` layers at a time.
 * Layers need no parent to unpack, so they all run in parallel; the image is recorded in one
 * transaction at the end. A killed pull leaves a partial ingest (resumed next time) and a temp
 * snapshot dir (removed at the next open).
 */
import { PassThrough } from 'node:stream';
import { BerthError, NotFoundError } from '../runtime/errors.js';
import { ContentStore, sha256Digest, type OpenResult } from './content.js';
import { ImageDB, type ImageRecord, type LayerRecord } from './db.js';
import {
  hostPlatform, parseImageConfig, parseManifestOrIndex, selectPlatform,
  type Descriptor, type ImageConfig, type ImageManifest, type Platform,
} from './manifest.js';
import type { PullEvent } from './progress.js';
import { parseReference, type ImageReference } from './reference.js';
import { chainIds, Snapshotter } from './snapshots.js';
import { warmUnpackThreads } from './unpack-offthread.js';
import type { Credentials } from './registry/credentials.js';
import { defaultRegistryFactory } from './store-registry.js';

export class ImageInUseError extends BerthError {
  constructor(message: string) { super('EIMAGEINUSE', message); }
}

export class ImageConflictError extends BerthError {
  constructor(message: string) { super('ECONFLICT', message); }
}

/** What the store needs from a registry client (adapted from images/registry in store-registry.ts). */
export interface RegistryAPI {
  /** HEAD a manifest by tag or digest; null when the registry does not answer HEAD usefully. */
  headManifest(ref: ImageReference, tagOrDigest: string): Promise<{ digest: string; mediaType: string; size: number } | null>;
  getManifest(ref: ImageReference, tagOrDigest: string): Promise<{ bytes: Buffer; mediaType: string; digest: string }>;
  openBlob(ref: ImageReference, digest: string, offset: number, signal?: AbortSignal): Promise<OpenResult>;
  hasBlob(ref: ImageReference, digest: string): Promise<boolean>;
  /** Cross-repo mount; false when the registry did not mount (caller uploads instead). */
  mountBlob(ref: ImageReference, digest: string, fromRepoPath: string): Promise<boolean>;
  uploadBlob(ref: ImageReference, digest: string, size: number, body: () => AsyncIterable<Uint8Array>): Promise<void>;
  putManifest(ref: ImageReference, tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<string>;
}

export interface RegistryOptions {
  creds?: Credentials;
  insecure?: string[];
  signal?: AbortSignal;
  /** Registry rate-limit headers as they arrive (Docker Hub's ratelimit-remaining). */
  onRateLimit?: (info: { host: string; limit?: number; remaining?: number; retryAfterMs?: number }) => void;
}

export type RegistryFactory = (ref: ImageReference, opts: RegistryOptions) => RegistryAPI;

export interface PullOptions extends RegistryOptions {
  platform?: Platform;
  /** Layers fetched at once, 1–6 (default 6). */
  concurrency?: number;
  onProgress?: (ev: PullEvent) => void;
}

export interface PushOptions extends RegistryOptions {
  onProgress?: (msg: string) => void;
}

export interface RemoveResult { untagged: string[]; deleted: string[] }

export interface RootfsInfo {
  image: ImageRecord;
  config: ImageConfig;
  chainIds: string[];
  /** Snapshot fs dirs, bottom layer first. */
  lowerDirs: string[];
}

export interface StoreOptions {
  registry?: RegistryFactory;
  /** fsync blobs (default true; tests may turn it off). */
  fsync?: boolean;
}

/** Run fns with at most n at once; rejects with the first failure after the rest settle. */
async function limit<T>(n: number, fns: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array(fns.length);
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (next < fns.length && failed === null) {
      const i = next++;
      try { out[i] = await fns[i](); } catch (e) { if (failed === null) failed = e; }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, fns.length) }, worker));
  if (failed !== null) throw failed;
  return out;
}

export class ImageStore {
  readonly root: string;
  readonly db: ImageDB;
  readonly content: ContentStore;
  readonly snapshots: Snapshotter;
  private readonly registry: RegistryFactory;

  private constructor(root: string, opts: StoreOptions) {
    this.root = root;
    this.db = ImageDB.open(root);
    this.content = new ContentStore(root, { fsync: opts.fsync ?? true });
    this.snapshots = new Snapshotter(root, this.db);
    this.registry = opts.registry ?? defaultRegistryFactory;
  }

  /** Open (creating if needed) the store under root and clean up what a crash left. */
  static open(root: string, opts: StoreOptions = {}): ImageStore {
    const s = new ImageStore(root, opts);
    s.snapshots.cleanup();
    return s;
  }

  close(): void {
    this.db.close();
  }

  // ---------------------------------------------------------------- lookup

  /** Find an image by id (full or unique hex prefix), tag, or name@digest. */
  get(refOrId: string): ImageRecord | null {
    const s = refOrId.trim();
    if (/^(sha256:)?[0-9a-f]{4,64}$/.test(s)) {
      const hits = this.db.findImagesByPrefix(s);
      if (hits.length === 1) return hits[0];
      if (hits.length > 1) throw new ImageConflictError(`image id prefix "${s}" is ambiguous (${hits.length} images); give more digits`);
    }
    let ref: ImageReference;
    try { ref = parseReference(s); } catch { return null; }
    if (ref.digest) {
      const id = this.db.resolveRepoDigest(`${ref.repository}@${ref.digest}`);
      if (id) return this.db.getImage(id);
      const byManifest = this.db.listImages().find((i) => i.manifestDigest === ref.digest && i.repository === ref.repository);
      return byManifest ?? null;
    }
    const id = this.db.resolveTag(ref.string());
    return id ? this.db.getImage(id) : null;
  }

  /** Like get() but throws a NotFoundError naming the reference. */
  require(refOrId: string): ImageRecord {
    const img = this.get(refOrId);
    if (!img) throw new NotFoundError(`image "${refOrId}" is not in the local store (${this.root}); pull it first`);
    return img;
  }

  list(): ImageRecord[] {
    return this.db.listImages();
  }

  async config(img: ImageRecord): Promise<ImageConfig> {
    return parseImageConfig(await this.content.readBytes(img.id));
  }

  /** docker-inspect-like view of an image. */
  async inspect(refOrId: string): Promise<Record<string, unknown>> {
    const img = this.require(refOrId);
    const cfg = await this.config(img);
    return {
      Id: img.id,
      RepoTags: img.repoTags.map(familiar),
      RepoDigests: img.repoDigests.map(familiar),
      Created: cfg.created ?? img.created,
      Author: cfg.author ?? '',
      Architecture: cfg.architecture,
      Variant: cfg.variant,
      Os: cfg.os,
      Size: img.size,
      Config: cfg.config ?? {},
      RootFS: { Type: 'layers', Layers: cfg.rootfs.diff_ids },
      Manifest: { Digest: img.manifestDigest, MediaType: img.manifestMediaType, Layers: img.layers.map((l) => ({ Digest: l.digest, MediaType: l.mediaType, Size: l.size })) },
      Metadata: { AddedAt: new Date(img.addedAt).toISOString() },
    };
  }

  /** Snapshot dirs and config the engine needs to build a container's rootfs. */
  async rootfsFor(refOrId: string): Promise<RootfsInfo> {
    const image = this.require(refOrId);
    const config = await this.config(image);
    const chain = image.layers.map((l) => l.chainId);
    return { image, config, chainIds: chain, lowerDirs: this.snapshots.lowerDirs(chain) };
  }

  addImageUse(imageId: string, containerId: string, chainId: string | null = null): void {
    this.db.addImageUse(imageId, containerId, chainId);
  }

  removeImageUse(imageId: string | null, containerId: string): void {
    this.db.removeImageUse(imageId, containerId);
  }

  // ---------------------------------------------------------------- pull

  async pull(input: string, opts: PullOptions = {}): Promise<ImageRecord> {
    const ref = parseReference(input);
    const concurrency = opts.concurrency ?? 6;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 6) {
      throw new BerthError('EINVAL', `pull concurrency must be an integer from 1 to 6, not ${concurrency}`);
    }
    const emit = opts.onProgress ?? (() => {});
    const client = this.registry(ref, opts);
    const want = opts.platform ?? hostPlatform();
    emit({ type: 'resolving', ref: ref.familiar() });

    // HEAD first: an image we already have under this digest costs no GET (Docker Hub's limits).
    const head = ref.digest ? null : await client.headManifest(ref, ref.ref).catch(() => null);
    const topDigest = ref.digest ?? head?.digest;
    if (topDigest && !opts.platform) {
      const have = this.db.resolveRepoDigest(`${ref.repository}@${topDigest}`);
      const img = have ? this.db.getImage(have) : null;
      if (img && img.layers.every((l) => this.snapshots.get(l.chainId)) && this.content.hasSync(img.id)) {
        if (ref.tag) this.db.setTag(ref.string(), img.id);
        emit({ type: 'resolved', ref: ref.familiar(), manifestDigest: topDigest, layers: [] });
        emit({ type: 'done', ref: ref.familiar(), manifestDigest: topDigest, imageId: img.id, downloaded: false });
        return this.db.getImage(img.id)!;
      }
    }

    warmUnpackThreads(); // they boot while the manifest and config download
    let top = await client.getManifest(ref, topDigest ?? ref.ref);
    if (ref.digest && top.digest !== ref.digest) {
      throw new BerthError('EDIGEST', `manifest for ${ref.string()} has digest ${top.digest}, not the one asked for`);
    }
    const repoDigest = top.digest;
    let parsed = parseManifestOrIndex(top.bytes, top.mediaType);
    if (parsed.kind === 'index') {
      const desc = selectPlatform(parsed.index, want);
      top = await client.getManifest(ref, desc.digest);
      if (top.digest !== desc.digest) throw new BerthError('EDIGEST', `manifest ${desc.digest} of ${ref.string()} came back with digest ${top.digest}`);
      parsed = parseManifestOrIndex(top.bytes, top.mediaType);
      if (parsed.kind !== 'manifest') throw new BerthError('EMANIFEST', `${ref.string()}: platform entry ${desc.digest} is another index; nested indexes are not supported`);
    }
    const manifest: ImageManifest = parsed.manifest;
    await this.content.writeBlob(top.bytes, top.digest);

    // config
    await this.content.ingest(manifest.config.digest, manifest.config.size, (off) => client.openBlob(ref, manifest.config.digest, off, opts.signal), { source: ref.string(), signal: opts.signal });
    const config = parseImageConfig(await this.content.readBytes(manifest.config.digest));
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new BerthError('EMANIFEST', `${ref.string()}: the manifest has ${manifest.layers.length} layers but the config lists ${diffIds.length} diff_ids`);
    }
    const chain = chainIds(diffIds);
    emit({ type: 'resolved', ref: ref.familiar(), manifestDigest: repoDigest, layers: manifest.layers.map((l) => ({ digest: l.digest, size: l.size })) });

    let downloaded = false;
    const jobs = manifest.layers.map((layer, i) => async () => {
      const have = this.snapshots.get(chain[i]) && this.content.hasSync(layer.digest);
      if (have) {
        emit({ type: 'layer', digest: layer.digest, status: 'exists', current: layer.size, total: layer.size });
        return;
      }
      downloaded = true;
      await this.fetchLayer(ref, client, layer, diffIds[i], chain[i], i > 0 ? chain[i - 1] : null, opts, emit);
      emit({ type: 'layer', digest: layer.digest, status: 'complete', current: layer.size, total: layer.size });
    });
    await limit(concurrency, jobs);

    const layers: LayerRecord[] = manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size, diffId: diffIds[i], chainId: chain[i] }));
    const img = this.db.putImage({
      id: manifest.config.digest,
      manifestDigest: top.digest,
      manifestMediaType: top.mediaType,
      repository: ref.repository,
      size: manifest.config.size + manifest.layers.reduce((a, l) => a + l.size, 0),
      created: config.created ?? null,
      os: config.os,
      architecture: config.architecture,
      variant: config.variant ?? null,
      layers,
    }, ref.tag ? [ref.string()] : [], [`${ref.repository}@${repoDigest}`]);
    emit({ type: 'done', ref: ref.familiar(), manifestDigest: repoDigest, imageId: img.id, downloaded });
    return img;
  }

  /** Download one layer blob and unpack it as it arrives (one read of the network stream). */
  private async fetchLayer(ref: ImageReference, client: RegistryAPI, layer: Descriptor, diffId: string, chainId: string, parent: string | null,
    opts: PullOptions, emit: (ev: PullEvent) => void): Promise<void> {
    const open = (off: number) => client.openBlob(ref, layer.digest, off, opts.signal);
    const onProgress = (done: number, total: number) => emit({ type: 'layer', digest: layer.digest, status: 'downloading', current: done, total });
    for (let attempt = 0; ; attempt++) {
      let ingest: Promise<unknown> | null = null;
      let pipe: PassThrough | null = null;
      const abort = new AbortController();
      const signal = opts.signal ? AbortSignal.any([opts.signal, abort.signal]) : abort.signal;
      // The unpacker hashes the blob's bytes on its worker thread; ingest verifies that digest.
      let gotDigest: (d: string | null) => void = () => {};
      const unpackDigest = new Promise<string | null>((r) => { gotDigest = r; });
      try {
        await this.snapshots.prepare({
          chainId, parent, diffId, signal: opts.signal,
          transferChunks: true, // the content store hands its batches over (IngestOptions.onChunk)
          sourceDigest: (d) => gotDigest(d),
          open: async () => {
            const p = new PassThrough({ highWaterMark: 1 << 20 });
            pipe = p;
            ingest = this.content.ingest(layer.digest, layer.size, open, {
              source: ref.string(), signal, onProgress,
              onChunk: (c) => writeWithBackpressure(p, c),
              teeDigest: () => {
                if (!p.writableEnded) p.end();
                return unpackDigest;
              },
            });
            ingest.then(() => { if (!p.writableEnded) p.end(); }, (e: unknown) => p.destroy(e instanceof Error ? e : new Error(String(e))));
            return p;
          },
        }).catch((e: unknown) => {
          gotDigest(null);
          abort.abort(e);
          (pipe as PassThrough | null)?.destroy(e instanceof Error ? e : new Error(String(e)));
          throw e;
        });
        if (ingest) await ingest;
        else await this.content.ingest(layer.digest, layer.size, open, { source: ref.string(), signal, onProgress });
        return;
      } catch (e) {
        if (ingest) await (ingest as Promise<unknown>).catch(() => {});
        if (attempt === 0 && e instanceof BerthError && e.code === 'ERANGE') continue;
        throw e;
      }
    }
  }

  // ---------------------------------------------------------------- tag / remove / prune

  tag(src: string, dst: string): ImageRecord {
    const img = this.require(src);
    const ref = parseReference(dst);
    if (ref.digest) throw new BerthError('EINVAL', `cannot tag with a digest reference "${dst}"; give name:tag`);
    this.db.setTag(ref.string(), img.id);
    return this.db.getImage(img.id)!;
  }

  /**
   * `rmi`: a tag reference untags (and deletes the image when it was its last tag); an id deletes
   * the image. Refuses an image a container uses unless force (then it is only untagged, as
   * docker does). Snapshots and blobs no other image uses are removed.
   */
  remove(refOrId: string, opts: { force?: boolean } = {}): RemoveResult {
    const img = this.require(refOrId);
    const res: RemoveResult = { untagged: [], deleted: [] };
    const uses = this.db.usesOf(img.id);
    let byTag: string | null = null;
    try {
      const ref = parseReference(refOrId);
      if (!ref.digest && this.db.resolveTag(ref.string()) === img.id) byTag = ref.string();
    } catch {}
    const deleteImage = this.db.tx(() => {
      if (byTag && img.repoTags.length > 1) {
        this.db.removeTag(byTag);
        res.untagged.push(familiar(byTag));
        return false;
      }
      if (!byTag && img.repoTags.length > 1 && !opts.force) {
        throw new ImageConflictError(`image ${shortId(img.id)} is tagged in ${img.repoTags.length} repositories (${img.repoTags.map(familiar).join(', ')}); remove them by name or use --force`);
      }
      if (uses.length > 0) {
        if (!opts.force) {
          throw new ImageInUseError(`image ${byTag ? familiar(byTag) : shortId(img.id)} is used by container${uses.length > 1 ? 's' : ''} ${uses.join(', ')}; remove ${uses.length > 1 ? 'them' : 'it'} first or use --force`);
        }
        for (const t of img.repoTags) { this.db.removeTag(t); res.untagged.push(familiar(t)); }
        return false;
      }
      for (const t of img.repoTags) res.untagged.push(familiar(t));
      for (const d of img.repoDigests) res.untagged.push(familiar(d));
      this.db.deleteImage(img.id);
      res.deleted.push(img.id);
      return true;
    });
    if (deleteImage) this.collect([img]);
    return res;
  }

  /** Remove dangling images (no tags) that no container uses; `all` removes every unused image. */
  prune(opts: { all?: boolean } = {}): RemoveResult {
    const res: RemoveResult = { untagged: [], deleted: [] };
    const removed: ImageRecord[] = [];
    this.db.tx(() => {
      for (const img of this.db.listImages()) {
        if ((img.repoTags.length > 0 && !opts.all) || this.db.usesOf(img.id).length > 0) continue;
        for (const t of img.repoTags) res.untagged.push(familiar(t));
        this.db.deleteImage(img.id);
        res.deleted.push(img.id);
        removed.push(img);
      }
    });
    this.collect(removed);
    return res;
  }

  /** Remove snapshots and blobs of removed images that no remaining image references. */
  private collect(removed: ImageRecord[]): void {
    if (removed.length === 0) return;
    const chains = new Set<string>();
    const blobs = new Set<string>();
    for (const img of this.db.listImages()) {
      blobs.add(img.id);
      blobs.add(img.manifestDigest);
      for (const l of img.layers) { chains.add(l.chainId); blobs.add(l.digest); }
    }
    for (const u of this.db.db.prepare('SELECT chain_id FROM image_uses WHERE chain_id IS NOT NULL').all() as { chain_id: string }[]) chains.add(u.chain_id);
    for (const img of removed) {
      for (const l of img.layers) {
        if (!chains.has(l.chainId)) this.snapshots.remove(l.chainId);
        if (!blobs.has(l.digest)) void this.content.delete(l.digest).catch(() => {});
      }
      for (const d of [img.id, img.manifestDigest]) if (!blobs.has(d)) void this.content.delete(d).catch(() => {});
    }
  }

  // ---------------------------------------------------------------- push

  /** Push a local image to `target` (default: its own tag): blobs first, then the manifest. */
  async push(src: string, target: string | undefined, opts: PushOptions = {}): Promise<{ ref: string; digest: string }> {
    const img = this.require(src);
    const ref = parseReference(target ?? src);
    if (ref.digest) throw new BerthError('EINVAL', `push target "${target ?? src}" must be name:tag, not a digest`);
    const client = this.registry(ref, opts);
    const say = opts.onProgress ?? (() => {});
    const manifestBytes = await this.content.readBytes(img.manifestDigest);
    const manifest = parseManifestOrIndex(manifestBytes, img.manifestMediaType);
    if (manifest.kind !== 'manifest') throw new BerthError('EMANIFEST', `image ${shortId(img.id)} has no single-platform manifest to push`);
    let srcRef: ImageReference | null = null;
    try { srcRef = img.repository ? parseReference(img.repository) : null; } catch {}
    const descs: Descriptor[] = [...manifest.manifest.layers, manifest.manifest.config];
    for (const d of descs) {
      if (await client.hasBlob(ref, d.digest)) { say(`${d.digest.slice(7, 19)}: Layer already exists`); continue; }
      if (srcRef && srcRef.domain === ref.domain && srcRef.path !== ref.path && await client.mountBlob(ref, d.digest, srcRef.path)) {
        say(`${d.digest.slice(7, 19)}: Mounted from ${srcRef.path}`);
        continue;
      }
      if (!this.content.hasSync(d.digest)) throw new NotFoundError(`blob ${d.digest} of image ${shortId(img.id)} is not in the content store; pull the image again before pushing`);
      await client.uploadBlob(ref, d.digest, d.size, () => this.content.openRead(d.digest) as AsyncIterable<Uint8Array>);
      say(`${d.digest.slice(7, 19)}: Pushed`);
    }
    const digest = await client.putManifest(ref, ref.ref, manifestBytes, img.manifestMediaType);
    if (digest && digest !== sha256Digest(manifestBytes)) throw new BerthError('EDIGEST', `registry stored the manifest under ${digest}, expected ${sha256Digest(manifestBytes)}`);
    return { ref: ref.familiar(), digest: sha256Digest(manifestBytes) };
  }

  /** Record an image whose blobs are already in the content store and whose layers get unpacked from them (load). */
  async importImage(manifestBytes: Buffer, manifestMediaType: string, tags: string[], repository = ''): Promise<ImageRecord> {
    const digest = sha256Digest(manifestBytes);
    await this.content.writeBlob(manifestBytes, digest);
    const parsed = parseManifestOrIndex(manifestBytes, manifestMediaType);
    if (parsed.kind !== 'manifest') throw new BerthError('EMANIFEST', 'importImage needs a single-platform manifest');
    const m = parsed.manifest;
    const config = parseImageConfig(await this.content.readBytes(m.config.digest));
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== m.layers.length) throw new BerthError('EMANIFEST', `the manifest has ${m.layers.length} layers but the config lists ${diffIds.length} diff_ids`);
    const chain = chainIds(diffIds);
    await limit(3, m.layers.map((l, i) => async () => {
      await this.snapshots.prepare({ chainId: chain[i], parent: i > 0 ? chain[i - 1] : null, diffId: diffIds[i], open: async () => this.content.openRead(l.digest) });
    }));
    const canon = tags.map((t) => parseReference(t)).map((r) => {
      if (r.digest || !r.tag) throw new BerthError('EINVAL', `tag "${r.string()}" must be name:tag`);
      return r.string();
    });
    return this.db.putImage({
      id: m.config.digest, manifestDigest: digest, manifestMediaType, repository,
      size: m.config.size + m.layers.reduce((a, l) => a + l.size, 0), created: config.created ?? null,
      os: config.os, architecture: config.architecture, variant: config.variant ?? null,
      layers: m.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size, diffId: diffIds[i], chainId: chain[i] })),
    }, canon);
  }
}

function writeWithBackpressure(pipe: PassThrough, c: Uint8Array): void | Promise<void> {
  if (pipe.destroyed) throw pipe.errored ?? new BerthError('EUNPACK', 'layer unpack stopped');
  if (pipe.write(c)) return;
  return new Promise<void>((resolve, reject) => {
    const done = () => { pipe.off('drain', done); pipe.off('close', closed); resolve(); };
    const closed = () => { pipe.off('drain', done); pipe.off('close', closed); reject(pipe.errored ?? new BerthError('EUNPACK', 'layer unpack stopped')); };
    pipe.on('drain', done);
    pipe.on('close', closed);
  });
}

export function familiar(canonical: string): string {
  try { return parseReference(canonical).familiar(); } catch { return canonical; }
}

/** Docker's short form of a repository name without tag: docker.io/library/alpine → alpine. */
export function familiarRepository(repository: string): string {
  try {
    const r = parseReference(repository);
    const f = r.familiar();
    const suffix = `${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
    return f.endsWith(suffix) ? f.slice(0, f.length - suffix.length) : f;
  } catch { return repository; }
}

export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

