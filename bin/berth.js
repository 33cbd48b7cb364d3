#!/usr/bin/env node
import { main } from '../dist/runtime/cli/berth.js';
await main(process.argv);
