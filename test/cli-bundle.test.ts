/**
 * The `berth` entry point (bin/berth.cjs, bin/berth.js is a symlink to it) runs the one-file
 * bundle that scripts/bundle-berth.mjs builds, with a V8 code cache, and falls back to the
 * compiled modules when a source the bundle was built from changed. Checked in a private package
 * tree (bundle built with --outdir into it; native/, node_modules/ and berth-oci linked to this
 * checkout's) whose dist/runtime/cli/berth.js is a stand-in that says "modules": what prints tells
 * which of the two ran. The bundle then pulls from the real docker-registry and runs a container
 * (--network none), so paths it finds next to its modules (berth-monitor, berth-oci) and the
 * lazily loaded packages (tar-stream, zlib, koffi) work from the bundle too.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { baseImage, pushTestImage } from './fixtures/images.js';

t.setTimeout(300000);

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const rand = randomBytes(3).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'berth-bundle-'));
const pkg = join(dir, 'pkg');
const root = join(dir, 'root');
const state = join(dir, 's');
const cgParent = `berth-bundletest-${rand}`;
const env: NodeJS.ProcessEnv = { ...process.env, BERTH_CGROUP_PARENT: cgParent };
delete env.NODE_EXTRA_CA_CERTS;
delete env.BERTH_NO_BUNDLE;
let reg: TestRegistry | undefined;

interface Res { code: number; stdout: string; stderr: string }

/** Run the private tree's bin/berth.js (the symlink, as `berth` is run) with extra node flags. */
function berth(args: string[], o: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<Res> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [...(o.nodeArgs ?? []), join(pkg, 'bin/berth.js'), '--root', root, '--state', state, ...args], {
      env: { ...env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`berth ${args.join(' ')} timed out; stderr: ${stderr}`)); }, 120000);
    child.on('error', rej);
    child.on('close', (code) => { clearTimeout(timer); res({ code: code ?? -1, stdout, stderr }); });
  });
}

const cacheFile = join(pkg, 'dist/berth.cjs.cache');
/** The cache header: "<bundle size>:<bundle mtime>:<generation>", or null without a cache. */
function cacheHeader(): string[] | null {
  if (!existsSync(cacheFile)) return null;
  const c = readFileSync(cacheFile);
  return c.subarray(0, c.indexOf(10)).toString().split(':');
}

function mountsUnder(p: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(p));
}

function cgroupDirs(): string[] {
  return readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c, cgParent)).filter((p) => existsSync(p));
}

t.before(() => {
  for (const d of ['bin', 'dist/runtime/cli', 'runtime']) mkdirSync(join(pkg, d), { recursive: true });
  writeFileSync(join(pkg, 'package.json'), '{ "type": "module" }\n');
  copyFileSync(join(repo, 'bin/berth.cjs'), join(pkg, 'bin/berth.cjs'));
  copyFileSync(join(repo, 'bin/bundle-loader.cjs'), join(pkg, 'bin/bundle-loader.cjs'));
  symlinkSync('berth.cjs', join(pkg, 'bin/berth.js'));
  for (const f of ['bin/berth-oci.cjs', 'bin/berth-oci.js']) symlinkSync(join(repo, f), join(pkg, f));
  for (const d of ['native', 'node_modules']) symlinkSync(join(repo, d), join(pkg, d));
  // dist/: the checkout's compiled modules (the bundle finds workers such as
  // images/unpack-worker.js there, as it does in a package), except the CLI's entry module,
  // replaced by a stand-in that names itself and what it was given.
  symlinkSync(join(repo, 'dist/images'), join(pkg, 'dist/images'));
  for (const e of readdirSync(join(repo, 'dist/runtime'))) if (e !== 'cli') symlinkSync(join(repo, 'dist/runtime', e), join(pkg, 'dist/runtime', e));
  for (const e of readdirSync(join(repo, 'dist/runtime/cli'))) if (e !== 'berth.js') symlinkSync(join(repo, 'dist/runtime/cli', e), join(pkg, 'dist/runtime/cli', e));
  writeFileSync(join(pkg, 'dist/runtime/cli/berth.js'),
    "export async function main(argv) { process.stdout.write(`modules ${JSON.stringify(argv.slice(2))}\\n`); }\n");
  execFileSync(process.execPath, [join(repo, 'scripts/bundle-berth.mjs'), '--outdir', join(pkg, 'dist')], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
});

t.teardown(async () => {
  try {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmd.includes('berth-monitor') && cmd.includes(state)) process.kill(Number(pid), 'SIGKILL');
      } catch { /* gone */ }
    }
    for (const m of mountsUnder(dir).reverse()) { try { execFileSync('umount', ['-l', m]); } catch { /* gone */ } }
    for (const p of cgroupDirs()) { try { rmdirSync(p); } catch { /* busy: reported by the test */ } }
  } finally {
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('the bundle is one ASCII CommonJS file and lists its sources', async (t) => {
  const bytes = readFileSync(join(pkg, 'dist/berth.cjs'));
  t.notOk(bytes.some((b) => b > 0x7f), 'pure ASCII (bin/berth.cjs reads it as latin1)');
  const src = bytes.toString('latin1');
  t.match(src, /^'use strict';/, 'strict mode, as the ES modules it comes from');
  t.notMatch(src, /require\("(commander|better-sqlite3|\.\/)/, 'commander, better-sqlite3\'s JavaScript and all of berth inside, no relative requires');
  t.notMatch(src, /__toESM\(require\("node:/, 'built-ins are linked once, not copied into each importing module');
  const inputs = JSON.parse(readFileSync(join(pkg, 'dist/berth.inputs.json'), 'utf8')) as Record<string, number>;
  for (const f of ['runtime/cli/berth.ts', 'runtime/cli/containers-cmd.ts', 'runtime/engine/engine.ts', 'images/store.ts']) {
    t.type(inputs[f], 'number', `${f} listed with its mtime`);
  }
});

t.test('the bundle runs, and writes and reuses a V8 code cache', async (t) => {
  rmSync(cacheFile, { force: true });
  const help = await berth(['--help']);
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /Usage: berth \[options\] \[command\]/, 'commander help from the bundle');
  t.notMatch(help.stdout, /^modules/, 'not the modules');
  const size = readFileSync(join(pkg, 'dist/berth.cjs')).length;
  t.same(cacheHeader()?.slice(0, 1), [String(size)], 'cache written for this bundle');
  t.equal(cacheHeader()?.[2], '1', 'first generation');
  const ps = await berth(['ps', '-a']);
  t.equal(ps.code, 0, ps.stderr);
  t.match(ps.stdout, /^CONTAINER ID\s+IMAGE\s+COMMAND/, 'ps from the bundle');
  t.equal(cacheHeader()?.[2], '2', 'the cache was accepted and grows with the commands run');

  // A cache V8 rejects (garbage after a matching header) is ignored and replaced.
  const header = readFileSync(cacheFile).subarray(0, readFileSync(cacheFile).indexOf(10) + 1);
  writeFileSync(cacheFile, Buffer.concat([header, Buffer.from('not a code cache')]));
  const again = await berth(['ps', '-a']);
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, /^CONTAINER ID/, 'runs with a rejected cache');
  t.equal(cacheHeader()?.[2], '1', 'rejected cache rewritten');

  // A cache made for another build (header mismatch) is not used.
  writeFileSync(cacheFile, `1:2:5\n${'x'.repeat(100)}`);
  const other = await berth(['ps', '-a']);
  t.equal(other.code, 0, other.stderr);
  t.same(cacheHeader()?.slice(0, 1), [String(size)], 'replaced by a cache for this bundle');
});

/**
 * --require'd into the CLI and its worker threads: "KOFFI <thread>" when koffi is required,
 * "BUILTIN <name>" when one of the Node built-ins the bundle loads lazily is required,
 * "WORKER <script>" when a worker loads its CommonJS script, and "LOADED [...]" (the modules in
 * require.cache) when the main thread exits.
 */
const PROBE = `const { isMainThread } = require('node:worker_threads');
const Module = require('node:module');
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === 'koffi') process.stderr.write('KOFFI ' + (isMainThread ? 'main' : 'worker') + '\\n');
  if (/^node:(crypto|http|https|tls|zlib|worker_threads|child_process|fs\\/promises)$/.test(request)) process.stderr.write('BUILTIN ' + request + '\\n');
  if (!isMainThread && isMain) process.stderr.write('WORKER ' + request + '\\n');
  return load.call(this, request, parent, isMain);
};
if (isMainThread) process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify(Object.keys(require.cache)) + '\\n'));
`;
function probeFile(): string {
  const probe = join(dir, 'probe.cjs');
  if (!existsSync(probe)) writeFileSync(probe, PROBE);
  return probe;
}

t.test('`berth ps` from the bundle loads neither koffi nor tar-stream, and commander and better-sqlite3 from the bundle', async (t) => {
  const r = await berth(['ps'], { nodeArgs: ['--require', probeFile()] });
  t.equal(r.code, 0, r.stderr);
  const loaded = JSON.parse(/LOADED (.*)/.exec(r.stderr)?.[1] ?? '[]') as string[];
  for (const m of ['koffi', 'tar-stream', 'commander', 'better-sqlite3/lib', 'bindings']) {
    t.notOk(loaded.some((f) => f.includes(`/node_modules/${m}/`)), `${m} not loaded from node_modules`);
  }
  t.notMatch(r.stderr, /KOFFI/, 'no koffi');
});

t.test('a changed source, a missing inputs list or BERTH_NO_BUNDLE=1 runs the modules', async (t) => {
  const inputs = JSON.parse(readFileSync(join(pkg, 'dist/berth.inputs.json'), 'utf8')) as Record<string, number>;
  t.type(inputs['runtime/errors.ts'], 'number');
  // The private tree ships no sources (they do not count); one that appears with another mtime does.
  const src = join(pkg, 'runtime/errors.ts');
  copyFileSync(join(repo, 'runtime/errors.ts'), src);
  utimesSync(src, new Date(), new Date(Date.now() + 1000));
  const changed = await berth(['ps']);
  t.equal(changed.code, 0, changed.stderr);
  t.match(changed.stdout, /^modules \[.*"ps"\]/, 'a newer source: the compiled modules run, with the same argv');
  rmSync(src);
  t.notMatch((await berth(['ps'])).stdout, /^modules/, 'source gone (not shipped): the bundle again');

  const list = join(pkg, 'dist/berth.inputs.json');
  const saved = readFileSync(list);
  rmSync(list);
  t.match((await berth(['ps'])).stdout, /^modules/, 'no inputs list: modules');
  writeFileSync(list, saved);
  t.match((await berth(['ps'], { env: { BERTH_NO_BUNDLE: '1' } })).stdout, /^modules/, 'BERTH_NO_BUNDLE=1: modules');
  t.notMatch((await berth(['ps'])).stdout, /^modules/, 'and the bundle once more');
});

t.test('pull, run, save and errors through the bundle', async (t) => {
  reg = await startRegistry();
  const { ref } = await pushTestImage(reg.host, 'berth/bundle', 'latest', await baseImage());
  const pull = await berth(['pull', '-q', ref], { nodeArgs: ['--require', probeFile()] });
  t.equal(pull.code, 0, `pull (tar-stream and zlib, loaded lazily): ${pull.stderr}`);
  const workers = [...pull.stderr.matchAll(/^WORKER (.*)$/gm)].map((m) => m[1]);
  t.ok(workers.length > 0, 'layers unpacked on worker threads');
  t.same([...new Set(workers)], [join(pkg, 'dist/unpack-worker.cjs')], 'each one runs the worker bundle');
  t.notMatch(pull.stderr, /KOFFI/, 'a pull of layers without whiteouts or devices loads no koffi, on any thread');
  const run = await berth(['run', '--rm', '--network', 'none', ref, 'sh', '-c', 'echo hi from $(hostname); exit 3']);
  t.equal(run.code, 3, `the container's exit code: ${run.stderr}`);
  t.match(run.stdout, /^hi from \w+/, 'its output');
  // The first run compiled the seccomp profile (koffi and libseccomp); this one finds it cached.
  const again = await berth(['run', '--rm', '--network', 'none', ref, 'true'], { nodeArgs: ['--require', probeFile()] });
  t.equal(again.code, 0, again.stderr);
  t.notMatch(again.stderr, /KOFFI/, 'a `berth run` loads no koffi (berth.node has its calls)');
  t.notMatch(again.stderr, /BUILTIN/, 'nor crypto, http(s), tls, zlib, worker_threads, child_process or fs/promises');
  const loaded = JSON.parse(/LOADED (.*)/.exec(again.stderr)?.[1] ?? '[]') as string[];
  t.ok(loaded.some((f) => f.endsWith('/better_sqlite3.node')), 'the image store opened, with better-sqlite3\'s addon');
  t.notOk(loaded.some((f) => /\/node_modules\/(bindings|better-sqlite3\/lib)\//.test(f)), 'found by its path, better-sqlite3\'s JavaScript from the bundle');
  t.equal((await berth(['ps', '-a', '-q'])).stdout, '', '--rm removed it');
  const tarPath = join(dir, 'img.tar');
  const save = await berth(['save', '-o', tarPath, ref]);
  t.equal(save.code, 0, save.stderr);
  t.ok(execFileSync('tar', ['-tf', tarPath], { encoding: 'utf8' }).includes('manifest.json'), 'save wrote a docker-archive');
  const bad = await berth(['rm', `no-such-${rand}`]);
  t.equal(bad.code, 1, 'a BerthError exits 1');
  t.match(bad.stderr, new RegExp(`^berth: no such container: no-such-${rand}`), 'and is printed as before');
  const usage = await berth(['run']);
  t.equal(usage.code, 1, 'a usage error keeps commander\'s exit code');
  t.match(usage.stderr, /missing required argument 'image'/);
  t.same(mountsUnder(dir), [], 'nothing left mounted');
  const leftCgroups = cgroupDirs().flatMap((p) => readdirSync(p, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(p, e.name)));
  t.same(leftCgroups, [], 'no container cgroup left');
});
