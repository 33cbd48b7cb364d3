#!/usr/bin/env node
import { main } from '../dist/runtime/cli/berth-oci.js';
process.exitCode = await main(process.argv.slice(2));
