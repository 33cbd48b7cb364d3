/**
 * What scripts/bundle-berth.mjs and scripts/bundle-berth-oci.mjs share: loading esbuild (it comes
 * with tsx, a devDependency; without it a bundle step is skipped with a note and the CLIs run the
 * compiled modules), the lazy-module plugin, and the inputs file the loaders check for staleness.
 */
import { join, relative } from 'node:path';
import { statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const RESERVED = new Set(['default', '__esModule', 'delete', 'new', 'function', 'class', 'import', 'export', 'in', 'instanceof', 'typeof', 'void', 'with', 'yield', 'await', 'enum', 'let', 'static']);

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
 * Modules loaded at their first use instead of when the bundle starts. Each is replaced by a
 * small ES module (names taken from the real module at build time): its default export is one
 * object with a getter per export, and each function export (classes too) is a wrapper that
 * requires the real module when first called. Being an ES module, it is linked once, not copied
 * into every importer as a CommonJS default import would be (__toESM). A named import of a
 * non-function export fails the build ("No matching export"): use the default export for those.
 * `root` resolves the packages; the shim's own require() is a plain require of the real module,
 * and so is an import() of one (`direct` names the namespaces whose imports pass through).
 */
export function lazyModules(root, modules, direct = ['lazy-module']) {
  const req = createRequire(join(root, 'package.json'));
  const filter = new RegExp(`^(${modules.map((m) => m.replace(/[.:/-]/g, '\\$&')).join('|')})$`);
  const through = new Set(direct);
  return {
    name: 'lazy-module',
    setup(build) {
      build.onResolve({ filter }, (args) => {
        if (through.has(args.namespace)) return { path: args.path, external: true };
        return args.kind === 'dynamic-import' ? undefined : { path: args.path, namespace: 'lazy-module' };
      });
      build.onLoad({ filter: /.*/, namespace: 'lazy-module' }, (args) => {
        const mod = req(args.path);
        const names = Object.keys(mod).filter((k) => /^[A-Za-z_$][\w$]*$/.test(k) && !RESERVED.has(k));
        const fns = names.filter((k) => typeof Object.getOwnPropertyDescriptor(mod, k)?.value === 'function');
        return {
          loader: 'js',
          contents: [
            'let __berthReal;',
            `const __berthLoad = () => (__berthReal ??= require(${JSON.stringify(args.path)}));`,
            'const __berthLazy = {};',
            `for (const k of ${JSON.stringify(names)}) Object.defineProperty(__berthLazy, k, { enumerable: true, get: () => __berthLoad()[k] });`,
            'export default __berthLazy;',
            ...fns.map((k) => `export function ${k}(...a) { return new.target ? Reflect.construct(__berthLoad().${k}, a) : __berthLoad().${k}.apply(this, a); }`),
          ].join('\n'),
        };
      });
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


/**
 * Node built-ins imported as ES modules: a default (`import fs from 'node:fs'`) or namespace
 * import of a CommonJS module makes esbuild copy all its properties into a fresh object at every
 * importing module (__toESM: for node:fs imported by a dozen modules, over a thousand property
 * definitions at start-up). Resolved instead to a small ES module that requires the built-in
 * once and exports it as default and under each of its names (taken at build time), so every
 * importer links to the same bindings. `except` are left alone (the lazy ones). Accessor
 * properties are only on the default export (a named import of one fails the build).
 */
export function directBuiltins(except = []) {
  const skip = new Set(except);
  const req = createRequire(import.meta.url);
  return {
    name: 'direct-builtins',
    setup(build) {
      build.onResolve({ filter: /^node:/ }, (args) => {
        if (args.namespace === 'builtin-esm') return { path: args.path, external: true };
        // only import statements: require() in bundled packages keeps its own semantics
        if (args.kind !== 'import-statement' || skip.has(args.path) || args.path === 'node:process') return undefined;
        return { path: args.path, namespace: 'builtin-esm' };
      });
      build.onLoad({ filter: /.*/, namespace: 'builtin-esm' }, (args) => {
        const mod = req(args.path);
        // Accessors (fs.promises loads internal/fs/promises and readline) stay on the default
        // export, read when used: a named export would read them at start-up.
        const names = Object.keys(mod).filter((k) => /^[A-Za-z_$][\w$]*$/.test(k) && !RESERVED.has(k) && !Object.getOwnPropertyDescriptor(mod, k)?.get);
        return {
          loader: 'js',
          contents: `const m = require(${JSON.stringify(args.path)});\nexport default m;\nexport const { ${names.join(', ')} } = m;\n`,
        };
      });
    },
  };
}
