/**
 * What scripts/bundle-berth.mjs and scripts/bundle-berth-oci.mjs share: loading esbuild (it comes
 * with tsx, a devDependency; without it a bundle step is skipped with a note and the CLIs run the
 * compiled modules), the lazy-default plugin, and the inputs file the loaders check for staleness.
 */
import { join, relative } from 'node:path';
import { statSync, writeFileSync } from 'node:fs';

/** esbuild, or null (with a note on stderr) when it is not installed. */
export async function loadEsbuild(step, fallback) {
  try {
    return await import('esbuild');
  } catch {
    process.stderr.write(`${step}: esbuild not installed; ${fallback}\n`);
    return null;
  }
}

/**
 * Packages the code imports only as a default export: each is replaced by a shim whose default
 * export is a Proxy that requires the real module at the first property access. A named import
 * of one of them fails the build ("No matching export"), so the shim cannot silently hand out
 * undefined. The shim's own require(...) stays a plain require of the real module, and so does an
 * import() of one (`direct` names the namespaces whose imports pass through untouched).
 */
export function lazyDefault(modules, direct = ['lazy-default']) {
  const filter = new RegExp(`^(${modules.map((m) => m.replace(/[.:-]/g, '\\$&')).join('|')})$`);
  const through = new Set(direct);
  return {
    name: 'lazy-default',
    setup(build) {
      build.onResolve({ filter }, (args) => {
        if (through.has(args.namespace)) return { path: args.path, external: true };
        return args.kind === 'dynamic-import' ? undefined : { path: args.path, namespace: 'lazy-default' };
      });
      build.onLoad({ filter: /.*/, namespace: 'lazy-default' }, (args) => ({
        loader: 'js',
        contents: [
          'let real;',
          `const load = () => (real ??= require(${JSON.stringify(args.path)}));`,
          'const lazy = new Proxy({}, { get: (_t, p) => load()[p] });',
          'export default lazy;',
        ].join('\n'),
      }));
    },
  };
}

/**
 * <outdir>/<name>.inputs.json: the bundle's source files (relative to the package root) with
 * their mtimes; bin/bundle-loader.cjs (and images/unpack-offthread.ts for the worker) fall back
 * to the compiled modules when one of them changed since. Virtual modules (shims) are skipped.
 */
export function writeInputs(result, root, outdir, name, cwd = root) {
  const inputs = {};
  for (const file of Object.keys(result.metafile.inputs)) {
    if (file.includes(':')) continue;
    const abs = join(cwd, file);
    inputs[relative(root, abs)] = statSync(abs).mtimeMs;
  }
  writeFileSync(join(outdir, `${name}.inputs.json`), `${JSON.stringify(inputs)}\n`);
}
