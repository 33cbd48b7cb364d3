/**
 * `npm run bench -- pull`: a multi-layer image of about 112 MB (incompressible data) from the
 * local registry into an empty store, fully unpacked, side by side: `berth pull` (CLI),
 * `skopeo copy` + `umoci unpack`, and `podman pull`. Reports the median wall time to a
 * runnable rootfs and MB/s of compressed bytes. The tools run interleaved, one round at a time
 * (BENCH_PULL_RUNS rounds, default 3, after one uncounted round).
 */
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry } from '../fixtures/registry.js';
import { multilayerImage, pushTestImage } from '../fixtures/images.js';
import { performance } from 'node:perf_hooks';
import { run, which, printTable, median, type Row } from './util.js';

const BERTH = join(import.meta.dirname, '..', '..', 'bin', 'berth.js');

export async function benchPull(n = Number(process.env.BENCH_PULL_RUNS ?? 3)): Promise<Row[]> {
  const reg = await startRegistry();
  const work = mkdtempSync(join(tmpdir(), 'berth-bench-pull-'));
  try {
    const img = await multilayerImage({ layers: 8, layerSize: 14 * 1024 * 1024, seed: 'bench' });
    const { ref } = await pushTestImage(reg.url, 'bench/multilayer', 'v1', img);
    const bytes = [...img.blobs.values()].reduce((a, b) => a + b.size, 0);
    const fresh = (name: string, i: number) => join(work, `${name}-${i + 10}`);
    // One round runs every tool once, so load from elsewhere on the machine hits all alike.
    const tools: { name: string; run: (d: string) => void; note?: string }[] = [
      { name: 'berth pull', run: (d) => run(process.execPath, [BERTH, '--root', d, 'pull', '--quiet', ref]) },
    ];
    if (which('skopeo') && which('umoci')) {
      tools.push({
        name: 'skopeo copy + umoci unpack',
        run: (d) => {
          mkdirSync(d, { recursive: true });
          run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${d}/layout:v1`]);
          run('umoci', ['unpack', '--image', `${d}/layout:v1`, `${d}/bundle`]);
        },
      });
    } else tools.push({ name: 'skopeo copy + umoci unpack', run: () => {}, note: 'skopeo/umoci not installed' });
    if (which('podman')) {
      tools.push({
        name: 'podman pull',
        run: (d) => run('podman', ['--root', `${d}/root`, '--runroot', `${d}/run`, '--storage-driver', 'overlay', 'pull', '--quiet', '--tls-verify=false', ref]),
      });
    } else tools.push({ name: 'podman pull', run: () => {}, note: 'podman not installed' });
    const cleanup = (name: string, d: string) => {
      if (name === 'podman pull') run('podman', ['--root', `${d}/root`, '--runroot', `${d}/run`, '--storage-driver', 'overlay', 'system', 'reset', '--force'], { stdio: 'ignore' });
      rmSync(d, { recursive: true, force: true });
    };
    const samples = new Map<string, number[]>(tools.map((x) => [x.name, []]));
    for (let i = -1; i < n; i++) { // round -1 warms caches and is not counted
      for (const tool of tools) {
        if (tool.note) continue;
        const d = fresh(tool.name.split(' ')[0], i);
        const t0 = performance.now();
        tool.run(d);
        const dt = performance.now() - t0;
        cleanup(tool.name, d);
        if (i >= 0) samples.get(tool.name)!.push(dt);
      }
    }
    const rows: Row[] = tools.map((x) => ({ name: x.name, samples: samples.get(x.name)!, ...(x.note ? { note: x.note } : {}) }));
    printTable(`pull: ${(bytes / 1e6).toFixed(0)} MB in ${img.manifests[0].layers.length} layers from 127.0.0.1, to an unpacked rootfs, ${n} runs each`, rows, 'skopeo copy + umoci unpack');
    for (const r of rows) if (r.samples.length) console.log(`  ${r.name}: ${(bytes / 1e6 / (median(r.samples) / 1000)).toFixed(0)} MB/s`);
    const ours = rows.find((r) => r.name === 'berth pull');
    const rivals = rows.filter((r) => r !== ours && r.samples.length > 0).map((r) => median(r.samples));
    if (ours?.samples.length && rivals.length) {
      console.log(`berth vs the faster of the others: ${(Math.min(...rivals) / median(ours.samples)).toFixed(2)}× (target 1.5×)`);
    }
    return rows;
  } finally {
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
