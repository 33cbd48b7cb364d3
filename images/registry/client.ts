/**
 * Registry client (OCI distribution-spec / Docker registry v2) on node:http(s) (./http.ts).
 *
 * - Transport: https by default; plain http only for loopback hosts and hosts in `insecure`
 *   (those are probed with https first, as docker does, and fall back to http).
 * - Auth: 401 challenges (Bearer token flow with realm/service/scope, Basic), tokens cached per
 *   host+scope and fetched up front once a host's challenge is known, `insufficient_scope`
 *   answered with a token for the union scope, identity tokens exchanged with an OAuth POST
 *   (grant_type=refresh_token), credentials from the docker config or an explicit override.
 * - Redirects are followed by hand: the Authorization header never goes to another origin
 *   (Docker Hub redirects blob GETs to a CDN).
 * - Retries with exponential backoff on 5xx, resets and timeouts; 429 waits for Retry-After
 *   (capped); rate-limit headers are reported through onRateLimit.
 * - Manifests are fetched with every Accept type we support and verified against the digest
 *   asked for or the Docker-Content-Digest header.
 */
import { Readable } from 'node:stream';
import { BerthError } from '../../runtime/errors.js';
import { MANIFEST_ACCEPT, isSchema1MediaType, Schema1Error } from '../manifest.js';
import type { ImageReference } from '../reference.js';
import { sha256Digest } from '../content.js';
import { formatScopes, parseScopes, parseWWWAuthenticate, repoScope, TokenCache, unionScopes, type Challenge } from './auth.js';
import { loadCredentials, type Credentials } from './credentials.js';
import { AuthError, ImageNotFoundError, parseErrorBody, RateLimitError, RegistryError } from './errors.js';
import { request, type HttpHeaders, type HttpResponse, type RequestBody } from './http.js';
import {
  backoffDelay, describeNetworkError, isRetryableNetworkError, parseRateLimit, parseRetryAfter, plainHttpAllowed,
  sleep, type RateLimitInfo,
} from './transport.js';

export type { RateLimitInfo } from './transport.js';

export interface RetryInfo { host: string; url: string; attempt: number; reason: string; delayMs: number }

export interface RegistryClientOptions {
  /** Credentials for every host (`--creds user:pass`); wins over the config file. */
  creds?: Credentials;
  /** Credentials lookup per registry host; default reads the docker config file. */
  credentials?: (host: string) => Credentials | undefined;
  /** Docker config file to read credentials from (default $DOCKER_CONFIG or ~/.docker). */
  configPath?: string;
  /** Hosts that may be reached over plain http (loopback always may). */
  insecure?: readonly string[];
  /** Per-request timeout until response headers, ms (default 30000). */
  timeoutMs?: number;
  /** Attempts for retryable failures (default 4). */
  tries?: number;
  /** First backoff delay, ms (default 250); doubles each try. */
  backoffMs?: number;
  /** Longest Retry-After we wait for on a 429, ms (default 60000); longer → RateLimitError. */
  maxRetryAfterMs?: number;
  onRateLimit?: (info: RateLimitInfo) => void;
  onRetry?: (info: RetryInfo) => void;
  userAgent?: string;
  signal?: AbortSignal;
}

export interface ManifestResult {
  mediaType: string;
  digest: string;
  bytes: Buffer;
  headers: HttpHeaders;
}

export interface ManifestHead { mediaType: string; digest?: string; size?: number; headers: HttpHeaders }

export interface BlobOpen {
  /** The body as a Node stream (created on first access; use either body or chunks, not both). */
  body: Readable;
  /** The same body as an async iterable of chunks; destroy() cancels it. */
  chunks: AsyncIterable<Uint8Array> & { destroy(): void };
  status: number;
  /** Total blob size (from Content-Length or Content-Range), when the server said. */
  size?: number;
  /** Offset of the first byte in body (0 when the server ignored Range). */
  offset: number;
}

type BodySource = Uint8Array | (() => Readable | AsyncIterable<Uint8Array>);

interface Req {
  host: string;
  method: string;
  /** /v2/... path or an absolute URL (upload locations). */
  path: string;
  headers?: Record<string, string>;
  body?: BodySource;
  /** Space-separated scopes the request needs. */
  scope?: string;
  /** What we are doing, for messages: "pull alpine", "push x". */
  what: string;
  /** Repository named in auth errors. */
  repo?: string;
  followRedirects?: boolean;
  signal?: AbortSignal;
}

type HostAuth = { scheme: 'bearer'; realm: string; service: string } | { scheme: 'basic'; realm?: string };

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export class RegistryClient {
  private readonly opts: RegistryClientOptions;
  private readonly schemes = new Map<string, Promise<'https' | 'http'>>();
  private readonly hostAuth = new Map<string, HostAuth>();
  readonly tokens = new TokenCache();
  private readonly rateLimits = new Map<string, RateLimitInfo>();
  private readonly credCache = new Map<string, Credentials | undefined>();

  constructor(opts: RegistryClientOptions = {}) {
    this.opts = opts;
  }

  private get tries(): number { return Math.max(1, this.opts.tries ?? 4); }

  /** Last rate-limit headers seen from host. */
  rateLimit(host: string): RateLimitInfo | undefined { return this.rateLimits.get(host); }

  credentialsFor(host: string): Credentials | undefined {
    if (this.opts.creds) return this.opts.creds;
    if (!this.credCache.has(host)) {
      const c = this.opts.credentials ? this.opts.credentials(host) : loadCredentials(host, { configPath: this.opts.configPath });
      this.credCache.set(host, c);
    }
    return this.credCache.get(host);
  }

  // ---------- transport ----------

  /** https, or http for a loopback/insecure host that does not speak TLS. */
  scheme(host: string): Promise<'https' | 'http'> {
    let p = this.schemes.get(host);
    if (!p) {
      p = this.probeScheme(host);
      this.schemes.set(host, p);
      p.catch(() => this.schemes.delete(host));
    }
    return p;
  }

  /**
   * https unless the host may be spoken to in plain http (loopback, --insecure) and does not
   * speak TLS. The probe is a bare TLS handshake with an empty CA list: it only asks whether the
   * server speaks TLS (certificates are verified on the real requests), and it does not load
   * Node's root certificate store (~20 ms) for a registry that turns out to be plain http.
   */
  private async probeScheme(host: string): Promise<'https' | 'http'> {
    if (!plainHttpAllowed(host, this.opts.insecure ?? [])) return 'https';
    return (await speaksTls(host, Math.min(5000, this.opts.timeoutMs ?? 30000))) ? 'https' : 'http';
  }

  private async url(host: string, path: string): Promise<URL> {
    if (/^https?:\/\//i.test(path)) return new URL(path);
    return new URL(`${await this.scheme(host)}://${host}${path}`);
  }

  private checkUrlAllowed(u: URL, registryHost: string): void {
    if (u.protocol === 'https:') return;
    if (u.protocol !== 'http:') throw new RegistryError(`refusing ${u.protocol} URL ${u.href} from ${registryHost}`);
    if (!plainHttpAllowed(u.host, this.opts.insecure ?? []) && !plainHttpAllowed(registryHost, this.opts.insecure ?? [])) {
      throw new RegistryError(`refusing plain http URL ${u.href} from ${registryHost}: pass --insecure ${u.host} if you trust it`, 0, [], 'EINSECURE');
    }
  }

  /** One HTTP exchange, following redirects by hand (Authorization stays on its origin). */
  private async exchange(url: URL, init: { method: string; headers: Record<string, string>; body?: BodySource; follow: boolean; signal?: AbortSignal }, registryHost: string): Promise<{ res: HttpResponse; url: URL }> {
    let cur = url;
    let headers = { ...init.headers };
    const origin = url.origin;
    for (let hop = 0; ; hop++) {
      this.checkUrlAllowed(cur, registryHost);
      const signals = [init.signal, this.opts.signal].filter((s): s is AbortSignal => !!s);
      let body: RequestBody | undefined;
      if (init.body instanceof Uint8Array) body = init.body;
      else if (init.body) body = init.body();
      const res = await request(cur, {
        method: init.method, headers, body, timeoutMs: this.opts.timeoutMs ?? 30000,
        signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0],
      });
      if (!init.follow || !REDIRECTS.has(res.status)) return { res, url: cur };
      const loc = res.headers.get('location');
      if (!loc) return { res, url: cur };
      await res.body?.cancel().catch(() => undefined);
      if (hop >= 10) throw new RegistryError(`too many redirects from ${registryHost} (last ${cur.href})`);
      const next = new URL(loc, cur);
      if (next.origin !== origin) {
        headers = { ...headers };
        delete headers.authorization;
      }
      cur = next;
    }
  }

  /** Send with auth, retries and rate-limit handling; returns the final response (any status but 401/429/5xx-after-retries). */
  private async send(req: Req): Promise<HttpResponse> {
    const tries = this.tries;
    let attempt = 0;
    let authRounds = 0;
    let lastAuth: string | undefined;
    const replayable = req.body === undefined || req.body instanceof Uint8Array || typeof req.body === 'function';
    for (;;) {
      attempt++;
      const url = await this.url(req.host, req.path);
      const headers: Record<string, string> = { 'user-agent': this.opts.userAgent ?? 'berth/0.1', ...(req.headers ?? {}) };
      const auth = await this.authorization(req.host, req.scope, req.repo ?? req.what);
      if (auth) headers.authorization = auth;
      lastAuth = auth;
      let res: HttpResponse;
      try {
        ({ res } = await this.exchange(url, { method: req.method, headers, body: req.body, follow: req.followRedirects ?? (req.method === 'GET' || req.method === 'HEAD'), signal: req.signal }, req.host));
      } catch (e) {
        if (e instanceof BerthError) throw e;
        if (req.signal?.aborted || this.opts.signal?.aborted) throw e;
        if (attempt < tries && replayable && isRetryableNetworkError(e)) {
          const d = backoffDelay(attempt, this.opts.backoffMs ?? 250);
          this.opts.onRetry?.({ host: req.host, url: url.href, attempt, reason: describeNetworkError(e), delayMs: d });
          await sleep(d, req.signal);
          continue;
        }
        throw new RegistryError(`${req.what}: cannot reach ${req.host}: ${describeNetworkError(e)}`, 0, [], 'EREGISTRY', e);
      }
      const rl = parseRateLimit(req.host, res.headers);
      if (rl && req.method === 'GET') { this.rateLimits.set(req.host, rl); this.opts.onRateLimit?.(rl); }
      if (res.status === 401 || (res.status === 403 && /insufficient_scope/.test(res.headers.get('www-authenticate') ?? ''))) {
        const challenges = parseWWWAuthenticate(res.headers.get('www-authenticate'));
        const text = await res.text().catch(() => '');
        if (authRounds >= 2 || !(await this.answerChallenge(req, challenges, lastAuth))) {
          throw this.authError(req, res.status, parseErrorBody(text), lastAuth !== undefined);
        }
        authRounds++;
        attempt--; // an auth round is not a failed try
        continue;
      }
      if (res.status === 429) {
        const wait = parseRetryAfter(res.headers.get('retry-after'));
        const info: RateLimitInfo = { ...(rl ?? { host: req.host }), retryAfterMs: wait };
        this.rateLimits.set(req.host, info);
        this.opts.onRateLimit?.(info);
        await res.body?.cancel().catch(() => undefined);
        const max = this.opts.maxRetryAfterMs ?? 60_000;
        if (attempt >= tries || !replayable || (wait !== undefined && wait > max)) {
          throw new RateLimitError(`${req.what}: ${req.host} is rate limiting requests (429 Too Many Requests${wait !== undefined ? `, retry after ${Math.ceil(wait / 1000)} s` : ''}${rl?.remaining !== undefined ? `, ${rl.remaining} pulls remaining` : ''}); log in (berth login ${req.host}) for a higher limit or try later`, wait);
        }
        const d = wait ?? backoffDelay(attempt, this.opts.backoffMs ?? 250);
        this.opts.onRetry?.({ host: req.host, url: url.href, attempt, reason: '429 Too Many Requests', delayMs: d });
        await sleep(d, req.signal);
        continue;
      }
      if (res.status >= 500 && res.status !== 501 && attempt < tries && replayable) {
        await res.body?.cancel().catch(() => undefined);
        const d = backoffDelay(attempt, this.opts.backoffMs ?? 250);
        this.opts.onRetry?.({ host: req.host, url: url.href, attempt, reason: `HTTP ${res.status}`, delayMs: d });
        await sleep(d, req.signal);
        continue;
      }
      return res;
    }
  }

  private authError(req: Req, status: number, errors: { code: string; message?: string }[], hadAuth: boolean): AuthError {
    const creds = this.credentialsFor(req.host);
    const repo = req.repo ?? req.what;
    const msgs = errors.map((e) => e.message ?? e.code).filter((m) => !/^authentication required$/i.test(m));
    const detail = msgs.length ? ` (${msgs.join('; ')})` : '';
    if (!creds) {
      return new AuthError(`authentication required for ${repo} on ${req.host}${detail}: run berth login ${req.host}`, status, errors);
    }
    return new AuthError(`authentication denied for ${repo} on ${req.host}${hadAuth ? '' : ' (no usable challenge)'}${detail}: check the credentials (berth login ${req.host})`, status, errors);
  }

  /** The Authorization header to send up front for host+scope, if we know how. */
  private async authorization(host: string, scope: string | undefined, repo: string): Promise<string | undefined> {
    const creds = this.credentialsFor(host);
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const ha = this.hostAuth.get(host);
    if (!ha) return undefined;
    if (ha.scheme === 'basic') return creds?.username !== undefined ? basicHeader(creds) : undefined;
    const want = parseScopes(scope);
    const cached = this.tokens.get(host, ha.realm, ha.service, want);
    if (cached) return `Bearer ${cached}`;
    const token = await this.fetchToken(host, ha.realm, ha.service, want, repo);
    return `Bearer ${token}`;
  }

  /** Learn from a 401 challenge; true when a retry can succeed. */
  private async answerChallenge(req: Req, challenges: Challenge[], lastAuth: string | undefined): Promise<boolean> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    const creds = this.credentialsFor(req.host);
    if (bearer && bearer.params.realm) {
      const realm = bearer.params.realm;
      const service = bearer.params.service ?? '';
      const prev = this.hostAuth.get(req.host);
      this.hostAuth.set(req.host, { scheme: 'bearer', realm, service });
      let want = parseScopes(req.scope, bearer.params.scope);
      if (bearer.params.error === 'insufficient_scope' || (lastAuth?.startsWith('Bearer ') && prev?.scheme === 'bearer')) {
        // the token we sent was not enough: ask for the union of what we asked and what the registry wants
        if (lastAuth?.startsWith('Bearer ')) this.tokens.invalidate(req.host, lastAuth.slice(7));
        want = unionScopes(want, parseScopes(bearer.params.scope));
      }
      const token = await this.fetchToken(req.host, realm, service, want, req.repo ?? req.what);
      return `Bearer ${token}` !== lastAuth;
    }
    if (basic) {
      this.hostAuth.set(req.host, { scheme: 'basic', realm: basic.params.realm });
      if (creds?.username === undefined) return false;
      return lastAuth !== basicHeader(creds);
    }
    return false;
  }

  private checkRealm(realm: string, host: string): URL {
    let u: URL;
    try { u = new URL(realm); } catch { throw new RegistryError(`${host} sent an invalid token realm "${realm}"`); }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new RegistryError(`${host} sent a token realm with scheme ${u.protocol}`);
    this.checkUrlAllowed(u, host);
    return u;
  }

  /** Run the token flow for scopes; caches the result. */
  private async fetchToken(host: string, realm: string, service: string, scopes: Map<string, Set<string>>, repo: string): Promise<string> {
    const u = this.checkRealm(realm, host);
    const creds = this.credentialsFor(host);
    const scopeList = formatScopes(scopes);
    let res: HttpResponse;
    const tries = this.tries;
    for (let attempt = 1; ; attempt++) {
      try {
        if (creds?.identityToken) {
          const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, service, client_id: 'berth', access_type: 'offline' });
          if (scopeList.length) form.set('scope', scopeList.join(' '));
          ({ res } = await this.exchange(u, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': this.opts.userAgent ?? 'berth/0.1' }, body: Buffer.from(form.toString()), follow: false }, host));
        } else {
          const q = new URL(u.href);
          if (service) q.searchParams.set('service', service);
          for (const s of scopeList) q.searchParams.append('scope', s);
          const headers: Record<string, string> = { 'user-agent': this.opts.userAgent ?? 'berth/0.1' };
          if (creds?.username !== undefined) {
            headers.authorization = basicHeader(creds);
            q.searchParams.set('account', creds.username);
          }
          ({ res } = await this.exchange(q, { method: 'GET', headers, follow: true }, host));
        }
      } catch (e) {
        if (e instanceof BerthError) throw e;
        if (attempt < tries && isRetryableNetworkError(e)) { await sleep(backoffDelay(attempt, this.opts.backoffMs ?? 250)); continue; }
        throw new RegistryError(`cannot reach the token server ${u.host} for ${host}: ${describeNetworkError(e)}`, 0, [], 'EREGISTRY', e);
      }
      if (res.status >= 500 && attempt < tries) { await res.body?.cancel().catch(() => undefined); await sleep(backoffDelay(attempt, this.opts.backoffMs ?? 250)); continue; }
      break;
    }
    const text = await res.text().catch(() => '');
    if (res.status === 401 || res.status === 403) {
      throw new AuthError(creds
        ? `authentication denied for ${repo} by ${u.host}: check the credentials (berth login ${host})`
        : `authentication required for ${repo} on ${host}: run berth login ${host}`, res.status, parseErrorBody(text));
    }
    if (res.status !== 200) throw new RegistryError(`token server ${u.host} answered ${res.status} for ${repo}: ${text.slice(0, 200)}`, res.status, parseErrorBody(text));
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try { doc = JSON.parse(text); } catch { throw new RegistryError(`token server ${u.host} sent invalid JSON`); }
    const token = typeof doc.token === 'string' && doc.token ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : '';
    if (!token) throw new RegistryError(`token server ${u.host} sent no token`);
    const expires = typeof doc.expires_in === 'number' ? doc.expires_in : 60;
    this.tokens.put(host, realm, service, scopes, token, expires, typeof doc.issued_at === 'string' ? doc.issued_at : undefined);
    return token;
  }

  private async fail(res: HttpResponse, req: Pick<Req, 'host' | 'what'>, notFound?: string): Promise<never> {
    const text = await res.text().catch(() => '');
    const errors = parseErrorBody(text);
    if (res.status === 404 && notFound) throw new ImageNotFoundError(notFound);
    const detail = errors.length ? errors.map((e) => `${e.code}${e.message ? `: ${e.message}` : ''}`).join('; ') : text.slice(0, 200).trim();
    if (res.status === 401 || res.status === 403) throw new AuthError(`${req.what}: ${req.host} denied access (${res.status}${detail ? `, ${detail}` : ''})`, res.status, errors);
    throw new RegistryError(`${req.what}: ${req.host} answered ${res.status} ${res.statusText}${detail ? ` (${detail})` : ''}`, res.status, errors);
  }

  // ---------- API ----------

  /** GET /v2/: which scheme answers and how the registry wants us to authenticate. */
  async ping(host: string): Promise<{ scheme: 'https' | 'http'; status: number; auth?: Challenge }> {
    const scheme = await this.scheme(host);
    let res: HttpResponse;
    try {
      ({ res } = await this.exchange(new URL(`${scheme}://${host}/v2/`), { method: 'GET', headers: { 'user-agent': this.opts.userAgent ?? 'berth/0.1' }, follow: true }, host));
    } catch (e) {
      if (e instanceof BerthError) throw e;
      throw new RegistryError(`cannot reach registry ${host}: ${describeNetworkError(e)}`, 0, [], 'EREGISTRY', e);
    }
    await res.body?.cancel().catch(() => undefined);
    const ch = parseWWWAuthenticate(res.headers.get('www-authenticate'));
    const auth = ch.find((c) => c.scheme === 'bearer') ?? ch.find((c) => c.scheme === 'basic');
    if (res.status === 401 && auth) {
      if (auth.scheme === 'bearer' && auth.params.realm) this.hostAuth.set(host, { scheme: 'bearer', realm: auth.params.realm, service: auth.params.service ?? '' });
      else if (auth.scheme === 'basic') this.hostAuth.set(host, { scheme: 'basic', realm: auth.params.realm });
    } else if (res.status !== 200) {
      throw new RegistryError(`${host} does not look like a registry: GET /v2/ answered ${res.status}`, res.status);
    }
    return { scheme, status: res.status, ...(auth ? { auth } : {}) };
  }

  /** Check credentials against host (`berth login`): throws AuthError when refused. */
  async login(host: string): Promise<void> {
    const p = await this.ping(host);
    if (p.status === 200) return;
    const res = await this.send({ host, method: 'GET', path: '/v2/', what: `log in to ${host}`, repo: host });
    await res.body.cancel().catch(() => undefined);
  }

  private manifestPath(ref: ImageReference, reference?: string): string {
    return `/v2/${ref.path}/manifests/${reference ?? ref.ref}`;
  }

  /** HEAD a manifest (does not count against Docker Hub's pull limit). */
  async headManifest(ref: ImageReference, opts: { accept?: readonly string[]; signal?: AbortSignal } = {}): Promise<ManifestHead> {
    const req: Req = { host: ref.registryHost, method: 'HEAD', path: this.manifestPath(ref), headers: { accept: (opts.accept ?? MANIFEST_ACCEPT).join(', ') }, scope: repoScope(ref.path, 'pull'), what: `resolve ${ref.familiar()}`, repo: ref.path, signal: opts.signal };
    const res = await this.send(req);
    if (res.status !== 200) await this.fail(res, req, `image ${ref.familiar()} not found on ${ref.registryHost}`);
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0].trim();
    if (isSchema1MediaType(mediaType)) throw new Schema1Error(ref.familiar());
    const digest = res.headers.get('docker-content-digest') ?? undefined;
    const len = res.headers.get('content-length');
    return { mediaType, ...(digest ? { digest } : {}), ...(len ? { size: Number(len) } : {}), headers: res.headers };
  }

  /** GET a manifest or index by tag or digest, verified; `reference` overrides ref's tag/digest. */
  async getManifest(ref: ImageReference, opts: { accept?: readonly string[]; reference?: string; signal?: AbortSignal } = {}): Promise<ManifestResult> {
    const reference = opts.reference ?? ref.ref;
    const name = opts.reference ? `${ref.repository}@${opts.reference}` : ref.familiar();
    const req: Req = { host: ref.registryHost, method: 'GET', path: this.manifestPath(ref, reference), headers: { accept: (opts.accept ?? MANIFEST_ACCEPT).join(', ') }, scope: repoScope(ref.path, 'pull'), what: `pull ${name}`, repo: ref.path, signal: opts.signal };
    const res = await this.send(req);
    if (res.status !== 200) await this.fail(res, req, `image ${name} not found on ${ref.registryHost}`);
    const len = Number(res.headers.get('content-length') ?? '0');
    if (len > MAX_MANIFEST_BYTES) { await res.body?.cancel(); throw new RegistryError(`manifest of ${name} is ${len} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`); }
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > MAX_MANIFEST_BYTES) throw new RegistryError(`manifest of ${name} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    let mediaType = (res.headers.get('content-type') ?? '').split(';')[0].trim();
    if (isSchema1MediaType(mediaType)) throw new Schema1Error(name);
    if (!mediaType || mediaType === 'application/json' || mediaType === 'text/plain') {
      try {
        const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; schemaVersion?: unknown };
        if (doc.schemaVersion === 1) throw new Schema1Error(name);
        if (typeof doc.mediaType === 'string') mediaType = doc.mediaType;
      } catch (e) { if (e instanceof Schema1Error) throw e; }
    }
    const digest = sha256Digest(bytes);
    const want = reference.startsWith('sha256:') ? reference : undefined;
    const header = res.headers.get('docker-content-digest');
    if (want && want !== digest) throw new RegistryError(`manifest of ${name} from ${ref.registryHost} does not match its digest: got ${digest}`, 0, [], 'EDIGEST');
    if (!want && header && header.startsWith('sha256:') && header !== digest) {
      throw new RegistryError(`manifest of ${name} from ${ref.registryHost} does not match Docker-Content-Digest ${header}: got ${digest}`, 0, [], 'EDIGEST');
    }
    return { mediaType, digest, bytes, headers: res.headers };
  }

  private blobReq(ref: ImageReference, digest: string, method: string, headers: Record<string, string> = {}, signal?: AbortSignal): Req {
    return { host: ref.registryHost, method, path: `/v2/${ref.path}/blobs/${digest}`, headers, scope: repoScope(ref.path, 'pull'), what: `fetch blob ${digest.slice(0, 19)} of ${ref.repository}`, repo: ref.path, signal };
  }

  /**
   * Open a blob for streaming from offset (Range). The result says where the body really
   * starts: 0 when the server ignored Range.
   */
  async openBlob(ref: ImageReference, digest: string, offset = 0, opts: { signal?: AbortSignal } = {}): Promise<BlobOpen> {
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const req = this.blobReq(ref, digest, 'GET', headers, opts.signal);
    let res = await this.send(req);
    if (res.status === 416 && offset > 0) {
      await res.body?.cancel().catch(() => undefined);
      res = await this.send(this.blobReq(ref, digest, 'GET', {}, opts.signal));
    }
    if (res.status !== 200 && res.status !== 206) await this.fail(res, req, `blob ${digest} not found in ${ref.repository} on ${ref.registryHost}`);
    let start = 0;
    let size: number | undefined;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!m) { await res.body?.cancel(); throw new RegistryError(`${ref.registryHost} sent 206 without a valid Content-Range for ${digest}`); }
      start = Number(m[1]);
      if (m[3] !== '*') size = Number(m[3]);
    } else {
      const len = res.headers.get('content-length');
      if (len !== null) size = Number(len);
    }
    const body = res.body;
    return {
      body: body.stream,
      chunks: { destroy: () => { void body.cancel(); }, [Symbol.asyncIterator]: () => body[Symbol.asyncIterator]() },
      status: res.status, offset: start, ...(size !== undefined ? { size } : {}),
    };
  }

  /** Fetch a small blob (config) whole and verify its digest. */
  async getBlob(ref: ImageReference, digest: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<Buffer> {
    const o = await this.openBlob(ref, digest, 0, opts);
    const max = opts.maxBytes ?? 64 * 1024 * 1024;
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of o.body) {
      n += (c as Buffer).length;
      if (n > max) { o.body.destroy(); throw new RegistryError(`blob ${digest} is larger than ${max} bytes`); }
      chunks.push(c as Buffer);
    }
    const b = Buffer.concat(chunks);
    const got = sha256Digest(b);
    if (got !== digest) throw new RegistryError(`blob from ${ref.registryHost} does not match its digest: expected ${digest}, got ${got}`, 0, [], 'EDIGEST');
    return b;
  }

  async blobExists(ref: ImageReference, digest: string, opts: { push?: boolean } = {}): Promise<boolean> {
    const req = this.blobReq(ref, digest, 'HEAD');
    if (opts.push) req.scope = repoScope(ref.path, 'pull,push');
    const res = await this.send(req);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    return this.fail(res, req);
  }

  /** POST an upload session; returns its absolute Location. */
  async startUpload(ref: ImageReference): Promise<URL> {
    const req: Req = { host: ref.registryHost, method: 'POST', path: `/v2/${ref.path}/blobs/uploads/`, headers: { 'content-length': '0' }, scope: repoScope(ref.path, 'pull,push'), what: `push to ${ref.repository}`, repo: ref.path };
    const res = await this.send(req);
    if (res.status !== 202) await this.fail(res, req);
    await res.body?.cancel().catch(() => undefined);
    const loc = res.headers.get('location');
    if (!loc) throw new RegistryError(`${ref.registryHost} started an upload without a Location`);
    return new URL(loc, await this.url(ref.registryHost, '/'));
  }

  /**
   * Upload a blob unless the registry has it: POST → 202 Location → PUT ?digest=.
   * source is the bytes, or a factory of a stream (called again on retries).
   */
  async pushBlob(ref: ImageReference, digest: string, source: BodySource, size?: number): Promise<{ existed: boolean }> {
    if (await this.blobExists(ref, digest, { push: true })) return { existed: true };
    const loc = await this.startUpload(ref);
    loc.searchParams.append('digest', digest);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    const len = source instanceof Uint8Array ? source.length : size;
    if (len !== undefined) headers['content-length'] = String(len);
    const req: Req = { host: ref.registryHost, method: 'PUT', path: loc.href, headers, body: source, scope: repoScope(ref.path, 'pull,push'), what: `push blob ${digest.slice(0, 19)} to ${ref.repository}`, repo: ref.path, followRedirects: false };
    const res = await this.send(req);
    if (res.status !== 201 && res.status !== 204) await this.fail(res, req);
    await res.body?.cancel().catch(() => undefined);
    return { existed: false };
  }

  /** Cross-repository mount; true when mounted, false when the registry wants an upload. */
  async mountBlob(ref: ImageReference, digest: string, from: ImageReference): Promise<boolean> {
    const q = new URLSearchParams({ mount: digest, from: from.path });
    const req: Req = { host: ref.registryHost, method: 'POST', path: `/v2/${ref.path}/blobs/uploads/?${q}`, headers: { 'content-length': '0' }, scope: `${repoScope(ref.path, 'pull,push')} ${repoScope(from.path, 'pull')}`, what: `mount ${digest.slice(0, 19)} into ${ref.repository}`, repo: ref.path };
    const res = await this.send(req);
    await res.body?.cancel().catch(() => undefined);
    if (res.status === 201) return true;
    if (res.status === 202) {
      const loc = res.headers.get('location');
      if (loc) {
        // the registry opened an upload instead: cancel it
        const del = await this.send({ ...req, method: 'DELETE', path: new URL(loc, await this.url(ref.registryHost, '/')).href }).catch(() => undefined);
        await del?.body?.cancel().catch(() => undefined);
      }
      return false;
    }
    return this.fail(res, req);
  }

  /** PUT a manifest under ref's tag (or digest); returns its digest. */
  async putManifest(ref: ImageReference, bytes: Uint8Array, mediaType: string): Promise<string> {
    const digest = sha256Digest(bytes);
    const req: Req = { host: ref.registryHost, method: 'PUT', path: this.manifestPath(ref, ref.tag ?? ref.digest ?? digest), headers: { 'content-type': mediaType }, body: bytes, scope: repoScope(ref.path, 'pull,push'), what: `push manifest ${ref.familiar()}`, repo: ref.path, followRedirects: false };
    const res = await this.send(req);
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) await this.fail(res, req);
    await res.body?.cancel().catch(() => undefined);
    const header = res.headers.get('docker-content-digest');
    if (header && header !== digest) throw new RegistryError(`${ref.registryHost} stored manifest ${ref.familiar()} as ${header}, expected ${digest}`, 0, [], 'EDIGEST');
    return digest;
  }

  /** All tags of a repository (follows Link pagination). */
  async listTags(ref: ImageReference): Promise<string[]> {
    const out: string[] = [];
    let path = `/v2/${ref.path}/tags/list`;
    for (let page = 0; page < 1000; page++) {
      const req: Req = { host: ref.registryHost, method: 'GET', path, scope: repoScope(ref.path, 'pull'), what: `list tags of ${ref.repository}`, repo: ref.path };
      const res = await this.send(req);
      if (res.status !== 200) await this.fail(res, req, `repository ${ref.repository} not found on ${ref.registryHost}`);
      const doc = await res.json() as { tags?: unknown };
      if (Array.isArray(doc.tags)) out.push(...doc.tags.filter((x): x is string => typeof x === 'string'));
      const link = res.headers.get('link');
      const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      if (!m) break;
      path = new URL(m[1], await this.url(ref.registryHost, '/')).href;
    }
    return out;
  }
}

function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
}

/** Whether host[:port] (default port 443) completes a TLS handshake within timeoutMs. */
export async function speaksTls(host: string, timeoutMs: number): Promise<boolean> {
  const { connect } = await import('node:tls');
  const { isIP } = await import('node:net');
  const u = new URL(`https://${host}`);
  const hostname = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve) => {
    const s = connect({
      host: hostname, port: Number(u.port || 443), ca: [], rejectUnauthorized: false, ALPNProtocols: ['http/1.1'],
      ...(isIP(hostname) ? {} : { servername: hostname }),
    });
    const done = (v: boolean): void => { clearTimeout(timer); s.destroy(); resolve(v); };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('secureConnect', () => done(true));
    s.once('error', () => done(false));
  });
}
