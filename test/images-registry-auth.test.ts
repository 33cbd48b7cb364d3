import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWWWAuthenticate, parseScopes, unionScopes, formatScopes, coversScopes, TokenCache } from '../images/registry/auth.js';
import { dockerConfigPath, loadCredentials, parseCredsFlag, removeCredentials, saveCredentials, CredentialsError } from '../images/registry/credentials.js';
import { isLoopbackHost, parseRetryAfter, plainHttpAllowed } from '../images/registry/transport.js';

t.test('WWW-Authenticate parsing', async (t) => {
  t.same(parseWWWAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' } },
  ]);
  t.same(parseWWWAuthenticate('Bearer realm="r",service="s",scope="repository:a:pull,push",error="insufficient_scope"')[0].params.error, 'insufficient_scope');
  t.same(parseWWWAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  t.same(parseWWWAuthenticate('Basic realm="a, b", Bearer realm="x",service=y').map((c) => c.scheme), ['basic', 'bearer']);
  t.same(parseWWWAuthenticate('Bearer realm="x\\"y"')[0].params.realm, 'x"y');
  t.same(parseWWWAuthenticate(''), []);
});

t.test('scopes and the token cache', async (t) => {
  const a = parseScopes('repository:x:pull');
  const b = parseScopes('repository:x:push repository:y:pull');
  const u = unionScopes(a, b);
  t.same(formatScopes(u), ['repository:x:pull,push', 'repository:y:pull']);
  t.ok(coversScopes(u, a));
  t.notOk(coversScopes(a, u));
  let now = 1_000_000;
  const c = new TokenCache(() => now);
  c.put('h', 'r', 's', u, 'tok', 300);
  t.equal(c.get('h', 'r', 's', parseScopes('repository:y:pull')), 'tok', 'a wider token serves a narrower scope');
  t.equal(c.get('h', 'r', 's', parseScopes('repository:z:pull')), undefined);
  now += 295_000;
  t.equal(c.get('h', 'r', 's', a), undefined, 'expires a little before expires_in');
});

t.test('transport policy', async (t) => {
  t.ok(isLoopbackHost('127.0.0.1:5000'));
  t.ok(isLoopbackHost('127.9.9.9'));
  t.ok(isLoopbackHost('localhost:80'));
  t.ok(isLoopbackHost('[::1]:5000'));
  t.notOk(isLoopbackHost('128.0.0.1'));
  t.notOk(isLoopbackHost('registry-1.docker.io'));
  t.ok(plainHttpAllowed('myreg:5000', ['myreg:5000']));
  t.ok(plainHttpAllowed('myreg:5000', ['myreg']));
  t.notOk(plainHttpAllowed('other:5000', ['myreg']));
  t.equal(parseRetryAfter('2'), 2000);
  t.equal(parseRetryAfter(new Date(Date.now() + 10_000).toUTCString()) !== undefined, true);
  t.equal(parseRetryAfter('soon'), undefined);
});

t.test('docker config credentials, login and logout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-dockercfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(dockerConfigPath(undefined, { DOCKER_CONFIG: dir }), join(dir, 'config.json'));
  t.equal(dockerConfigPath(undefined, { HOME: '/home/x' }), '/home/x/.docker/config.json');
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({
    auths: {
      'https://index.docker.io/v1/': { auth: Buffer.from('hubuser:hub:pass').toString('base64') },
      'https://myreg.example.com': { username: 'u2', password: 'p2' },
      'tok.example.com:5000': { identitytoken: 'refresh-xyz' },
      'bad.example.com': { auth: Buffer.from('nocolon').toString('base64') },
    },
    psFormat: 'table {{.ID}}', // credsStore/credHelpers: test/images-credential-helpers.test.ts
  }));
  t.same(loadCredentials('docker.io', { configPath: cfg }), { username: 'hubuser', password: 'hub:pass' });
  t.same(loadCredentials('registry-1.docker.io', { configPath: cfg }), { username: 'hubuser', password: 'hub:pass' });
  t.same(loadCredentials('myreg.example.com', { configPath: cfg }), { username: 'u2', password: 'p2' });
  t.same(loadCredentials('tok.example.com:5000', { configPath: cfg }), { identityToken: 'refresh-xyz' });
  t.equal(loadCredentials('none.example.com', { configPath: cfg }), undefined);
  t.throws(() => loadCredentials('bad.example.com', { configPath: cfg }), CredentialsError);
  t.equal(loadCredentials('x', { configPath: join(dir, 'missing.json') }), undefined, 'no file: no credentials');

  saveCredentials('127.0.0.1:5000', { username: 'me', password: 'secret' }, { configPath: cfg });
  t.equal(statSync(cfg).mode & 0o777, 0o600, 'mode 0600');
  const doc = JSON.parse(readFileSync(cfg, 'utf8')) as { auths: Record<string, { auth: string }>; psFormat: string };
  t.equal(doc.psFormat, 'table {{.ID}}', 'other keys kept');
  t.equal(Buffer.from(doc.auths['127.0.0.1:5000'].auth, 'base64').toString(), 'me:secret');
  t.same(loadCredentials('127.0.0.1:5000', { configPath: cfg }), { username: 'me', password: 'secret' });
  saveCredentials('docker.io', { username: 'new', password: 'pw' }, { configPath: cfg });
  t.ok(JSON.parse(readFileSync(cfg, 'utf8')).auths['https://index.docker.io/v1/'], 'Docker Hub key as docker writes it');
  t.same(loadCredentials('docker.io', { configPath: cfg }), { username: 'new', password: 'pw' });
  t.ok(removeCredentials('127.0.0.1:5000', { configPath: cfg }));
  t.notOk(removeCredentials('127.0.0.1:5000', { configPath: cfg }));
  t.equal(loadCredentials('127.0.0.1:5000', { configPath: cfg }), undefined);

  mkdirSync(join(dir, 'fresh'));
  saveCredentials('h', { username: 'a', password: 'b' }, { configPath: join(dir, 'fresh', 'sub', 'config.json') });
  t.same(loadCredentials('h', { configPath: join(dir, 'fresh', 'sub', 'config.json') }), { username: 'a', password: 'b' });
  writeFileSync(join(dir, 'broken.json'), '{not json');
  t.throws(() => loadCredentials('h', { configPath: join(dir, 'broken.json') }), /broken.json is not valid JSON/);

  t.same(parseCredsFlag('user:pa:ss'), { username: 'user', password: 'pa:ss' });
  t.same(parseCredsFlag('user'), { username: 'user', password: '' });
  t.throws(() => parseCredsFlag(':x'), CredentialsError);
});
