/**
 * Build step (run by `npm run build`): bundle the berth-oci CLI into one ES module,
 * dist/berth-oci.mjs, so that each invocation (Docker and containerd run one per operation) pays
 * one file read and one compile instead of resolving and loading ~30 modules. koffi is replaced
 * by a lazy shim: it is loaded (≈25 ms) only when a koffi binding is first called, which the
 * common commands avoid (native/build/berth.node serves the hot path). bin/berth-oci.js uses the
 * bundle when it exists and none of the sources it was built from (listed with their mtimes in
 * dist/berth-oci.inputs.json) changed since; otherwise it falls back to dist/runtime/cli/berth-oci.js.
 *
 * esbuild comes with tsx (a devDependency); when it is missing the step is skipped with a note.
 */
import { fileURLToPath } from 'node:url';
import { dirname, join, relative } from 'node:path';
import { statSync, writeFileSync } from 'node:fs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  process.stderr.write('bundle-berth-oci: esbuild not installed; bin/berth-oci.js will use dist/ modules\n');
  process.exit(0);
}

const lazyKoffi = {
  name: 'lazy-koffi',
  setup(build) {
    build.onResolve({ filter: /^koffi$/ }, () => ({ path: 'koffi', namespace: 'lazy-koffi' }));
    build.onLoad({ filter: /.*/, namespace: 'lazy-koffi' }, () => ({
      loader: 'js',
      contents: [
        "import { createRequire } from 'node:module';",
        'let real;',
        "const load = () => (real ??= createRequire(import.meta.url)('koffi'));",
        'const koffi = new Proxy({}, { get: (_t, p) => load()[p] });',
        'export default koffi;',
      ].join('\n'),
    }));
  },
};

const result = await esbuild.build({
  entryPoints: [join(root, 'runtime/cli/berth-oci.ts')],
  outfile: join(root, 'dist/berth-oci.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  plugins: [lazyKoffi],
  splitting: false,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});

// Source files (relative to the package root) and their mtimes, for bin/berth-oci.js's staleness check.
const inputs = {};
for (const file of Object.keys(result.metafile.inputs)) {
  if (file.includes(':')) continue; // virtual modules (the koffi shim)
  const abs = join(process.cwd(), file);
  inputs[relative(root, abs)] = statSync(abs).mtimeMs;
}
writeFileSync(join(root, 'dist/berth-oci.inputs.json'), `${JSON.stringify(inputs)}\n`);
