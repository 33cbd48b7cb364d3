/**
 * Profiling helper for `berth pull` (not a benchmark table): starts the real registry, pushes the
 * same image test/bench/pull.ts uses, writes `<ref>` to the file named by argv[2] (or prints it),
 * and keeps the registry up until SIGINT/SIGTERM so `berth pull` can be run under strace,
 * --cpu-prof or /usr/bin/time by hand:
 *   node --import tsx test/bench/pull-profile.ts /tmp/ref & ...; node bin/berth.js --root R pull $(cat /tmp/ref)
 */
import { writeFileSync } from 'node:fs';
import { startRegistry } from '../fixtures/registry.js';
import { multilayerImage, pushTestImage } from '../fixtures/images.js';

const reg = await startRegistry();
const img = await multilayerImage({ layers: 8, layerSize: 14 * 1024 * 1024, seed: 'bench' });
const { ref } = await pushTestImage(reg.url, 'bench/multilayer', 'v1', img);
const bytes = [...img.blobs.values()].reduce((a, b) => a + b.size, 0);
if (process.argv[2]) writeFileSync(process.argv[2], `${ref}\n`);
console.log(`${ref} (${(bytes / 1e6).toFixed(1)} MB); registry up until SIGTERM`);
const stop = () => { void reg.stop().then(() => process.exit(0)); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
setInterval(() => {}, 1 << 30);
