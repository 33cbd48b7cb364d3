// Shared by bin/berth.cjs and bin/berth-oci.cjs: find and run the one-file CommonJS bundle
// dist/<name>.cjs (scripts/bundle-berth*.mjs, run by `npm run build`) with a V8 code cache.
//  - currentBundle(): the bundle's stat when every source listed in dist/<name>.inputs.json still
//    has its recorded mtime (sources not shipped are skipped), else null: the caller then runs
//    the compiled modules in dist/runtime/.
//  - loadBundle(): compile through vm.Script with dist/<name>.cjs.cache. The cache's first line
//    is "<bundle size>:<bundle mtime>:<generation>", so a cache made for another build is never
//    used. V8's cache holds every function compiled in the process, so it is rewritten after
//    each of the first CACHE_GENERATIONS runs (and whenever V8 rejects it): it collects the
//    functions of the commands that ran. A read-only install runs without a cache.
'use strict';
/* global require, module */
/* eslint-disable @typescript-eslint/no-require-imports -- CommonJS on purpose, like the entry points */
const { readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const { createRequire, Module } = require('node:module');
const vm = require('node:vm');

const CACHE_GENERATIONS = 8;

/** root ends with '/'. */
function currentBundle(root, name) {
  const dist = `${root}dist/`;
  let st, inputs;
  try {
    st = statSync(`${dist}${name}.cjs`);
    inputs = JSON.parse(readFileSync(`${dist}${name}.inputs.json`, 'utf8'));
  } catch {
    return null;
  }
  for (const [file, mtime] of Object.entries(inputs)) {
    let now;
    try { now = statSync(root + file).mtimeMs; } catch { continue; } // sources not shipped
    if (now !== mtime) return null;
  }
  return st;
}

/** Run the bundle's module body; returns its `main` export and a function that saves the cache. */
function loadBundle(root, name, st, encoding = 'utf8') {
  const dist = `${root}dist/`;
  const bundle = `${dist}${name}.cjs`;
  const cacheFile = `${bundle}.cache`;
  const id = `${st.size}:${st.mtimeMs}`;
  let cachedData;
  let gen = 0;
  try {
    const c = readFileSync(cacheFile);
    const nl = c.indexOf(10);
    const [size, mtime, g] = c.subarray(0, nl).toString().split(':');
    if (`${size}:${mtime}` === id) {
      cachedData = c.subarray(nl + 1);
      gen = Number(g) || 0;
    }
  } catch { /* no cache yet */ }
  const script = new vm.Script(Module.wrap(readFileSync(bundle, encoding)), { filename: bundle, cachedData });
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(bundle), mod, bundle, dist);
  const saveCache = () => {
    if (cachedData && !script.cachedDataRejected && gen >= CACHE_GENERATIONS) return;
    const next = cachedData && !script.cachedDataRejected ? gen + 1 : 1;
    try {
      const tmp = `${cacheFile}.tmp-${process.pid}`;
      writeFileSync(tmp, Buffer.concat([Buffer.from(`${id}:${next}\n`), script.createCachedData()]));
      renameSync(tmp, cacheFile);
    } catch { /* read-only install: run without a cache */ }
  };
  return { main: mod.exports.main, saveCache };
}

module.exports = { currentBundle, loadBundle };
