/**
 * Which scheme the registry client speaks to a host: https always, except for hosts that may be
 * spoken to in plain http (loopback, --insecure) and turn out not to speak TLS. Real servers on
 * 127.0.0.1: a TLS server with a self-signed certificate made by openssl, a plain HTTP server, a
 * closed port, and a server that accepts and never answers.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { RegistryClient, speaksTls } from '../images/registry/client.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-scheme-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function listen(s: Server): Promise<string> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => {
    const a = s.address();
    resolve(`127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`);
  }));
}
const close = (s: Server): Promise<void> => new Promise((r) => { s.close(() => r()); });

t.test('a TLS server is spoken to in https, a plain one in http', async (t) => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const tls = createTlsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (c) => c.end());
  const tlsHost = await listen(tls);
  t.teardown(() => close(tls));
  const http = createHttpServer((_req, res) => { res.writeHead(401); res.end(); });
  const httpHost = await listen(http);
  t.teardown(() => close(http));

  t.equal(await speaksTls(tlsHost, 2000), true, 'handshake completes without trusting the certificate');
  t.equal(await speaksTls(httpHost, 2000), false, 'plain http answers the ClientHello with garbage');
  const c = new RegistryClient({});
  t.equal(await c.scheme(tlsHost), 'https');
  t.equal(await c.scheme(httpHost), 'http');
});

t.test('a closed port or a silent server means no TLS; a remote host is https without a probe', async (t) => {
  const closed = createNetServer();
  const closedHost = await listen(closed);
  await close(closed);
  t.equal(await speaksTls(closedHost, 2000), false, 'connection refused');

  const silent = createNetServer(() => { /* accept, never answer */ });
  const silentHost = await listen(silent);
  t.teardown(() => { silent.close(); });
  const t0 = Date.now();
  t.equal(await speaksTls(silentHost, 300), false, 'timed out');
  t.ok(Date.now() - t0 < 2000, 'within the timeout');

  const c = new RegistryClient({});
  // Not loopback and not --insecure: never plain http, so nothing to ask (no DNS, no connect).
  t.equal(await c.scheme('registry.invalid:5000'), 'https');
});
