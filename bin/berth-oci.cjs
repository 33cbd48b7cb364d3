#!/usr/bin/env node
// berth-oci. Start-up is most of a runc-style call, so this entry point is built for it:
//  - it runs the one-file bundle dist/berth-oci.cjs (scripts/bundle-berth-oci.mjs, run by
//    `npm run build`) unless a source it was built from changed since (dist/berth-oci.inputs.json
//    lists them with their mtimes); then it runs the compiled modules in dist/runtime/.
//  - the bundle is compiled through vm.Script with a V8 code cache, dist/berth-oci.cjs.cache,
//    written by the first runs (and whenever V8 rejects it); its header names the bundle's size
//    and mtime, so a cache made for another build is never used.
//  - create/run/exec start a no-op cgroup migration at once (see warmCgroupMigration).
//  - it is CommonJS: an ES-module entry point costs Node's ESM loader, ~4 ms per call here.
//    bin/berth-oci.js is a symlink to this file (Node runs the real path, so as CommonJS).
'use strict';
/* global require, __dirname */
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS entry point on purpose (above) */
const { closeSync, constants, openSync, readFileSync, write } = require('node:fs');
const { join } = require('node:path');
const { currentBundle, loadBundle } = require('./bundle-loader.cjs');

const root = join(__dirname, '..') + '/';

// The first cgroup migration after a quiet spell waits for an RCU grace period (the kernel's
// cgroup_threadgroup_rwsem; 5-20 ms on this host), later ones within ~10 ms do not. create, run
// and exec move the new process into its cgroup, so start a no-op migration now (this process
// into the cgroup it is already in, on the threadpool) and let that wait overlap with loading.
// Errors (no cgroupfs, read-only cgroupfs, a v2 inner node) are ignored: it is only a head start.
function warmCgroupMigration() {
  let file;
  try {
    const lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    const v1 = lines.find((l) => l.split(':')[1] === 'pids');
    const v2 = lines.find((l) => l.startsWith('0::'));
    if (v1) file = `/sys/fs/cgroup/pids${v1.split(':')[2]}/cgroup.procs`.replace('//', '/');
    else if (v2) file = `/sys/fs/cgroup${v2.slice(3)}/cgroup.procs`.replace('//', '/');
  } catch {
    return;
  }
  if (!file) return;
  // Open here and write on the threadpool: one job, queued now (fs.writeFile would queue the
  // write only after the open's callback, i.e. once the synchronous start-up below is over).
  let fd;
  try { fd = openSync(file, constants.O_WRONLY); } catch { return; }
  write(fd, String(process.pid), () => closeSync(fd));
}

async function run() {
  const argv = process.argv.slice(2);
  if (argv.some((a) => a === 'create' || a === 'run' || a === 'exec')) warmCgroupMigration();
  const st = currentBundle(root, 'berth-oci');
  if (st) {
    const { main, saveCache } = loadBundle(root, 'berth-oci', st);
    process.exitCode = await main(argv);
    saveCache();
  } else {
    const { main } = await import('../dist/runtime/cli/berth-oci.js');
    process.exitCode = await main(argv);
  }
}

run().catch((e) => {
  process.stderr.write(`berth-oci: ${e && e.stack ? e.stack : e}\n`);
  process.exitCode = 1;
});
