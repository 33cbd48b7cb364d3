import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from '../images/registry/client.js';
import { AuthError, ImageNotFoundError } from '../images/registry/errors.js';
import { parseReference, withRef } from '../images/reference.js';
import { MediaType, parseManifestOrIndex, selectPlatform } from '../images/manifest.js';
import { ContentStore } from '../images/content.js';
import { startRegistry } from './fixtures/registry.js';
import { baseImage, configImage, dockerSchema2Image, multiarchImage, pushTestImage } from './fixtures/images.js';

t.setTimeout(120_000);
const noFileCreds = { credentials: () => undefined };

t.test('plain registry: ping, push, pull back, Accept, blobs, tags, mount', async (t) => {
  const reg = await startRegistry();
  t.teardown(() => reg.stop());
  const client = new RegistryClient(noFileCreds);
  const ping = await client.ping(reg.host);
  t.equal(ping.scheme, 'http', 'loopback falls back to http');
  t.equal(ping.status, 200);

  const base = await baseImage();
  const pushed = await pushTestImage(reg.host, 'berth/base', 'v1', base, { client });
  t.equal(pushed.digest, base.digest);
  const ref = parseReference(`${reg.host}/berth/base:v1`);
  const head = await client.headManifest(ref);
  t.equal(head.digest, base.digest, 'HEAD gives the digest');
  t.equal(head.mediaType, MediaType.OCI_MANIFEST);
  const m = await client.getManifest(ref);
  t.equal(m.digest, base.digest, 'pulled manifest has the pushed digest');
  t.ok(m.bytes.equals(base.bytes));
  const byDigest = await client.getManifest(withRef(ref, { digest: base.digest }));
  t.equal(byDigest.digest, base.digest);

  // Docker schema2: must come back unconverted (same digest) because we send its type
  const ds = await dockerSchema2Image();
  await pushTestImage(reg.host, 'berth/docker', 'v1', ds, { client });
  const dm = await client.getManifest(parseReference(`${reg.host}/berth/docker:v1`));
  t.equal(dm.mediaType, MediaType.DOCKER_MANIFEST);
  t.equal(dm.digest, ds.digest, 'schema2 is not down-converted');

  // OCI index: found only because every Accept type is sent
  const ma = await multiarchImage();
  await pushTestImage(reg.host, 'berth/multi', 'v1', ma, { client });
  const mref = parseReference(`${reg.host}/berth/multi:v1`);
  const im = await client.getManifest(mref);
  t.equal(im.mediaType, MediaType.OCI_INDEX);
  t.equal(im.digest, ma.digest);
  const parsed = parseManifestOrIndex(im.bytes, im.mediaType);
  if (parsed.kind !== 'index') throw new Error('expected an index');
  const arm = selectPlatform(parsed.index, { os: 'linux', architecture: 'arm64' });
  const child = await client.getManifest(withRef(mref, { digest: arm.digest }));
  t.equal(child.digest, ma.manifests[1].digest);
  // without the OCI types the registry does not find it: proves Accept matters
  await t.rejects(client.getManifest(mref, { accept: [MediaType.DOCKER_MANIFEST] }), ImageNotFoundError);

  // blobs: stream one into the content store through openBlob
  const root = mkdtempSync(join(tmpdir(), 'berth-content-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const store = new ContentStore(root);
  const layer = base.manifests[0].layers[0];
  const r = await store.ingest(layer.digest, layer.size, (off) => client.openBlob(ref, layer.digest, off));
  t.equal(r.fetched, layer.size);
  const ranged = await client.openBlob(ref, layer.digest, 1000);
  t.equal(ranged.status, 206);
  t.equal(ranged.offset, 1000);
  t.equal(ranged.size, layer.size);
  ranged.body.destroy();
  const cfg = await client.getBlob(ref, base.manifests[0].config.digest);
  t.ok(cfg.equals(base.manifests[0].config.bytes));
  t.ok(await client.blobExists(ref, layer.digest));
  t.notOk(await client.blobExists(ref, 'sha256:' + '0'.repeat(64)));

  // cross-repository mount
  const other = parseReference(`${reg.host}/berth/other:v1`);
  t.ok(await client.mountBlob(other, layer.digest, ref), 'mounted');
  t.ok(await client.blobExists(other, layer.digest));

  // tags and not-found
  const cimg = await configImage();
  await pushTestImage(reg.host, 'berth/base', 'v2', cimg, { client });
  t.same((await client.listTags(ref)).sort(), ['v1', 'v2']);
  const nf = await client.getManifest(parseReference(`${reg.host}/berth/alpne:latest`)).catch((e: unknown) => e);
  t.ok(nf instanceof ImageNotFoundError);
  t.equal((nf as Error).message, `image ${reg.host}/berth/alpne:latest not found on ${reg.host}`);
  t.equal((nf as ImageNotFoundError).code, 'ENOTFOUND');

  // skopeo reads back what we pushed, with the same digest
  const out = execFileSync('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/berth/base:v1`], { encoding: 'utf8' });
  t.equal(out.trim(), base.bytes.toString('utf8'), 'skopeo sees our manifest bytes');
  const info = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/berth/base:v2`], { encoding: 'utf8' })) as { Digest: string; Env: string[] };
  t.equal(info.Digest, cimg.digest, 'skopeo inspect digest matches');
  t.ok(info.Env.includes('FOO=bar'));
});

t.test('htpasswd Basic auth', async (t) => {
  const reg = await startRegistry({ auth: 'htpasswd' });
  t.teardown(() => reg.stop());
  const creds = { username: reg.username!, password: reg.password! };
  const base = await baseImage();
  await pushTestImage(reg.host, 'secret/base', 'v1', base, { creds });
  const ref = parseReference(`${reg.host}/secret/base:v1`);
  const good = new RegistryClient({ creds });
  t.equal((await good.getManifest(ref)).digest, base.digest, 'right credentials work');
  const anon = new RegistryClient(noFileCreds);
  const e1 = await anon.getManifest(ref).catch((e: unknown) => e);
  t.ok(e1 instanceof AuthError);
  t.match((e1 as Error).message, `authentication required for secret/base on ${reg.host}`);
  t.match((e1 as Error).message, `run berth login ${reg.host}`);
  const wrong = new RegistryClient({ creds: { username: reg.username!, password: 'nope' } });
  const e2 = await wrong.getManifest(ref).catch((e: unknown) => e);
  t.ok(e2 instanceof AuthError);
  t.match((e2 as Error).message, /authentication denied for secret\/base/);
  await t.resolves(good.login(reg.host));
  await t.rejects(wrong.login(reg.host), AuthError);
});

t.test('token auth (the Docker Hub flow) against the real registry', async (t) => {
  const reg = await startRegistry({ auth: 'token', token: { refreshTokens: { 'refresh-berth': 'berth' } } });
  t.teardown(() => reg.stop());
  const ts = reg.tokenServer!;
  const creds = { username: reg.username!, password: reg.password! };
  const base = await baseImage();
  await pushTestImage(reg.host, 'tok/base', 'v1', base, { creds });
  const ref = parseReference(`${reg.host}/tok/base:v1`);

  // anonymous pull is allowed by the token server; the token is cached across fetches
  ts.requests.length = 0;
  const anon = new RegistryClient(noFileCreds);
  t.equal((await anon.getManifest(ref)).digest, base.digest);
  t.equal((await anon.getManifest(ref)).digest, base.digest);
  await anon.getBlob(ref, base.manifests[0].config.digest);
  t.equal(ts.requests.length, 1, 'one token for two manifest fetches and a blob');
  t.same(ts.requests[0].scopes, ['repository:tok/base:pull']);
  t.notOk(ts.requests[0].authorized);

  // anonymous push: the token grants pull only; the registry says insufficient_scope; we ask
  // again for the union scope, are refused again, and say so
  ts.requests.length = 0;
  const e = await anon.pushBlob(parseReference(`${reg.host}/tok/new:v1`), base.manifests[0].config.digest, base.manifests[0].config.bytes).catch((x: unknown) => x);
  t.ok(e instanceof AuthError, 'anonymous push refused');
  t.match((e as Error).message, `authentication required for tok/new on ${reg.host}: run berth login ${reg.host}`);
  t.ok(ts.requests.filter((r) => r.scopes.includes('repository:tok/new:pull,push')).length >= 2, 're-challenged with the union scope');

  // with credentials: pull, then push (a new token with pull,push), then pull again from cache
  ts.requests.length = 0;
  const authed = new RegistryClient({ creds });
  t.equal((await authed.getManifest(ref)).digest, base.digest);
  const dst = parseReference(`${reg.host}/tok/copy:v1`);
  await pushTestImage(reg.host, 'tok/copy', 'v1', base, { client: authed });
  t.equal((await authed.getManifest(dst)).digest, base.digest);
  t.ok(ts.requests.every((r) => r.authorized), 'credentials sent to the token server');
  t.ok(ts.requests.some((r) => r.scopes.includes('repository:tok/copy:pull,push')));
  const before = ts.requests.length;
  await authed.getManifest(dst);
  await authed.getManifest(ref);
  t.equal(ts.requests.length, before, 'cached tokens reused');

  // insufficient_scope for a token we hold: mount needs pull on the source repo as well
  t.ok(await authed.mountBlob(parseReference(`${reg.host}/tok/mounted:v1`), base.manifests[0].layers[0].digest, ref));

  // identity token (OAuth refresh_token grant)
  ts.requests.length = 0;
  const oauth = new RegistryClient({ creds: { identityToken: 'refresh-berth' } });
  t.equal((await oauth.getManifest(ref)).digest, base.digest);
  t.equal(ts.requests[0].method, 'POST');
  t.equal(ts.requests[0].account, 'berth');

  // wrong password: the token server refuses
  const wrong = new RegistryClient({ creds: { username: 'berth', password: 'wrong' } });
  const e3 = await wrong.getManifest(ref).catch((x: unknown) => x);
  t.ok(e3 instanceof AuthError);
  t.match((e3 as Error).message, /authentication denied for tok\/base/);
});
