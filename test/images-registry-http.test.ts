/**
 * images/registry/http.ts, the registry client's HTTP exchange on node:http, against a real
 * local HTTP server: keep-alive reuse, a chunked upload, the header timeout, an abort while the
 * body streams, a body cut short by the server, and a process that exits on its own after HEAD
 * requests and cancelled bodies (a busy keep-alive socket would keep it running).
 */
import t from 'tap';
import http from 'node:http';
import { getEventListeners } from 'node:events';
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { request } from '../images/registry/http.js';
import { isRetryableNetworkError } from '../images/registry/transport.js';

t.setTimeout(60000);

const BIG = Buffer.alloc(4 << 20, 7);
let connections = 0;
const server = http.createServer((req, res) => {
  const u = new URL(req.url ?? '/', 'http://x');
  if (u.pathname === '/small') { res.setHeader('content-type', 'application/json'); res.end('{"ok":true}'); return; }
  if (u.pathname === '/big') { res.setHeader('content-length', String(BIG.length)); res.end(BIG); return; }
  if (u.pathname === '/slow-headers') { setTimeout(() => res.end('late'), 2000); return; }
  if (u.pathname === '/trickle') {
    res.setHeader('content-length', String(1 << 20));
    res.write(Buffer.alloc(1024));
    const timer = setInterval(() => res.write(Buffer.alloc(1024)), 50);
    res.on('close', () => clearInterval(timer));
    return;
  }
  if (u.pathname === '/short') {
    res.setHeader('content-length', '100000');
    res.write(Buffer.alloc(5000));
    setTimeout(() => res.socket?.destroy(), 20);
    return;
  }
  if (u.pathname === '/echo') {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => res.end(JSON.stringify({ n: Buffer.concat(parts).length, chunked: req.headers['transfer-encoding'] === 'chunked', len: req.headers['content-length'] ?? null })));
    return;
  }
  res.statusCode = 404;
  res.end();
});
server.on('connection', () => { connections++; });
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));

const get = (path: string, o: { signal?: AbortSignal; timeoutMs?: number; method?: string } = {}) =>
  request(new URL(path, base), { method: o.method ?? 'GET', headers: {}, timeoutMs: o.timeoutMs ?? 5000, ...(o.signal ? { signal: o.signal } : {}) });

t.test('status, headers and bodies; sequential requests reuse one connection', async (t) => {
  const before = connections;
  const a = await get('/small');
  t.equal(a.status, 200);
  t.equal(a.headers.get('Content-Type'), 'application/json', 'headers by any case');
  t.equal(a.headers.get('x-nope'), null);
  t.same(await a.json(), { ok: true });
  const b = await get('/big');
  let n = 0;
  for await (const c of b.body) n += c.length;
  t.equal(n, BIG.length, 'a 4 MiB body streams whole');
  const c = await get('/nothing-here');
  t.equal(c.status, 404);
  await c.body.cancel();
  const d = await get('/small', { method: 'HEAD' });
  t.equal(d.status, 200, 'HEAD');
  t.equal(connections - before, 1, 'one keep-alive connection for all four');
});

t.test('an upload from an async iterable goes chunked; a buffer with its length', async (t) => {
  async function* parts() { for (let i = 0; i < 10; i++) yield Buffer.alloc(100_000, i); }
  const r = await request(new URL('/echo', base), { method: 'PUT', headers: {}, body: parts(), timeoutMs: 5000 });
  t.same(await r.json(), { n: 1_000_000, chunked: true, len: null });
  const r2 = await request(new URL('/echo', base), { method: 'PUT', headers: {}, body: Buffer.alloc(1234), timeoutMs: 5000 });
  t.same(await r2.json(), { n: 1234, chunked: false, len: '1234' });
});

t.test('no headers within the timeout: a TimeoutError, retryable', async (t) => {
  const e = await get('/slow-headers', { timeoutMs: 200 }).then(() => null, (x: unknown) => x);
  t.equal((e as Error)?.name, 'TimeoutError');
  t.match((e as Error).message, /no response from 127\.0\.0\.1:\d+ within 200 ms/);
  t.ok(isRetryableNetworkError(e), 'the client retries it');
  // a client's signal outlives its requests: a failed one must not leave its listener on it
  const shared = new AbortController();
  await get('/slow-headers', { timeoutMs: 100, signal: shared.signal }).catch(() => {});
  await (await get('/small', { signal: shared.signal })).text();
  t.equal(getEventListeners(shared.signal, 'abort').length, 0, 'no abort listener left on a shared signal');
});

t.test('an abort while the body streams ends the read with the reason', async (t) => {
  const ac = new AbortController();
  const r = await get('/trickle', { signal: ac.signal });
  setTimeout(() => ac.abort(new Error('stop now')), 120);
  let n = 0;
  const e = await (async () => { for await (const c of r.body) n += c.length; })().then(() => null, (x: unknown) => x);
  t.match((e as Error)?.message, /stop now/, 'the abort reason');
  t.ok(n > 0 && n < (1 << 20), 'after part of the body');
  const pre = new AbortController();
  pre.abort(new Error('before'));
  await t.rejects(get('/small', { signal: pre.signal }), /before/, 'already aborted: rejected at once');
});

t.test('a body the server cuts short is an error the client retries, not a short success', async (t) => {
  const r = await get('/short');
  let n = 0;
  const e = await (async () => { for await (const c of r.body) n += c.length; })().then(() => null, (x: unknown) => x);
  t.ok(e, `reading fails (${(e as Error)?.message})`);
  t.equal(n, 5000, 'after the bytes that came');
  t.ok(isRetryableNetworkError(e), 'retryable (the content store resumes with Range)');
});

t.test('a process that made HEAD requests and cancelled bodies exits by itself', async (t) => {
  const mod = new URL('../images/registry/http.ts', import.meta.url).href;
  const script = `
    const { request } = await import(${JSON.stringify(mod)});
    const at = (p, method = 'GET') => request(new URL(p, ${JSON.stringify(base)}), { method, headers: {}, timeoutMs: 5000 });
    await at('/small', 'HEAD');
    const a = await at('/small'); await new Promise((r) => setTimeout(r, 50)); await a.body.cancel();
    const b = await at('/big'); await b.body.cancel();
    const c = await at('/nothing-here'); await c.body.cancel();
    process.stdout.write('done');`;
  const t0 = Date.now();
  // not spawnSync: the server runs on this process's event loop
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d: Buffer) => { stdout += d; });
    c.stderr.on('data', (d: Buffer) => { stderr += d; });
    const timer = setTimeout(() => c.kill('SIGKILL'), 20000);
    c.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
  t.equal(r.stdout, 'done', r.stderr);
  t.equal(r.status, 0, 'exited 0, not killed by the timeout');
  t.ok(Date.now() - t0 < 15000, 'without waiting for keep-alive sockets');
});
