/**
 * A pull verifies every layer blob's digest (hashed on the unpack worker, checked by the content
 * store) even when the layer itself unpacks fine: a registry that serves other bytes of the same
 * size and the same uncompressed content (here: a gzip header with another mtime) must fail the
 * pull with EDIGEST and leave no blob behind.
 */
import t from 'tap';
import { mkdtempSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ImageStore, type RegistryAPI } from '../images/store.js';
import { buildImage, type TestImage } from './fixtures/images.js';
import { NotFoundError } from '../runtime/errors.js';

function fakeRegistry(img: TestImage, tamper: (digest: string, b: Buffer) => Buffer): RegistryAPI {
  const m = img.manifests[0];
  const blob = (d: string) => {
    const b = img.blobs.get(d);
    if (!b) throw new NotFoundError(`no blob ${d}`);
    return tamper(d, b.bytes);
  };
  const unsupported = () => { throw new Error('not used by pull'); };
  return {
    headManifest: async () => ({ digest: m.digest, mediaType: m.mediaType, size: m.size }),
    getManifest: async () => ({ bytes: m.bytes, mediaType: m.mediaType, digest: m.digest }),
    openBlob: async (_ref, digest, offset) => ({ body: Readable.from([blob(digest).subarray(offset)]), offset }),
    hasBlob: async () => true,
    mountBlob: unsupported,
    uploadBlob: unsupported,
    putManifest: unsupported,
  };
}

t.test('a layer blob with the right content but other bytes fails the pull with EDIGEST', async (t) => {
  const img = await buildImage('layered');
  const layer = img.manifests[0].layers[0];
  t.equal(layer.bytes[0], 0x1f, 'gzip layer');
  const root = mkdtempSync(join(tmpdir(), 'berth-pull-verify-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const store = ImageStore.open(root, {
    registry: () => fakeRegistry(img, (d, b) => {
      if (d !== layer.digest) return b;
      const evil = Buffer.from(b);
      evil[4] ^= 0x01; // gzip MTIME: same size, same tar inside, other digest
      return evil;
    }),
  });
  t.teardown(() => store.close());
  await t.rejects(store.pull('127.0.0.1:5999/berth/verify:v1'), { code: 'EDIGEST' });
  t.notOk(store.content.hasSync(layer.digest), 'the tampered blob is not in the store');
  t.notOk(store.get('127.0.0.1:5999/berth/verify:v1'), 'no image recorded');
  const ingest = join(root, 'content', 'ingest');
  t.same(existsSync(ingest) ? readdirSync(ingest).filter((n) => n.startsWith(layer.digest.slice(7))) : [], [], 'no partial download kept');

  // the honest registry: the same store pulls fine afterwards
  const good = ImageStore.open(root, { registry: () => fakeRegistry(img, (_d, b) => b) });
  t.teardown(() => good.close());
  const rec = await good.pull('127.0.0.1:5999/berth/verify:v1');
  t.equal(rec.layers.length, img.manifests[0].layers.length);
  t.ok(good.content.hasSync(layer.digest));
});
