import t from 'tap';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateSpec, loadBundle } from '../runtime/oci/validate.js';
import { ConfigError } from '../runtime/errors.js';
import { parseMountOptions } from '../runtime/oci/mount-options.js';
import * as L from '../runtime/linux/libc.js';

const good = () => ({
  ociVersion: '1.2.0',
  root: { path: 'rootfs' },
  process: { args: ['/bin/true'], cwd: '/', user: { uid: 0, gid: 0 } },
  linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
});

function pathOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.path;
    throw e;
  }
  return '(no error)';
}

t.test('a good spec passes', async (t) => {
  t.ok(validateSpec(good()));
});

t.test('each bad field is reported by its JSON path', async (t) => {
  const cases: [string, (s: ReturnType<typeof good> & Record<string, unknown>) => void][] = [
    ['ociVersion', (s) => { delete (s as Record<string, unknown>).ociVersion; }],
    ['process.args', (s) => { s.process.args = []; }],
    ['process.cwd', (s) => { s.process.cwd = 'relative/dir'; }],
    ['process.user.uid', (s) => { (s.process.user as Record<string, unknown>).uid = -1; }],
    ['linux.namespaces[1].type', (s) => { s.linux.namespaces[1] = { type: 'bogus' }; }],
    ['linux.namespaces[1].type', (s) => { s.linux.namespaces[1] = { type: 'pid' }; }],
    ['mounts[0].destination', (s) => { s.mounts = [{ destination: 'relative', type: 'tmpfs' }]; }],
    ['linux.uidMappings', (s) => { s.linux.namespaces.push({ type: 'user' }); }],
    ['process.rlimits[0]', (s) => { (s.process as Record<string, unknown>).rlimits = [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 5 }]; }],
    ['process.env[0]', (s) => { (s.process as Record<string, unknown>).env = ['NOEQUALS']; }],
    ['hooks.prestart[0].path', (s) => { s.hooks = { prestart: [{ path: 'rel' }] }; }],
    ['linux.cgroupsPath', (s) => { (s.linux as Record<string, unknown>).cgroupsPath = '/a/../../b'; }],
  ];
  for (const [path, mutate] of cases) {
    const s = good() as ReturnType<typeof good> & Record<string, unknown>;
    mutate(s);
    t.equal(pathOf(() => validateSpec(s)), path, `reports ${path}`);
  }
});

t.test('loadBundle: missing config, bad JSON, missing rootfs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-validate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.throws(() => loadBundle(dir), /cannot read .*config\.json/);
  writeFileSync(join(dir, 'config.json'), '{ not json');
  t.throws(() => loadBundle(dir), /not valid JSON/);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(good()));
  t.throws(() => loadBundle(dir), /rootfs .* does not exist/);
  mkdirSync(join(dir, 'rootfs'));
  t.equal(loadBundle(dir).rootfs, join(dir, 'rootfs'));
});

t.test('mount options become flags, propagation and data', async (t) => {
  const p = parseMountOptions(['nosuid', 'noexec', 'rbind', 'ro', 'rslave', 'mode=755', 'size=65536k']);
  t.equal(p.flags, L.MS_NOSUID | L.MS_NOEXEC | L.MS_BIND | L.MS_REC | L.MS_RDONLY);
  t.same(p.propagation, [L.MS_SLAVE | L.MS_REC]);
  t.equal(p.data, 'mode=755,size=65536k');
  t.equal(parseMountOptions(['ro', 'rw']).flags, 0, 'rw clears ro');
});
