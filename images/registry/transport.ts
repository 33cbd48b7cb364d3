/**
 * Transport policy and low-level helpers for the registry client: which hosts may use plain
 * http (loopback and the ones the user lists as insecure), which errors are worth retrying,
 * Retry-After and rate-limit header parsing, and backoff delays.
 */
import { isIP } from 'node:net';

/** 127.0.0.0/8, ::1, localhost (with or without :port). */
export function isLoopbackHost(host: string): boolean {
  let h = host.toLowerCase();
  if (h.startsWith('[')) h = h.slice(1, h.indexOf(']'));
  else if (h.split(':').length === 2) h = h.split(':')[0];
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

/** May this host be reached over plain http? */
export function plainHttpAllowed(host: string, insecure: readonly string[]): boolean {
  if (isLoopbackHost(host)) return true;
  const h = host.toLowerCase();
  return insecure.some((i) => {
    const x = i.toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '');
    return x === h || (!x.includes(':') && h.split(':')[0] === x);
  });
}

const RETRYABLE_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNABORTED',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
]);

/** Error code of a fetch failure (walks .cause). */
export function networkErrorCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur; i++) {
    const c = cur as { code?: unknown; name?: unknown; cause?: unknown };
    if (typeof c.code === 'string') return c.code;
    if (c.name === 'TimeoutError' || c.name === 'AbortError') return String(c.name);
    cur = c.cause;
  }
  return undefined;
}

export function isRetryableNetworkError(e: unknown): boolean {
  const code = networkErrorCode(e);
  if (code === undefined) return e instanceof TypeError; // undici's "fetch failed" without a cause code
  return RETRYABLE_CODES.has(code) || code === 'TimeoutError';
}

export function describeNetworkError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur; i++) {
    const c = cur as { message?: unknown; code?: unknown; cause?: unknown };
    if (typeof c.message === 'string' && c.message && !parts.includes(c.message)) parts.push(c.message);
    cur = c.cause;
  }
  return parts.join(': ') || String(e);
}

/** Retry-After as milliseconds: delta seconds or an HTTP date; undefined when absent/invalid. */
export function parseRetryAfter(v: string | null, now = Date.now()): number | undefined {
  if (!v) return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

export interface RateLimitInfo {
  host: string;
  limit?: number;
  remaining?: number;
  /** Window in seconds (`w=` of the header). */
  windowS?: number;
  /** Set when the registry answered 429. */
  retryAfterMs?: number;
}

/** ratelimit-limit: "100;w=21600", ratelimit-remaining: "76;w=21600". */
export function parseRateLimit(host: string, headers: { get(name: string): string | null }): RateLimitInfo | undefined {
  const lim = headers.get('ratelimit-limit');
  const rem = headers.get('ratelimit-remaining');
  if (!lim && !rem) return undefined;
  const num = (s: string | null) => {
    if (!s) return undefined;
    const n = Number(s.split(';')[0].trim());
    return Number.isFinite(n) ? n : undefined;
  };
  const w = /w=(\d+)/.exec(lim ?? rem ?? '');
  return { host, limit: num(lim), remaining: num(rem), ...(w ? { windowS: Number(w[1]) } : {}) };
}

/** Exponential backoff with jitter: base·2^(attempt-1) · [0.75, 1.25). */
export function backoffDelay(attempt: number, baseMs: number, maxMs = 10_000): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(d * (0.75 + Math.random() * 0.5));
}

export const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve, reject) => {
  if (signal?.aborted) { reject(signal.reason); return; }
  const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = () => { clearTimeout(t); reject(signal?.reason); };
  signal?.addEventListener('abort', onAbort, { once: true });
});
