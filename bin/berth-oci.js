#!/usr/bin/env node
// berth-oci: runs the one-file bundle (dist/berth-oci.mjs, made by `npm run build`) when it is at
// least as new as the compiled modules, else dist/runtime/cli/berth-oci.js (e.g. after a bare tsc).
import { statSync } from 'node:fs';

const bundle = new URL('../dist/berth-oci.mjs', import.meta.url);
const modules = new URL('../dist/runtime/cli/berth-oci.js', import.meta.url);
const mtime = (u) => { try { return statSync(u).mtimeMs; } catch { return -1; } };
const { main } = await import(mtime(bundle) >= mtime(modules) ? bundle.href : modules.href);
process.exitCode = await main(process.argv.slice(2));
