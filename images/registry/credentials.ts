/**
 * Registry credentials from Docker's config file: `$DOCKER_CONFIG/config.json` or
 * `~/.docker/config.json`, `auths.<key>` with `auth` (base64 user:pass), `username`/`password`,
 * `identitytoken` (OAuth refresh token) or `registrytoken` (a bearer token). Docker Hub is
 * stored under `https://index.docker.io/v1/`. `--creds user:pass` overrides the file.
 * saveCredentials/removeCredentials back `berth login/logout` (atomic write, mode 0600,
 * other keys of the file preserved).
 *
 * Credential helpers, as the docker CLI uses them: `credHelpers.<host>` names the helper for one
 * registry, `credsStore` the helper for all others. A helper is the program
 * `docker-credential-<name>` on PATH, spoken to with docker-credential-helpers' protocol: the
 * action (`get`, `store`, `erase`) is its argument; `get`/`erase` read the server URL on stdin,
 * `store` reads {"ServerURL","Username","Secret"}; `get` prints that JSON, or fails with
 * "credentials not found in native keychain". A Username of `<token>` means Secret is an identity
 * token. With a helper, login stores the secret there and only an empty `auths` entry in the file
 * (as docker does); a helper that has nothing falls back to the file's entry.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync, chmodSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { BerthError } from '../../runtime/errors.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** OAuth refresh token (Docker's `identitytoken`), exchanged with grant_type=refresh_token. */
  identityToken?: string;
  /** A bearer token to send as is (Docker's `registrytoken`). */
  registryToken?: string;
}

export class CredentialsError extends BerthError {
  constructor(message: string) { super('ECREDENTIALS', message); }
}

export const DOCKER_HUB_CONFIG_KEY = 'https://index.docker.io/v1/';
const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** The config file path: explicit, $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
export function dockerConfigPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return explicit;
  if (env.DOCKER_CONFIG) return join(env.DOCKER_CONFIG, 'config.json');
  return join(env.HOME || homedir(), '.docker', 'config.json');
}

/** Strip scheme and path from a config key: "https://host:5000/v1/" → "host:5000". */
export function normalizeAuthKey(key: string): string {
  let k = key.trim();
  k = k.replace(/^[a-z]+:\/\//i, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  k = k.toLowerCase();
  return HUB_ALIASES.has(k) ? 'docker.io' : k;
}

/** The key `docker login <host>` writes for a registry host or domain. */
export function configKeyFor(host: string): string {
  const n = normalizeAuthKey(host);
  return n === 'docker.io' ? DOCKER_HUB_CONFIG_KEY : n;
}

interface AuthEntry { auth?: string; username?: string; password?: string; identitytoken?: string; registrytoken?: string }
interface DockerConfig { auths?: Record<string, AuthEntry>; credsStore?: unknown; credHelpers?: unknown; [k: string]: unknown }

/** Docker's marker user name: the secret is an identity (refresh) token. */
const TOKEN_USER = '<token>';
const HELPER_TIMEOUT_MS = 30_000;

/** The credential helper configured for host (credHelpers first, then credsStore), if any. */
function helperFor(cfg: DockerConfig, path: string, host: string): string | undefined {
  const want = normalizeAuthKey(host);
  if (cfg.credHelpers !== undefined) {
    if (typeof cfg.credHelpers !== 'object' || cfg.credHelpers === null || Array.isArray(cfg.credHelpers)) {
      throw new CredentialsError(`${path}: credHelpers must be an object of registry → helper name`);
    }
    for (const [k, v] of Object.entries(cfg.credHelpers as Record<string, unknown>)) {
      if (normalizeAuthKey(k) === want && typeof v === 'string' && v !== '') return v;
    }
  }
  if (cfg.credsStore !== undefined && typeof cfg.credsStore !== 'string') throw new CredentialsError(`${path}: credsStore must be a helper name`);
  return cfg.credsStore || undefined;
}

/**
 * Run `docker-credential-<name> <action>` with input on stdin. Returns stdout, or null when the
 * helper says it has no such credentials; anything else that fails is a CredentialsError.
 */
function runHelper(name: string, action: 'get' | 'store' | 'erase', input: string, path: string): string | null {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new CredentialsError(`${path}: bad credential helper name ${JSON.stringify(name)}`);
  const prog = `docker-credential-${name}`;
  const r = spawnSync(prog, [action], { input, encoding: 'utf8', timeout: HELPER_TIMEOUT_MS, stdio: ['pipe', 'pipe', 'pipe'] });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CredentialsError(`credential helper ${prog} (configured in ${path}) is not installed: not found in PATH`);
    if (code === 'ETIMEDOUT') throw new CredentialsError(`credential helper ${prog} ${action} did not answer within ${HELPER_TIMEOUT_MS / 1000} s`);
    throw new CredentialsError(`credential helper ${prog} ${action}: ${r.error.message}`);
  }
  const out = (r.stdout ?? '').trim();
  if (r.status !== 0) {
    const msg = out || (r.stderr ?? '').trim() || (r.signal ? `killed by ${r.signal}` : `exit status ${r.status}`);
    if (/credentials not found/i.test(msg)) return null;
    throw new CredentialsError(`credential helper ${prog} ${action} failed: ${msg.split('\n')[0]}`);
  }
  return out;
}

function helperGet(name: string, serverURL: string, path: string): Credentials | undefined {
  const out = runHelper(name, 'get', serverURL, path);
  if (out === null || out === '') return undefined;
  let doc: { Username?: unknown; Secret?: unknown };
  try { doc = JSON.parse(out) as typeof doc; } catch {
    throw new CredentialsError(`credential helper docker-credential-${name} get: output is not JSON`);
  }
  const user = typeof doc.Username === 'string' ? doc.Username : '';
  const secret = typeof doc.Secret === 'string' ? doc.Secret : '';
  if (user === '' && secret === '') return undefined;
  return user === TOKEN_USER ? { identityToken: secret } : { username: user, password: secret };
}

function readConfig(path: string): DockerConfig {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CredentialsError(`cannot read ${path}: ${(e as Error).message}`);
  }
  if (text.trim() === '') return {};
  try {
    const doc = JSON.parse(text) as unknown;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('not a JSON object');
    return doc as DockerConfig;
  } catch (e) {
    throw new CredentialsError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

function entryToCredentials(key: string, path: string, e: AuthEntry): Credentials | undefined {
  const c: Credentials = {};
  if (typeof e.auth === 'string' && e.auth !== '') {
    const dec = Buffer.from(e.auth, 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i < 0) throw new CredentialsError(`${path}: auths["${key}"].auth does not decode to user:password`);
    c.username = dec.slice(0, i);
    c.password = dec.slice(i + 1);
  } else if (typeof e.username === 'string') {
    c.username = e.username;
    c.password = typeof e.password === 'string' ? e.password : '';
  }
  if (typeof e.identitytoken === 'string' && e.identitytoken !== '') c.identityToken = e.identitytoken;
  if (typeof e.registrytoken === 'string' && e.registrytoken !== '') c.registryToken = e.registrytoken;
  return c.username !== undefined || c.identityToken || c.registryToken ? c : undefined;
}

/** Credentials stored for a registry host (or domain), or undefined. */
export function loadCredentials(host: string, opts: { configPath?: string } = {}): Credentials | undefined {
  const path = dockerConfigPath(opts.configPath);
  const cfg = readConfig(path);
  const helper = helperFor(cfg, path, host);
  if (helper) {
    const c = helperGet(helper, configKeyFor(host), path);
    if (c) return c;
  }
  const auths = cfg.auths ?? {};
  const want = normalizeAuthKey(host);
  // exact key first, then any key that normalises to the same host
  const exact = auths[host] ?? auths[configKeyFor(host)];
  if (exact) return entryToCredentials(host, path, exact);
  for (const [k, v] of Object.entries(auths)) {
    if (normalizeAuthKey(k) === want && v) return entryToCredentials(k, path, v);
  }
  return undefined;
}

/** `--creds user:pass` (or `user` alone: empty password). */
export function parseCredsFlag(s: string): Credentials {
  const i = s.indexOf(':');
  if (i === 0) throw new CredentialsError('--creds: missing user name (want user:password)');
  if (s === '') throw new CredentialsError('--creds: empty (want user:password)');
  return i < 0 ? { username: s, password: '' } : { username: s.slice(0, i), password: s.slice(i + 1) };
}

function writeConfig(path: string, cfg: DockerConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, JSON.stringify(cfg, null, '\t') + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/**
 * Store credentials for host as `docker login` does: in the credential helper configured for it
 * (the file then keeps an empty entry), else in the file (auth = base64 user:pass). Returns where
 * they went: the helper's program name or the file's path.
 */
export function saveCredentials(host: string, creds: Credentials, opts: { configPath?: string } = {}): string {
  const path = dockerConfigPath(opts.configPath);
  const cfg = readConfig(path);
  const helper = helperFor(cfg, path, host);
  const auths: Record<string, AuthEntry> = { ...(cfg.auths ?? {}) };
  const want = normalizeAuthKey(host);
  for (const k of Object.keys(auths)) if (normalizeAuthKey(k) === want) delete auths[k];
  const entry: AuthEntry = {};
  if (helper) {
    const secret = creds.identityToken
      ? { Username: TOKEN_USER, Secret: creds.identityToken }
      : { Username: creds.username ?? '', Secret: creds.password ?? '' };
    runHelper(helper, 'store', JSON.stringify({ ServerURL: configKeyFor(host), ...secret }), path);
  } else {
    if (creds.username !== undefined) entry.auth = Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64');
    if (creds.identityToken) entry.identitytoken = creds.identityToken;
    if (creds.registryToken) entry.registrytoken = creds.registryToken;
  }
  auths[configKeyFor(host)] = entry;
  writeConfig(path, { ...cfg, auths });
  return helper ? `docker-credential-${helper}` : path;
}

/** Forget credentials for host (in its credential helper too); true when something was removed. */
export function removeCredentials(host: string, opts: { configPath?: string } = {}): boolean {
  const path = dockerConfigPath(opts.configPath);
  const cfg = readConfig(path);
  let removed = false;
  const helper = helperFor(cfg, path, host);
  // erase answers "credentials not found" (null here) when the helper holds nothing for host.
  if (helper) removed = runHelper(helper, 'erase', configKeyFor(host), path) !== null;
  if (!cfg.auths) return removed;
  const auths = { ...cfg.auths };
  const want = normalizeAuthKey(host);
  let fromFile = false;
  for (const k of Object.keys(auths)) if (normalizeAuthKey(k) === want) { delete auths[k]; fromFile = true; }
  if (fromFile) writeConfig(path, { ...cfg, auths });
  return removed || fromFile;
}
