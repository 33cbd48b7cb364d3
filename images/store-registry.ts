/**
 * Adapts images/registry's RegistryClient to the small RegistryAPI the ImageStore uses (so the
 * store can be driven by another client in tests or by the engine).
 */
import { RegistryClient } from './registry/client.js';
import { parseReference } from './reference.js';
import type { RegistryAPI, RegistryOptions } from './store.js';
import type { ImageReference } from './reference.js';

export function defaultRegistryFactory(_ref: ImageReference, opts: RegistryOptions): RegistryAPI {
  const c = new RegistryClient({
    ...(opts.creds ? { creds: opts.creds } : {}),
    ...(opts.insecure ? { insecure: opts.insecure } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onRateLimit ? { onRateLimit: opts.onRateLimit } : {}),
  });
  return {
    headManifest: async (r) => {
      const h = await c.headManifest(r, { signal: opts.signal });
      return h.digest ? { digest: h.digest, mediaType: h.mediaType, size: h.size ?? 0 } : null;
    },
    getManifest: async (r, tagOrDigest) => {
      const m = await c.getManifest(r, { signal: opts.signal, ...(tagOrDigest !== r.ref ? { reference: tagOrDigest } : {}) });
      return { bytes: m.bytes, mediaType: m.mediaType, digest: m.digest };
    },
    openBlob: async (r, digest, offset, signal) => {
      const o = await c.openBlob(r, digest, offset, { signal: signal ?? opts.signal });
      return { body: o.chunks, offset: o.offset };
    },
    hasBlob: (r, digest) => c.blobExists(r, digest, { push: true }),
    mountBlob: (r, digest, fromPath) => c.mountBlob(r, digest, parseReference(`${r.domain}/${fromPath}`)),
    uploadBlob: async (r, digest, size, body) => { await c.pushBlob(r, digest, body, size); },
    putManifest: (r, _tagOrDigest, bytes, mediaType) => c.putManifest(r, bytes, mediaType),
  };
}
