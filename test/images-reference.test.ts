import t from 'tap';
import { parseReference, ReferenceError, withRef } from '../images/reference.js';

const D = 'sha256:' + 'a'.repeat(64);

t.test('valid references normalise as docker does', async (t) => {
  const table: [string, string, string, string][] = [
    // input, canonical, familiar, registryHost
    ['alpine', 'docker.io/library/alpine:latest', 'alpine:latest', 'registry-1.docker.io'],
    ['alpine:3.19', 'docker.io/library/alpine:3.19', 'alpine:3.19', 'registry-1.docker.io'],
    ['library/alpine', 'docker.io/library/alpine:latest', 'alpine:latest', 'registry-1.docker.io'],
    ['docker.io/alpine', 'docker.io/library/alpine:latest', 'alpine:latest', 'registry-1.docker.io'],
    ['index.docker.io/library/alpine', 'docker.io/library/alpine:latest', 'alpine:latest', 'registry-1.docker.io'],
    ['user/app', 'docker.io/user/app:latest', 'user/app:latest', 'registry-1.docker.io'],
    ['user/app:v1.2_3-rc', 'docker.io/user/app:v1.2_3-rc', 'user/app:v1.2_3-rc', 'registry-1.docker.io'],
    ['quay.io/a/b/c:tag', 'quay.io/a/b/c:tag', 'quay.io/a/b/c:tag', 'quay.io'],
    ['host:5000/a/b/c:tag', 'host:5000/a/b/c:tag', 'host:5000/a/b/c:tag', 'host:5000'],
    ['127.0.0.1:5000/x', '127.0.0.1:5000/x:latest', '127.0.0.1:5000/x:latest', '127.0.0.1:5000'],
    ['localhost/x', 'localhost/x:latest', 'localhost/x:latest', 'localhost'],
    ['localhost:5000/x:1', 'localhost:5000/x:1', 'localhost:5000/x:1', 'localhost:5000'],
    ['[::1]:5000/x', '[::1]:5000/x:latest', '[::1]:5000/x:latest', '[::1]:5000'],
    [`alpine@${D}`, `docker.io/library/alpine@${D}`, `alpine@${D}`, 'registry-1.docker.io'],
    [`alpine:3@${D}`, `docker.io/library/alpine:3@${D}`, `alpine:3@${D}`, 'registry-1.docker.io'],
    [`host:5000/a@${D}`, `host:5000/a@${D}`, `host:5000/a@${D}`, 'host:5000'],
    ['ab-c__d/e--f.g', 'docker.io/ab-c__d/e--f.g:latest', 'ab-c__d/e--f.g:latest', 'registry-1.docker.io'],
    ['Registry.Example.COM/x', 'Registry.Example.COM/x:latest', 'Registry.Example.COM/x:latest', 'Registry.Example.COM'],
  ];
  for (const [input, canonical, familiar, host] of table) {
    const r = parseReference(input);
    t.equal(r.string(), canonical, `${input} canonical`);
    t.equal(r.familiar(), familiar, `${input} familiar`);
    t.equal(r.registryHost, host, `${input} host`);
    t.equal(r.repository, canonical.replace(/[:@][^/]*$/, '').replace(/:[^/]*$/, ''), `${input} repository`);
  }
  const r = parseReference(`quay.io/a/b:1@${D}`);
  t.equal(r.domain, 'quay.io');
  t.equal(r.path, 'a/b');
  t.equal(r.tag, '1');
  t.equal(r.digest, D);
  t.equal(r.ref, D, 'digest wins as the reference to fetch');
  t.equal(parseReference(`x@${D}`).tag, undefined, 'no default tag when pinned by digest');
  t.equal(withRef(parseReference('x:1'), { digest: D }).string(), `docker.io/library/x@${D}`);
  t.equal(withRef(parseReference(`x@${D}`), { tag: 'v2' }).string(), 'docker.io/library/x:v2');
});

t.test('invalid references say why', async (t) => {
  const table: [string, RegExp][] = [
    ['', /empty/],
    ['Alpine', /must be lowercase/],
    ['user/MyApp', /must be lowercase/],
    ['alpine:', /tag "" is invalid/],
    ['alpine:-x', /tag "-x" is invalid/],
    ['alpine:.x', /tag ".x" is invalid/],
    [`alpine:${'a'.repeat(129)}`, /tag .* is invalid/],
    ['alpine@sha256:abc', /not a digest/],
    [`alpine@sha256:${'A'.repeat(64)}`, /64 lowercase hex/],
    [`alpine@md5:${'a'.repeat(32)}`, /not supported \(only sha256\)/],
    ['alpine@', /not a digest/],
    ['a.b__c/x', /not a valid host name/],
    ['-alpine', /path component "-alpine" is invalid/],
    ['a//b', /empty path component/],
    ['a/b/', /empty path component/],
    ['host:port/x', /port "port" is not a number/],
    ['bad_host.com/x', /not a valid host name/],
    ['alp ine', /whitespace/],
    ['a/b:c:d', /not a valid host name|invalid/],
    [`x/${'a'.repeat(260)}`, /longer than 255/],
    [':tag', /missing repository name/],
  ];
  for (const [input, why] of table) {
    try {
      parseReference(input);
      t.fail(`${JSON.stringify(input)} should be refused`);
    } catch (e) {
      t.ok(e instanceof ReferenceError, `${JSON.stringify(input)} → ReferenceError`);
      t.equal((e as ReferenceError).code, 'EINVALIDREF');
      t.match((e as Error).message, why, `${JSON.stringify(input)}: ${(e as Error).message}`);
    }
  }
});
