import t from 'tap';
import {
  hostPlatform, MediaType, ManifestError, normalizePlatform, parseImageConfig, parseManifestOrIndex, parsePlatform,
  PlatformError, Schema1Error, selectPlatform, type ImageIndex,
} from '../images/manifest.js';
import { baseImage, dockerSchema2Image, multiarchImage } from './fixtures/images.js';

const d = (c: string) => 'sha256:' + c.repeat(64);

t.test('parses fixture manifests and indexes', async (t) => {
  const base = await baseImage();
  const p = parseManifestOrIndex(base.bytes, MediaType.OCI_MANIFEST);
  t.equal(p.kind, 'manifest');
  if (p.kind === 'manifest') {
    t.equal(p.manifest.layers.length, 1);
    t.equal(p.manifest.config.mediaType, MediaType.OCI_CONFIG);
  }
  const ds = await dockerSchema2Image();
  const q = parseManifestOrIndex(ds.bytes, `${MediaType.DOCKER_MANIFEST}; charset=utf-8`);
  t.equal(q.kind === 'manifest' && q.manifest.layers[0].mediaType, MediaType.DOCKER_LAYER_GZIP);
  const ma = await multiarchImage();
  const r = parseManifestOrIndex(ma.bytes, 'application/json');
  t.equal(r.kind, 'index', 'generic content type: the document decides');
  const cfg = parseImageConfig(base.manifests[0].config.bytes);
  t.same(cfg.rootfs.diff_ids, [base.manifests[0].layers[0].diffId]);
});

t.test('bad documents get clear errors', async (t) => {
  const cases: [string, string | undefined, RegExp][] = [
    ['not json', MediaType.OCI_MANIFEST, /not valid JSON/],
    ['[]', MediaType.OCI_MANIFEST, /not a JSON object/],
    ['{"schemaVersion":3}', MediaType.OCI_MANIFEST, /schemaVersion 3/],
    ['{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}', MediaType.OCI_MANIFEST, /manifest.config: not an object/],
    [JSON.stringify({ schemaVersion: 2, config: { mediaType: MediaType.OCI_CONFIG, digest: 'sha256:xyz', size: 1 }, layers: [] }), MediaType.OCI_MANIFEST, /manifest.config.digest/],
    [JSON.stringify({ schemaVersion: 2, config: { mediaType: MediaType.OCI_CONFIG, digest: d('a'), size: -1 }, layers: [] }), MediaType.OCI_MANIFEST, /manifest.config.size/],
    [JSON.stringify({ schemaVersion: 2, config: { mediaType: MediaType.OCI_CONFIG, digest: d('a'), size: 1 }, layers: [{ digest: d('b'), size: 1 }] }), MediaType.OCI_MANIFEST, /layers\[0\].mediaType: missing/],
    [JSON.stringify({ schemaVersion: 2, manifests: {} }), MediaType.OCI_INDEX, /index.manifests: missing or not an array/],
    [JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [] }), MediaType.OCI_MANIFEST, /does not match Content-Type/],
    [JSON.stringify({ schemaVersion: 2, manifests: [] }), 'application/x-weird', /unsupported manifest media type/],
  ];
  for (const [doc, mt, re] of cases) {
    t.throws(() => parseManifestOrIndex(doc, mt), ManifestError, re.source);
    try { parseManifestOrIndex(doc, mt); } catch (e) { t.match((e as Error).message, re); }
  }
  t.throws(() => parseManifestOrIndex('{"schemaVersion":1,"name":"x","fsLayers":[]}', MediaType.DOCKER_SCHEMA1_SIGNED), Schema1Error);
  try { parseManifestOrIndex('{"schemaVersion":1}', undefined); } catch (e) {
    t.match((e as Error).message, /schema1 manifests are not supported \(image too old, re-push it\)/);
  }
});

t.test('platforms: parse and normalise', async (t) => {
  t.same(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' }, 'arm64/v8 is the default variant');
  t.same(parsePlatform('linux/aarch64'), { os: 'linux', architecture: 'arm64' });
  t.same(parsePlatform('linux/x86_64'), { os: 'linux', architecture: 'amd64' });
  t.same(parsePlatform('linux/arm'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  t.same(parsePlatform('linux/arm/6'), { os: 'linux', architecture: 'arm', variant: 'v6' });
  t.same(parsePlatform('arm64'), { os: 'linux', architecture: 'arm64' });
  t.same(normalizePlatform({ os: 'Linux', architecture: 'armhf' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
  t.throws(() => parsePlatform('linux/'), PlatformError);
  t.throws(() => parsePlatform('a/b/c/d'), PlatformError);
  t.throws(() => parsePlatform('nonsense'), PlatformError);
  t.equal(hostPlatform().os, 'linux');
  t.equal(hostPlatform().architecture, process.arch === 'x64' ? 'amd64' : hostPlatform().architecture);
});

t.test('selectPlatform picks the right entry and skips attestations', async (t) => {
  const ma = await multiarchImage();
  const p = parseManifestOrIndex(ma.bytes, MediaType.OCI_INDEX);
  if (p.kind !== 'index') throw new Error('expected index');
  const amd = selectPlatform(p.index, { os: 'linux', architecture: 'x86_64' });
  t.equal(amd.digest, ma.manifests[0].digest);
  const arm = selectPlatform(p.index, parsePlatform('linux/arm64'));
  t.equal(arm.digest, ma.manifests[1].digest, 'arm64 matches the v8 entry');
  t.throws(() => selectPlatform(p.index, { os: 'linux', architecture: 's390x' }), /no manifest for platform linux\/s390x in the index \(it offers: linux\/amd64, linux\/arm64\)/);
  t.throws(() => selectPlatform(p.index, { os: 'unknown', architecture: 'unknown' }), PlatformError, 'attestations are never chosen');

  const idx: ImageIndex = {
    schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [
      { mediaType: MediaType.OCI_MANIFEST, digest: d('1'), size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { mediaType: MediaType.OCI_MANIFEST, digest: d('2'), size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
      { mediaType: MediaType.OCI_MANIFEST, digest: d('3'), size: 1, platform: { os: 'linux', architecture: 'amd64' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
    ],
  };
  t.equal(selectPlatform(idx, parsePlatform('linux/arm')).digest, d('2'), 'arm defaults to v7');
  t.equal(selectPlatform(idx, parsePlatform('linux/arm/v8')).digest, d('2'), 'arm/v8 runs v7');
  t.equal(selectPlatform(idx, parsePlatform('linux/arm/v6')).digest, d('1'));
  t.throws(() => selectPlatform(idx, parsePlatform('linux/amd64')), /no manifest/, 'an attestation entry is ignored even with a real platform');
});
