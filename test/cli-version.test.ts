/**
 * `berth --version` and `berth-oci --version` print the version package.json has (and the OCI
 * runtime-spec version for berth-oci, as runc does), through the installed entry points.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OCI_VERSION } from '../runtime/version.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string };

function cli(bin: string, args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [join(repo, 'bin', bin), ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

t.test('berth --version', async (tt) => {
  const r = cli('berth.js', ['--version']);
  tt.equal(r.code, 0, r.err);
  tt.equal(r.out, `berth version ${pkg.version}\n`);
});

t.test('berth-oci --version and -v', async (tt) => {
  for (const flag of ['--version', '-v']) {
    const r = cli('berth-oci.js', [flag]);
    tt.equal(r.code, 0, r.err);
    tt.equal(r.out, `berth-oci version ${pkg.version}\nspec: ${OCI_VERSION}\n`, flag);
  }
});

t.test('berth-oci spec writes the spec version it reports', async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-version-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = cli('berth-oci.js', ['spec', '--bundle', dir]);
  tt.equal(r.code, 0, r.err);
  tt.equal((JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { ociVersion: string }).ociVersion, OCI_VERSION);
});
