/**
 * One HTTP/1.1 exchange for the registry client, on node:http and node:https, with the subset
 * of fetch's Response the client uses (status, headers.get, text/json/arrayBuffer, a body to
 * iterate or cancel). Why not fetch: undici's web streams cost ~2.3x the CPU per byte of a blob
 * (119 MB from a loopback registry: ~275 ms of CPU against ~120 ms here), a pull is CPU-bound on
 * a small node, and loading undici itself costs every `berth pull` a few ms.
 *
 * Behaviour kept from the fetch version: redirects are not followed (the client follows them by
 * hand, dropping Authorization across origins); `timeoutMs` bounds the wait for the response
 * headers only; an abort signal fails the request or the body being read with signal.reason; a
 * body without Content-Length is sent chunked; connections are kept alive per protocol (idle
 * sockets never keep the process alive) and unlimited per origin. A response's body must be read
 * or cancelled (a busy socket keeps the process alive); HEAD and bodiless responses are drained
 * here; TLS verifies against Node's CA
 * store plus NODE_EXTRA_CA_CERTS, as fetch does. No Accept-Encoding is sent, so nothing comes
 * back compressed.
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export type RequestBody = Uint8Array | Readable | AsyncIterable<Uint8Array>;

export interface HttpHeaders {
  /** The value (repeated headers joined with ", "), or null. */
  get(name: string): string | null;
}

export interface HttpBody extends AsyncIterable<Buffer> {
  /** Stop reading and drop the connection's rest of the body. */
  cancel(): Promise<void>;
  /** The body as a Node stream (the same bytes: iterate or use this, not both). */
  readonly stream: Readable;
}

export interface HttpResponse {
  status: number;
  statusText: string;
  headers: HttpHeaders;
  body: HttpBody;
  text(): Promise<string>;
  json(): Promise<unknown>;
  arrayBuffer(): Promise<ArrayBuffer>;
}

export interface RequestInit {
  method: string;
  headers: Record<string, string>;
  body?: RequestBody;
  signal?: AbortSignal;
  /** Give up when no response headers arrived within this many ms (a TimeoutError). */
  timeoutMs: number;
}

/** Keep-alive agents, made at the first request (node:http and node:https load lazily in the CLI bundle). */
let agents: { 'http:': http.Agent; 'https:': https.Agent } | null = null;

class NodeHeaders implements HttpHeaders {
  constructor(private readonly raw: http.IncomingHttpHeaders) {}
  get(name: string): string | null {
    const v = this.raw[name.toLowerCase()];
    if (v === undefined) return null;
    return Array.isArray(v) ? v.join(', ') : v;
  }
}

function bodyOf(res: http.IncomingMessage): HttpBody {
  return {
    stream: res,
    // All of a small body may be in already (complete) yet unread: draining it frees the socket
    // for the next request; a body still arriving is cut off with its connection.
    cancel: async () => { if (res.complete) res.resume(); else res.destroy(); },
    [Symbol.asyncIterator]: () => res[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
  };
}

async function readAll(res: http.IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of res) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function timeoutError(url: URL, ms: number): Error {
  return Object.assign(new Error(`no response from ${url.host} within ${ms} ms`), { name: 'TimeoutError' });
}

/** Send one request; resolves with the response once its headers are in (any status). */
export function request(url: URL, init: RequestInit): Promise<HttpResponse> {
  const proto = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
  if (!proto) return Promise.reject(new TypeError(`unsupported protocol ${url.protocol}`));
  const signal = init.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<HttpResponse>((resolve, reject) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.body instanceof Uint8Array) headers['content-length'] = String(init.body.length);
    agents ??= { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };
    const req = proto.request(url, { method: init.method, headers, agent: agents[url.protocol as 'http:' | 'https:'] });
    let res: http.IncomingMessage | null = null;
    const fail = (e: unknown) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy(e instanceof Error ? e : new Error(String(e)));
      reject(e);
    };
    const onAbort = () => {
      const reason = signal?.reason as unknown;
      if (res) res.destroy(reason instanceof Error ? reason : new Error(String(reason)));
      else fail(reason);
    };
    const timer = setTimeout(() => fail(timeoutError(url, init.timeoutMs)), init.timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e) => { if (!res) fail(e); });
    req.on('response', (r) => {
      res = r;
      clearTimeout(timer);
      // A response without a body still has to be read to its end, or its socket stays busy
      // (and keeps the process alive); callers only look at these responses' headers.
      if (init.method === 'HEAD' || r.statusCode === 204 || r.statusCode === 304 || r.headers['content-length'] === '0') r.resume();
      r.on('close', () => signal?.removeEventListener('abort', onAbort));
      resolve({
        status: r.statusCode ?? 0,
        statusText: r.statusMessage ?? '',
        headers: new NodeHeaders(r.headers),
        body: bodyOf(r),
        text: async () => (await readAll(r)).toString('utf8'),
        json: async () => JSON.parse((await readAll(r)).toString('utf8')) as unknown,
        arrayBuffer: async () => {
          const b = await readAll(r);
          return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
        },
      });
    });
    if (init.body === undefined) req.end();
    else if (init.body instanceof Uint8Array) req.end(init.body);
    else {
      const src = init.body instanceof Readable ? init.body : Readable.from(init.body, { objectMode: false });
      pipeline(src, req).catch((e: unknown) => { if (!res) fail(e); });
    }
  });
}
