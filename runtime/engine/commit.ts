/**
 * `berth commit`: a container's overlay upper dir becomes one new layer on top of its image's
 * layers (whiteouts and opaque dirs turned back into OCI form by tree-tar.ts), with a new config
 * (diff_id and history appended, optional Cmd/Entrypoint/Env/WorkingDir/User/Labels changes) and
 * an OCI manifest, recorded in the image store under the given tag.
 */
import type { ImageStore } from '../../images/store.js';
import type { ImageRecord } from '../../images/db.js';
import type { ImageConfig } from '../../images/manifest.js';
import { packTree } from './tree-tar.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';

const DOCKER_TO_OCI: Record<string, string> = {
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar': OCI_LAYER,
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
};

export type ConfigChanges = NonNullable<ImageConfig['config']>;

export interface CommitOptions {
  /** name:tag for the new image (optional: an untagged image otherwise). */
  tag?: string;
  author?: string;
  comment?: string;
  changes?: ConfigChanges;
  /** What the history entry says created the layer. */
  createdBy?: string;
}

interface Descriptor { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }

export async function commitUpperDir(store: ImageStore, baseImage: string, upperDir: string, opts: CommitOptions = {}): Promise<ImageRecord> {
  const base = store.require(baseImage);
  const config = await store.config(base);
  const manifest = JSON.parse((await store.content.readBytes(base.manifestDigest)).toString('utf8')) as { layers: Descriptor[] };
  const chunks: Buffer[] = [];
  for await (const c of packTree(upperDir, { layer: true }) as AsyncIterable<Buffer>) chunks.push(c);
  const layer = await store.content.writeBlob(Buffer.concat(chunks));
  const created = new Date().toISOString();
  const next: ImageConfig = {
    ...config,
    created,
    ...(opts.author ? { author: opts.author } : {}),
    config: { ...config.config, ...opts.changes },
    rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids, layer.digest] },
    history: [...(config.history ?? []), { created, created_by: opts.createdBy ?? 'berth commit', ...(opts.comment ? { comment: opts.comment } : {}) }],
  };
  const cfg = await store.content.writeBlob(Buffer.from(JSON.stringify(next)));
  const m = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: cfg.digest, size: cfg.size },
    layers: [
      ...manifest.layers.map((l) => ({ mediaType: DOCKER_TO_OCI[l.mediaType] ?? l.mediaType, digest: l.digest, size: l.size })),
      { mediaType: OCI_LAYER, digest: layer.digest, size: layer.size },
    ],
  };
  return store.importImage(Buffer.from(JSON.stringify(m)), OCI_MANIFEST, opts.tag ? [opts.tag] : []);
}
