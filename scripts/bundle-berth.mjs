/**
 * Build step (run by `npm run build`): bundle the `berth` CLI into one CommonJS file,
 * dist/berth.cjs, as scripts/bundle-berth-oci.mjs does for berth-oci, because every `berth` call
 * pays start-up: one file to read and compile instead of ~80 ES modules to resolve and link, and a
 * V8 code cache (bin/berth.cjs loads the bundle through vm.Script and writes
 * dist/berth.cjs.cache after its first runs).
 *  - Laziness is kept: runtime/cli/berth.ts imports each command group with import(), and
 *    esbuild wraps every module reached only through import() (and what only it imports) in a
 *    lazy __esm initialiser, so `berth pull` still never evaluates the engine, nor `berth ps` the bench.
 *  - koffi, tar-stream and zlib are replaced by lazy shims, loaded at their first use (below);
 *    commander is bundled in; import() of a package or built-in becomes a require() at that point.
 *  - import.meta: each module gets the URL of its own compiled file in dist/ (e.g.
 *    dist/runtime/engine/engine.js), so paths found relative to it (bin/berth-oci.js,
 *    native/build/…, worker files) resolve exactly as they do when the modules run from dist/.
 *
 * dist/berth.inputs.json lists the sources with their mtimes: bin/berth.cjs falls back to the
 * compiled modules (dist/runtime/cli/berth.js) when any of them changed since.
 * esbuild comes with tsx (a devDependency); when it is missing the step is skipped with a note.
 */
import { fileURLToPath } from 'node:url';
import { dirname, join, relative, resolve } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { directBuiltins, lazyModules, loadEsbuild, writeInputs } from './bundle-common.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// --outdir DIR: write berth.cjs and berth.inputs.json there instead of dist/ (test/cli-bundle.test.ts).
const outdirArg = process.argv.indexOf('--outdir');
const outdir = outdirArg > 0 ? resolve(process.argv[outdirArg + 1] ?? '') : join(root, 'dist');
const out = join(outdir, 'berth.cjs');

const esbuild = await loadEsbuild('bundle-berth', 'bin/berth.js will use dist/ modules');
if (!esbuild) process.exit(0);

/**
 * Modules that `berth run` with the image present does not use (koffi: only as a fallback, or
 * late), loaded at their first use (lazy shims, scripts/bundle-common.mjs): tar-stream (~4 ms) is
 * for pull/save/load/export, zlib and worker_threads for layer unpacking, crypto (~2 ms to load)
 * for digests, http and https (~4 ms with tls) for registries, child_process (CNI plugins, hooks,
 * other runtimes) and fs/promises (with readline, ~1 ms) where `run --network none` has no use
 * for them. An import() of one stays a real (lazy) load
 * through dynamicExternals below.
 */
const LAZY = ['koffi', 'tar-stream', 'node:zlib', 'node:crypto', 'node:worker_threads', 'node:http', 'node:https', 'node:child_process', 'node:fs/promises'];

/**
 * commander, and better-sqlite3's JavaScript (~12 small modules: 3-6 ms to resolve and compile
 * one by one, ~0.4 ms bundled), which most calls load: bundled, they are read and compiled with
 * the rest (and land in the code cache). better-sqlite3's addon stays a file: images/db.ts hands
 * its path over (nativeBinding), so the `bindings` lookup, an external require here, never runs.
 */
const BUNDLED_PACKAGES = ['commander', 'better-sqlite3'];
const bundledPackages = {
  name: 'bundled-packages',
  setup(build) {
    const req = createRequire(join(root, 'package.json'));
    build.onResolve({ filter: new RegExp(`^(${BUNDLED_PACKAGES.join('|')})$`) }, (args) => ({ path: req.resolve(args.path) }));
  },
};

/**
 * import() of a package or Node built-in: the bundle runs through vm.Script, where a real
 * import() fails (no dynamic-import callback), so each one goes through a small module that
 * re-exports the package, which esbuild then loads with require() when the import() runs.
 */
const dynamicExternals = {
  name: 'dynamic-externals',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.kind !== 'dynamic-import' || args.namespace === 'dynamic-external') return undefined;
      return { path: args.path, namespace: 'dynamic-external' };
    });
    build.onLoad({ filter: /.*/, namespace: 'dynamic-external' }, (args) => ({
      loader: 'js',
      resolveDir: root,
      contents: `export * from ${JSON.stringify(args.path)};\nexport { default } from ${JSON.stringify(args.path)};\n`,
    }));
  },
};

/** import.meta → the module's compiled twin under dist/ (see the header): __bundle_meta("<dist path>"). */
const importMeta = {
  name: 'import-meta',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      if (!src.includes('import.meta')) return undefined;
      const rel = relative(root, args.path).replace(/\.ts$/, '.js');
      if (rel.startsWith('..')) throw new Error(`bundle-berth: ${args.path} is outside the package`);
      return { loader: 'ts', contents: src.replace(/\bimport\.meta\b/g, `__bundle_meta(${JSON.stringify(rel)})`) };
    });
  },
};

/**
 * The banner: strict mode first (esbuild's own "use strict" comes after the banner, where it is no
 * directive), then __bundle_meta: import.meta for the module whose compiled file is dist/<rel>
 * (its url made at first use: pathToFileURL costs ~0.4 ms cold, and most uses want dirname).
 * Its resolve() uses require's resolution, close to import.meta.resolve's for what berth resolves.
 */
const banner = `'use strict';
const __bundle_meta = ((cache) => (rel) => {
  let m = cache.get(rel);
  if (!m) {
    const { dirname, join } = require('node:path'), { pathToFileURL } = require('node:url');
    const filename = join(__dirname, rel);
    let url;
    m = { get url() { return (url ??= pathToFileURL(filename).href); }, filename, dirname: dirname(filename), resolve: (s) => pathToFileURL(require('node:module').createRequire(filename).resolve(s)).href };
    cache.set(rel, m);
  }
  return m;
})(new Map());`;

rmSync(`${out}.cache`, { force: true });
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: [join(root, 'runtime/cli/berth.ts')],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  plugins: [lazyModules(root, LAZY, ['lazy-module', 'dynamic-external']), directBuiltins(LAZY), bundledPackages, dynamicExternals, importMeta],
  banner: { js: banner },
  legalComments: 'none',
  // No comments or indentation: a third less to read and hash on every call. Names stay (stack
  // traces stay readable), and the output is pure ASCII (esbuild escapes the rest), which
  // bin/berth.cjs relies on to read it as latin1, without UTF-8 decoding.
  minifyWhitespace: true,
  charset: 'ascii',
  logLevel: 'warning',
  metafile: true,
});

if (readFileSync(out).some((b) => b > 0x7f)) throw new Error(`bundle-berth: ${out} is not pure ASCII`);

// Source files with their mtimes, for bin/berth.cjs's staleness check.
writeInputs(result, root, outdir, 'berth');

/**
 * The layer-unpack worker (images/unpack-worker.ts) as its own bundle, <outdir>/unpack-worker.cjs:
 * a pull starts two, and an ES-module worker resolving and linking its modules (and loading koffi
 * up front) spent CPU the download needs: ~87 ms of CPU for the two to be ready, ~59 bundled,
 * ~36 for two empty workers (this VM). tar-stream and its dependencies are bundled in; koffi is
 * a lazy shim (whiteouts and device nodes need it, most layers do not). images/unpack-offthread.ts
 * uses it while <outdir>/unpack-worker.inputs.json is current.
 */
const worker = await esbuild.build({
  absWorkingDir: root,
  entryPoints: [join(root, 'images/unpack-worker.ts')],
  outfile: join(outdir, 'unpack-worker.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  plugins: [lazyModules(root, ['koffi']), directBuiltins(), importMeta],
  banner: { js: banner },
  legalComments: 'none',
  minifyWhitespace: true,
  logLevel: 'warning',
  metafile: true,
});
writeInputs(worker, root, outdir, 'unpack-worker');
