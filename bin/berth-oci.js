#!/usr/bin/env node
// berth-oci: runs the one-file bundle dist/berth-oci.mjs (made by `npm run build`) unless a source
// it was built from changed since (dist/berth-oci.inputs.json lists them with their mtimes); then
// it runs the compiled modules, dist/runtime/cli/berth-oci.js.
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function bundleFresh() {
  let inputs;
  try {
    statSync(`${root}dist/berth-oci.mjs`);
    inputs = JSON.parse(readFileSync(`${root}dist/berth-oci.inputs.json`, 'utf8'));
  } catch {
    return false;
  }
  for (const [file, mtime] of Object.entries(inputs)) {
    let now;
    try { now = statSync(root + file).mtimeMs; } catch { continue; } // sources not shipped
    if (now !== mtime) return false;
  }
  return true;
}

const { main } = await import(bundleFresh() ? '../dist/berth-oci.mjs' : '../dist/runtime/cli/berth-oci.js');
process.exitCode = await main(process.argv.slice(2));
