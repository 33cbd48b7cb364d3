/**
 * Build step (run by `npm run build`): bundle the berth-oci CLI into one CommonJS file,
 * dist/berth-oci.cjs, because every invocation pays start-up (Docker and containerd run one per
 * operation): one file to read and compile instead of ~30 ES modules to resolve and link, module
 * bodies and Node built-ins (child_process, tty, …) evaluated only when a command needs them, and
 * a V8 code cache (bin/berth-oci.js loads the bundle through vm.Script, writes
 * dist/berth-oci.cjs.cache after its first run, and reuses it while it matches the bundle).
 * koffi is replaced by a lazy shim, loaded only if a koffi binding is called (the lifecycle's hot
 * path uses native/build/berth.node instead).
 *
 * dist/berth-oci.inputs.json lists the sources with their mtimes: bin/berth-oci.js falls back to
 * the compiled modules (dist/runtime/cli/berth-oci.js) when any of them changed since.
 * esbuild comes with tsx (a devDependency); when it is missing the step is skipped with a note.
 */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { rmSync } from 'node:fs';
import { directBuiltins, lazyModules, loadEsbuild, writeInputs } from './bundle-common.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist/berth-oci.cjs');

const esbuild = await loadEsbuild('bundle-berth-oci', 'bin/berth-oci.js will use dist/ modules');
if (!esbuild) process.exit(0);

rmSync(`${out}.cache`, { force: true });
const result = await esbuild.build({
  entryPoints: [join(root, 'runtime/cli/berth-oci.ts')],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  plugins: [lazyModules(root, ['koffi']), directBuiltins()],
  define: { 'import.meta.url': '__bundle_url', 'import.meta.dirname': '__dirname' },
  // 'use strict' first: esbuild's own directive lands after the banner, where it is no directive.
  banner: { js: "'use strict';\nconst __bundle_url = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});

// Source files with their mtimes, for bin/berth-oci.js's staleness check.
writeInputs(result, root, join(root, 'dist'), 'berth-oci', process.cwd());
rmSync(join(root, 'dist/berth-oci.mjs'), { force: true }); // the earlier ES-module bundle
