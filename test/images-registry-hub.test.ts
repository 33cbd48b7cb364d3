import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient, type RateLimitInfo, type RetryInfo } from '../images/registry/client.js';
import { RateLimitError } from '../images/registry/errors.js';
import { parseReference } from '../images/reference.js';
import { ContentStore } from '../images/content.js';
import { startRegistry } from './fixtures/registry.js';
import { startHubFront } from './fixtures/hub-front.js';
import { multilayerImage, pushTestImage } from './fixtures/images.js';

t.setTimeout(120_000);

t.test('Docker Hub protocol through the hub front', async (t) => {
  const reg = await startRegistry();
  t.teardown(() => reg.stop());
  const img = await multilayerImage({ layers: 1, layerSize: 300_000 });
  await pushTestImage(reg.host, 'library/busy', 'latest', img);
  const hub = await startHubFront({ upstream: reg.url });
  t.teardown(() => hub.stop());
  const root = mkdtempSync(join(tmpdir(), 'berth-content-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const store = new ContentStore(root);
  const limits: RateLimitInfo[] = [];
  const retries: RetryInfo[] = [];
  const client = new RegistryClient({ credentials: () => undefined, backoffMs: 20, onRateLimit: (i) => limits.push(i), onRetry: (r) => retries.push(r) });
  const ref = parseReference(`${hub.host}/library/busy:latest`);
  const layer = img.manifests[0].layers[1];

  await t.test('blob redirect is followed without the Authorization header', async (t) => {
    const head = await client.headManifest(ref);
    t.equal(head.digest, img.digest);
    t.equal(limits.length, 0, 'HEAD carries no rate-limit count');
    const m = await client.getManifest(ref);
    t.equal(m.digest, img.digest);
    t.same(limits.at(-1), { host: hub.host, limit: 100, remaining: 99, windowS: 21600 }, 'ratelimit-remaining reported');
    t.equal(client.rateLimit(hub.host)?.remaining, 99);
    const r = await store.ingest(layer.digest, layer.size, (off) => client.openBlob(ref, layer.digest, off));
    t.equal(r.fetched, layer.size);
    const cdn = hub.requests.filter((x) => x.where === 'cdn');
    t.equal(cdn.length, 1);
    t.equal(cdn[0].authorization, false, 'no Authorization header reached the CDN');
    t.equal(cdn[0].status, 200);
    t.ok(hub.requests.some((x) => x.where === 'front' && x.status === 307 && x.authorization), 'the front got the token');
    t.equal(hub.tokenRequests.length, 1, 'one token for the whole pull');
    t.same(hub.tokenRequests[0].scopes, ['repository:library/busy:pull']);
  });

  await t.test('429 with Retry-After: 1, then success', async (t) => {
    hub.inject({ where: 'front', match: /^GET \/v2\/library\/busy\/manifests\//, status: 429, retryAfter: '1' });
    const t0 = Date.now();
    const m = await client.getManifest(ref);
    t.equal(m.digest, img.digest);
    t.ok(Date.now() - t0 >= 950, `waited for Retry-After (${Date.now() - t0} ms)`);
    t.ok(limits.some((l) => l.retryAfterMs === 1000), 'the 429 was reported with its Retry-After');
    // a Retry-After longer than we are willing to wait is an error that says so
    hub.inject({ where: 'front', match: /manifests/, status: 429, retryAfter: '3600' });
    const e = await client.getManifest(ref).catch((x: unknown) => x);
    t.ok(e instanceof RateLimitError);
    t.match((e as Error).message, /rate limiting requests \(429 Too Many Requests, retry after 3600 s/);
  });

  await t.test('500 then success (retries with backoff)', async (t) => {
    retries.length = 0;
    hub.inject({ where: 'front', match: /manifests/, status: 500, count: 2 });
    t.equal((await client.getManifest(ref)).digest, img.digest);
    t.same(retries.map((r) => r.reason), ['HTTP 500', 'HTTP 500']);
    hub.inject({ where: 'front', match: /manifests/, status: 503, count: 4 }); // = the client's tries
    await t.rejects(client.getManifest(ref), { code: 'EREGISTRY', status: 503 }, 'bounded tries, then the error');
  });

  await t.test('dropped connection mid-blob, then resume with Range', async (t) => {
    await store.delete(layer.digest);
    const before = hub.requests.length;
    hub.inject({ where: 'cdn', drop: true });
    const r = await store.ingest(layer.digest, layer.size, (off) => client.openBlob(ref, layer.digest, off));
    t.ok(r.fetched >= layer.size / 2);
    const cdn = hub.requests.slice(before).filter((x) => x.where === 'cdn');
    t.equal(cdn.length, 2, 'two CDN requests');
    t.equal(cdn[0].fault, 'drop');
    t.match(cdn[1].range ?? '', /^bytes=[1-9]\d*-$/, 'the second one resumes with Range');
    t.equal(cdn[1].status, 206);
    t.ok((await store.readBytes(layer.digest)).equals(layer.bytes));
  });
});
