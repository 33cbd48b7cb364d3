/**
 * Docker credential helpers (credsStore / credHelpers in config.json) against the real registry
 * with htpasswd auth. The helper is a real program on PATH speaking docker-credential-helpers'
 * protocol (get/store/erase over stdin/stdout) and keeping its secrets in its own file, as
 * `pass` or the desktop helpers would; it logs each call so the tests see what berth asked.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { buildImage, pushTestImage } from './fixtures/images.js';
import { loadCredentials, CredentialsError } from '../images/registry/credentials.js';

t.setTimeout(240_000);

const HELPER = `#!/usr/bin/env node
const fs = require('fs');
const file = process.env.BERTH_TEST_CREDSTORE;
const action = process.argv[2];
const input = fs.readFileSync(0, 'utf8');
let db = {};
try { db = JSON.parse(fs.readFileSync(file, 'utf8')); } catch {}
const key = action === 'store' ? JSON.parse(input).ServerURL : input.trim();
fs.appendFileSync(process.env.BERTH_TEST_CREDLOG, action + ' ' + key + '\\n');
if (process.env.BERTH_TEST_CREDFAIL) { process.stdout.write('the keychain is locked\\n'); process.exit(1); }
if (action === 'get') {
  if (!db[key]) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({ ServerURL: key, ...db[key] }) + '\\n');
} else if (action === 'store') {
  const d = JSON.parse(input);
  db[key] = { Username: d.Username, Secret: d.Secret };
  fs.writeFileSync(file, JSON.stringify(db));
} else if (action === 'erase') {
  delete db[key];
  fs.writeFileSync(file, JSON.stringify(db));
} else { process.stdout.write('unknown action ' + action + '\\n'); process.exit(1); }
`;

let reg: TestRegistry;
let dir: string;
let binDir: string;
let dockerConfig: string;
let storeFile: string;
let logFile: string;
let image: string;

t.before(async () => {
  reg = await startRegistry({ auth: 'htpasswd' });
  await pushTestImage(reg.host, 'secret/base', 'v1', await buildImage('base'), { creds: { username: reg.username, password: reg.password } });
  image = `${reg.host}/secret/base:v1`;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-credhelper-'));
  binDir = path.join(dir, 'bin');
  fs.mkdirSync(binDir);
  fs.writeFileSync(path.join(binDir, 'docker-credential-berthtest'), HELPER, { mode: 0o755 });
  dockerConfig = path.join(dir, 'docker');
  fs.mkdirSync(dockerConfig);
  storeFile = path.join(dir, 'helper-store.json');
  logFile = path.join(dir, 'helper.log');
});
t.teardown(async () => {
  await reg?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  ...process.env, DOCKER_CONFIG: dockerConfig, PATH: `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
  BERTH_TEST_CREDSTORE: storeFile, BERTH_TEST_CREDLOG: logFile, ...extra,
});
const writeConfig = (cfg: object): void => fs.writeFileSync(path.join(dockerConfig, 'config.json'), JSON.stringify(cfg));
const readConfigText = (): string => fs.readFileSync(path.join(dockerConfig, 'config.json'), 'utf8');
const helperLog = (): string[] => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean) : []);
const reset = (): void => {
  for (const f of [storeFile, logFile]) fs.rmSync(f, { force: true });
};

interface Run { code: number | null; stdout: string; stderr: string }
function berth(args: string[], input = '', extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
  const root = fs.mkdtempSync(path.join(dir, 'root-'));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/berth-main.ts', '--root', root, ...args], {
      env: env(extraEnv), stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

t.test('credsStore: login stores in the helper, not the file; pull uses it; logout erases it', async (t) => {
  reset();
  writeConfig({ credsStore: 'berthtest' });
  const li = await berth(['login', '--username', reg.username!, '--password-stdin', reg.host], `${reg.password}\n`);
  t.equal(li.code, 0, li.stderr);
  t.match(li.stdout, /Login Succeeded \(credentials saved in docker-credential-berthtest\)/);
  t.ok(helperLog().includes(`store ${reg.host}`), 'the helper was asked to store');
  const db = JSON.parse(fs.readFileSync(storeFile, 'utf8')) as Record<string, { Username: string; Secret: string }>;
  t.same(db[reg.host], { Username: reg.username, Secret: reg.password }, 'the helper holds the secret');
  const cfg = JSON.parse(readConfigText()) as { auths: Record<string, object>; credsStore: string };
  t.same(cfg.auths[reg.host], {}, 'the file keeps only an empty entry, as docker writes');
  t.equal(cfg.credsStore, 'berthtest', 'other keys are kept');
  t.notOk(readConfigText().includes(reg.password!), 'no password in config.json');
  t.notOk(readConfigText().includes(Buffer.from(`${reg.username}:${reg.password}`).toString('base64')), 'no auth string in config.json');

  const p = await berth(['pull', '-q', image]);
  t.equal(p.code, 0, p.stderr);
  t.ok(helperLog().includes(`get ${reg.host}`), 'pull asked the helper');

  const lo = await berth(['logout', reg.host]);
  t.equal(lo.code, 0, lo.stderr);
  t.match(lo.stdout, /Removing login credentials/);
  t.ok(helperLog().includes(`erase ${reg.host}`), 'logout erased it in the helper');
  t.same(JSON.parse(fs.readFileSync(storeFile, 'utf8')), {});
  const again = await berth(['pull', '-q', image]);
  t.not(again.code, 0, 'without credentials the registry refuses');
  t.match(again.stderr, /unauthori[sz]ed|authentication|401/i);
});

t.test('credHelpers for this registry win over credsStore', async (t) => {
  reset();
  fs.writeFileSync(storeFile, JSON.stringify({ [reg.host]: { Username: reg.username, Secret: reg.password } }));
  writeConfig({ credsStore: 'nosuchhelper', credHelpers: { [reg.host]: 'berthtest' } });
  const p = await berth(['pull', '-q', image]);
  t.equal(p.code, 0, p.stderr);
  t.same(helperLog(), [`get ${reg.host}`]);
});

t.test('a helper that is not installed is a clear error', async (t) => {
  reset();
  writeConfig({ credsStore: 'nosuchhelper' });
  const p = await berth(['pull', '-q', image]);
  t.not(p.code, 0);
  t.match(p.stderr, /docker-credential-nosuchhelper .*not installed: not found in PATH/);
});

t.test('a helper with nothing for the registry falls back to the file; a failing helper is an error', async (t) => {
  reset();
  writeConfig({ credsStore: 'berthtest', auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } });
  const p = await berth(['pull', '-q', image]);
  t.equal(p.code, 0, p.stderr);
  t.same(helperLog(), [`get ${reg.host}`], 'the helper was asked first');

  const locked = await berth(['pull', '-q', image], '', { BERTH_TEST_CREDFAIL: '1' });
  t.not(locked.code, 0);
  t.match(locked.stderr, /docker-credential-berthtest get failed: the keychain is locked/);
});

t.test('an identity token from a helper (user <token>); Docker Hub is asked by its index URL', async (t) => {
  reset();
  fs.writeFileSync(storeFile, JSON.stringify({
    'https://index.docker.io/v1/': { Username: '<token>', Secret: 'refresh-me' },
    'other.example:5000': { Username: 'u', Secret: 'p' },
  }));
  writeConfig({ credsStore: 'berthtest' });
  const saved = { PATH: process.env.PATH, BERTH_TEST_CREDSTORE: process.env.BERTH_TEST_CREDSTORE, BERTH_TEST_CREDLOG: process.env.BERTH_TEST_CREDLOG };
  Object.assign(process.env, { PATH: `${binDir}:${process.env.PATH}`, BERTH_TEST_CREDSTORE: storeFile, BERTH_TEST_CREDLOG: logFile });
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  });
  const configPath = path.join(dockerConfig, 'config.json');
  t.same(loadCredentials('registry-1.docker.io', { configPath }), { identityToken: 'refresh-me' });
  t.same(loadCredentials('other.example:5000', { configPath }), { username: 'u', password: 'p' });
  t.equal(loadCredentials('nothing.example', { configPath }), undefined);
  t.same(helperLog(), ['get https://index.docker.io/v1/', 'get other.example:5000', 'get nothing.example']);
  writeConfig({ credsStore: 'bad name;rm' });
  t.throws(() => loadCredentials('x.example', { configPath }), CredentialsError);
  writeConfig({ credHelpers: ['not', 'an', 'object'] });
  t.throws(() => loadCredentials('x.example', { configPath }), /credHelpers must be an object/);
});
