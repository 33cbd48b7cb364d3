#!/usr/bin/env node
// berth, the docker-like CLI. Every call pays Node's start-up, so this entry point is built for it
// the way bin/berth-oci.cjs is:
//  - it runs the one-file bundle dist/berth.cjs (scripts/bundle-berth.mjs, run by `npm run build`)
//    unless a source it was built from changed since (dist/berth.inputs.json lists them with
//    their mtimes); then it runs the compiled modules in dist/runtime/.
//  - the bundle is compiled through vm.Script with a V8 code cache, dist/berth.cjs.cache, written
//    by the first runs (and whenever V8 rejects it); its header names the bundle's size and
//    mtime, so a cache made for another build is never used.
//  - it is CommonJS: an ES-module entry point costs Node's ESM loader, a few ms per call.
//    bin/berth.js is a symlink to this file (Node runs the real path, so as CommonJS).
// BERTH_NO_BUNDLE=1 runs the compiled modules even when the bundle is current.
'use strict';
/* global require, __dirname */
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS entry point on purpose (above) */
const { readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const { createRequire, Module } = require('node:module');
const { join } = require('node:path');
const vm = require('node:vm');

const root = join(__dirname, '..') + '/';
const dist = `${root}dist/`;
const bundle = `${dist}berth.cjs`;
const cacheFile = `${bundle}.cache`;

/** The bundle's stat when it is current (every source it lists has its recorded mtime), else null. */
function bundleStat() {
  if (process.env.BERTH_NO_BUNDLE === '1') return null;
  let st, inputs;
  try {
    st = statSync(bundle);
    inputs = JSON.parse(readFileSync(`${dist}berth.inputs.json`, 'utf8'));
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

/**
 * Compile and run the CommonJS bundle with the code cache; returns its exports and a cache writer.
 * The cache's first line is "<bundle size>:<bundle mtime>:<generation>". V8's cache holds every
 * function compiled in the process, those it came with included, so it is rewritten after each
 * of the first CACHE_GENERATIONS runs: it collects the functions of the commands that ran.
 */
const CACHE_GENERATIONS = 8;
function loadBundle(st) {
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
  // latin1: the bundle is pure ASCII (scripts/bundle-berth.mjs checks), and this skips UTF-8 decoding.
  const script = new vm.Script(Module.wrap(readFileSync(bundle, 'latin1')), { filename: bundle, cachedData });
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

async function run() {
  const st = bundleStat();
  if (st) {
    const { main, saveCache } = loadBundle(st);
    await main(process.argv);
    saveCache();
  } else {
    const { main } = await import('../dist/runtime/cli/berth.js');
    await main(process.argv);
  }
}

// An unexpected error (not a BerthError, which main prints itself) ends the process as an
// uncaught exception, as it did when this was an ES module awaiting main at the top level.
run().catch((e) => process.nextTick(() => { throw e; }));
