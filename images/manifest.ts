/**
 * Image manifests and indexes: media-type constants (OCI and Docker schema2), parsing with
 * validation (a malformed document gets an error naming the bad field), schema1 refusal, and
 * platform choice out of an index with containerd-style normalisation
 * (x86_64→amd64, aarch64→arm64, arm64 variant v8, arm variant v7; attestation and
 * unknown/unknown entries ignored).
 */
import { arch as nodeArch } from 'node:process';
import { BerthError } from '../runtime/errors.js';

export const MediaType = {
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_LAYER_ZSTD: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OCI_LAYER_NONDIST: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OCI_LAYER_NONDIST_GZIP: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OCI_LAYER_NONDIST_ZSTD: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_MANIFEST_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_GZIP: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DOCKER_LAYER_FOREIGN_GZIP: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DOCKER_SCHEMA1_MANIFEST: 'application/vnd.docker.distribution.manifest.v1+json',
  DOCKER_SCHEMA1_SIGNED: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** Every manifest type we can read, in preference order: send them all as Accept. */
export const MANIFEST_ACCEPT: readonly string[] = [
  MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST, MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST,
];

export const LAYER_MEDIA_TYPES: ReadonlySet<string> = new Set([
  MediaType.OCI_LAYER, MediaType.OCI_LAYER_GZIP, MediaType.OCI_LAYER_ZSTD,
  MediaType.OCI_LAYER_NONDIST, MediaType.OCI_LAYER_NONDIST_GZIP, MediaType.OCI_LAYER_NONDIST_ZSTD,
  MediaType.DOCKER_LAYER_GZIP, MediaType.DOCKER_LAYER_FOREIGN_GZIP,
  'application/vnd.docker.image.rootfs.diff.tar', // seen in the wild (uncompressed docker layer)
]);

export type Compression = 'none' | 'gzip' | 'zstd';

/** Compression implied by a layer media type (callers should also sniff magic bytes). */
export function layerCompression(mediaType: string): Compression {
  if (mediaType.endsWith('+zstd')) return 'zstd';
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.tar.gzip')) return 'gzip';
  return 'none';
}

export function isIndexMediaType(mt: string): boolean {
  return mt === MediaType.OCI_INDEX || mt === MediaType.DOCKER_MANIFEST_LIST;
}
export function isManifestMediaType(mt: string): boolean {
  return mt === MediaType.OCI_MANIFEST || mt === MediaType.DOCKER_MANIFEST;
}
export function isSchema1MediaType(mt: string): boolean {
  return mt === MediaType.DOCKER_SCHEMA1_MANIFEST || mt === MediaType.DOCKER_SCHEMA1_SIGNED;
}

export class ManifestError extends BerthError {
  constructor(message: string, code = 'EMANIFEST') { super(code, message); }
}

export class Schema1Error extends ManifestError {
  constructor(what = 'image') {
    super(`${what}: schema1 manifests are not supported (image too old, re-push it)`, 'ESCHEMA1');
  }
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  subject?: Descriptor;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export type ParsedManifest = { kind: 'manifest'; manifest: ImageManifest } | { kind: 'index'; index: ImageIndex };

/** The image config (OCI image-spec config.md); fields we use. */
export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: {
    User?: string;
    ExposedPorts?: Record<string, object>;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Volumes?: Record<string, object>;
    WorkingDir?: string;
    Labels?: Record<string, string>;
    StopSignal?: string;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: { created?: string; created_by?: string; empty_layer?: boolean; comment?: string }[];
}

const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkDescriptor(d: unknown, where: string): Descriptor {
  if (!isObj(d)) throw new ManifestError(`${where}: not an object`);
  if (typeof d.mediaType !== 'string' || d.mediaType === '') throw new ManifestError(`${where}.mediaType: missing`);
  if (typeof d.digest !== 'string' || !DIGEST_RE.test(d.digest)) throw new ManifestError(`${where}.digest: ${JSON.stringify(d.digest)} is not a digest`);
  if (d.digest.startsWith('sha256:') && !/^sha256:[0-9a-f]{64}$/.test(d.digest)) throw new ManifestError(`${where}.digest: ${d.digest} is not a sha256 digest`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw new ManifestError(`${where}.size: ${JSON.stringify(d.size)} is not a non-negative integer`);
  if (d.platform !== undefined) {
    const p = d.platform;
    if (!isObj(p) || typeof p.os !== 'string' || typeof p.architecture !== 'string') throw new ManifestError(`${where}.platform: needs os and architecture strings`);
  }
  if (d.annotations !== undefined && !isObj(d.annotations)) throw new ManifestError(`${where}.annotations: not an object`);
  return d as unknown as Descriptor;
}

/**
 * Parse and validate a manifest or index. mediaType is the Content-Type the registry sent
 * (or the descriptor's); when it is missing or generic the document's own mediaType decides.
 */
export function parseManifestOrIndex(bytes: Uint8Array | string, mediaType?: string): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new ManifestError(`manifest is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObj(doc)) throw new ManifestError('manifest is not a JSON object');
  const ct = (mediaType ?? '').split(';')[0].trim();
  const docMt = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (isSchema1MediaType(ct) || (docMt && isSchema1MediaType(docMt)) || doc.schemaVersion === 1) throw new Schema1Error();
  if (doc.schemaVersion !== 2) throw new ManifestError(`manifest schemaVersion ${JSON.stringify(doc.schemaVersion)} is not supported (want 2)`);
  let mt = ct && ct !== 'application/json' && ct !== 'application/octet-stream' && ct !== 'text/plain' ? ct : (docMt ?? '');
  if (!mt) mt = Array.isArray(doc.manifests) ? MediaType.OCI_INDEX : MediaType.OCI_MANIFEST;
  if (docMt && docMt !== mt) throw new ManifestError(`manifest mediaType "${docMt}" does not match Content-Type "${mt}"`);
  if (isIndexMediaType(mt)) {
    if (!Array.isArray(doc.manifests)) throw new ManifestError('index.manifests: missing or not an array');
    const manifests = doc.manifests.map((m, i) => checkDescriptor(m, `index.manifests[${i}]`));
    return { kind: 'index', index: { schemaVersion: 2, mediaType: mt, manifests, ...(isObj(doc.annotations) ? { annotations: doc.annotations as Record<string, string> } : {}) } };
  }
  if (isManifestMediaType(mt)) {
    const config = checkDescriptor(doc.config, 'manifest.config');
    if (!Array.isArray(doc.layers)) throw new ManifestError('manifest.layers: missing or not an array');
    const layers = doc.layers.map((l, i) => checkDescriptor(l, `manifest.layers[${i}]`));
    const out: ImageManifest = { schemaVersion: 2, mediaType: mt, config, layers };
    if (isObj(doc.annotations)) out.annotations = doc.annotations as Record<string, string>;
    if (doc.subject !== undefined) out.subject = checkDescriptor(doc.subject, 'manifest.subject');
    return { kind: 'manifest', manifest: out };
  }
  throw new ManifestError(`unsupported manifest media type "${mt}"`);
}

/** Parse an image config blob, checking the fields a runtime depends on. */
export function parseImageConfig(bytes: Uint8Array | string): ImageConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new ManifestError(`image config is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObj(doc)) throw new ManifestError('image config is not a JSON object');
  const rootfs = doc.rootfs;
  if (!isObj(rootfs) || !Array.isArray(rootfs.diff_ids) || !rootfs.diff_ids.every((d) => typeof d === 'string')) {
    throw new ManifestError('image config rootfs.diff_ids: missing or not a list of digests');
  }
  if (typeof doc.architecture !== 'string' || typeof doc.os !== 'string') throw new ManifestError('image config: architecture and os are required');
  return doc as unknown as ImageConfig;
}

// ---------- platforms ----------

export class PlatformError extends BerthError {
  constructor(message: string) { super('EPLATFORM', message); }
}

const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64', 'x86-64': 'amd64', amd64: 'amd64',
  aarch64: 'arm64', arm64: 'arm64',
  armhf: 'arm', armel: 'arm', arm: 'arm',
  i386: '386', i486: '386', i586: '386', i686: '386', x86: '386', ia32: '386', '386': '386',
  ppc64le: 'ppc64le', ppc64: 'ppc64', s390x: 's390x', riscv64: 'riscv64', mips64le: 'mips64le',
  loong64: 'loong64',
};

/** Normalise a platform as containerd's platforms.Normalize does. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (architecture === 'armhf') variant = variant ?? 'v7';
  if (architecture === 'armel') variant = variant ?? 'v6';
  architecture = ARCH_ALIASES[architecture] ?? architecture;
  if (architecture === 'arm64') {
    if (variant === '8' || variant === 'v8') variant = undefined; // v8 is the default
    else if (variant && /^\d/.test(variant)) variant = `v${variant}`;
  } else if (architecture === 'arm') {
    if (!variant || variant === '7') variant = 'v7';
    else if (/^\d/.test(variant)) variant = `v${variant}`;
  } else if (architecture === 'amd64') {
    if (variant === 'v1') variant = undefined;
  }
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** "linux/arm64/v8", "linux/amd64", "arm64" (os defaults to linux). */
export function parsePlatform(spec: string): Platform {
  const parts = spec.trim().split('/');
  if (parts.some((p) => p === '') || parts.length > 3) throw new PlatformError(`invalid platform "${spec}": want os/arch[/variant], e.g. linux/arm64/v8`);
  let p: Platform;
  if (parts.length === 1) {
    if (ARCH_ALIASES[parts[0].toLowerCase()] === undefined) throw new PlatformError(`invalid platform "${spec}": unknown architecture (want os/arch[/variant])`);
    p = { os: 'linux', architecture: parts[0] };
  } else {
    p = { os: parts[0], architecture: parts[1], ...(parts[2] ? { variant: parts[2] } : {}) };
  }
  if (!/^[a-z0-9_.-]+$/i.test(p.os) || !/^[a-z0-9_.-]+$/i.test(p.architecture)) throw new PlatformError(`invalid platform "${spec}"`);
  return normalizePlatform(p);
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** The platform of this machine, normalised. */
export function hostPlatform(): Platform {
  const archMap: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
  return normalizePlatform({ os: 'linux', architecture: archMap[nodeArch] ?? nodeArch });
}

const ATTESTATION = 'attestation-manifest';

/** True for buildkit attestation entries and unknown/unknown placeholders. */
export function isAttestation(d: Descriptor): boolean {
  if (d.annotations?.['vnd.docker.reference.type'] === ATTESTATION) return true;
  return d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown';
}

/** arm variants an arm/<want> host can run, best first (v8 runs v7, v6, v5). */
function compatibleVariants(arch: string, variant: string | undefined): (string | undefined)[] {
  if (arch === 'arm') {
    const n = Number((variant ?? 'v7').slice(1));
    const out: string[] = [];
    for (let v = n; v >= 5; v--) out.push(`v${v}`);
    return out;
  }
  if (arch === 'amd64') {
    const n = variant ? Number(variant.slice(1)) : 1;
    const out: (string | undefined)[] = [];
    for (let v = n; v >= 2; v--) out.push(`v${v}`);
    out.push(undefined);
    return out;
  }
  return [variant];
}

/**
 * Choose the manifest for `want` out of an index: exact os/arch/variant first, then a
 * compatible older variant. Attestation entries are never chosen. Throws PlatformError listing
 * the platforms the index offers when none fits.
 */
export function selectPlatform(index: ImageIndex, want: Platform): Descriptor {
  const w = normalizePlatform(want);
  const candidates = index.manifests.filter((d) => !isAttestation(d) && d.platform);
  const variants = compatibleVariants(w.architecture, w.variant);
  for (const v of variants) {
    const hit = candidates.find((d) => {
      const p = normalizePlatform(d.platform as Platform);
      return p.os === w.os && p.architecture === w.architecture && p.variant === v;
    });
    if (hit) return hit;
  }
  // arm64 host, entry with an unusual variant (e.g. v8.2): accept same arch when we asked for none
  if (!w.variant) {
    const hit = candidates.find((d) => {
      const p = normalizePlatform(d.platform as Platform);
      return p.os === w.os && p.architecture === w.architecture;
    });
    if (hit) return hit;
  }
  const offered = candidates.map((d) => formatPlatform(normalizePlatform(d.platform as Platform)));
  throw new PlatformError(`no manifest for platform ${formatPlatform(w)} in the index (it offers: ${offered.length ? offered.join(', ') : 'nothing usable'})`);
}

/** Does a config's platform match (used to check single-manifest images against --platform). */
export function platformMatches(have: Platform, want: Platform): boolean {
  const h = normalizePlatform(have);
  const w = normalizePlatform(want);
  return h.os === w.os && h.architecture === w.architecture && compatibleVariants(w.architecture, w.variant).includes(h.variant);
}
