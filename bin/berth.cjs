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
const { join } = require('node:path');
const { currentBundle, loadBundle } = require('./bundle-loader.cjs');

const root = join(__dirname, '..') + '/';

async function run() {
  const st = process.env.BERTH_NO_BUNDLE === '1' ? null : currentBundle(root, 'berth');
  if (st) {
    // latin1: the bundle is pure ASCII (scripts/bundle-berth.mjs checks), and this skips UTF-8 decoding.
    const { main, saveCache } = loadBundle(root, 'berth', st, 'latin1');
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
