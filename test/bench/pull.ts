/**
 * `npm run bench -- pull`: a multi-layer image of about 112 MB (incompressible data) from the
 * local registry into an empty store, fully unpacked, side by side: `berth pull` (CLI),
 * `skopeo copy` + `umoci unpack`, and `podman pull`. Reports the median wall time to a
 * runnable rootfs and MB/s of compressed bytes.
 */
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry } from '../fixtures/registry.js';
import { multilayerImage, pushTestImage } from '../fixtures/images.js';
import { timeIt, run, which, printTable, median, type Row } from './util.js';

const BERTH = join(import.meta.dirname, '..', '..', 'bin', 'berth.js');

export async function benchPull(n = Number(process.env.BENCH_PULL_RUNS ?? 3)): Promise<Row[]> {
  const reg = await startRegistry();
  const work = mkdtempSync(join(tmpdir(), 'berth-bench-pull-'));
  try {
    const img = await multilayerImage({ layers: 8, layerSize: 14 * 1024 * 1024, seed: 'bench' });
    const { ref } = await pushTestImage(reg.url, 'bench/multilayer', 'v1', img);
    const bytes = [...img.blobs.values()].reduce((a, b) => a + b.size, 0);
    const fresh = (name: string, i: number) => join(work, `${name}-${i + 10}`);
    const rows: Row[] = [];
    rows.push({ name: 'berth pull', samples: await timeIt(n, (i) => { run(process.execPath, [BERTH, '--root', fresh('berth', i), 'pull', '--quiet', ref]); rmSync(fresh('berth', i), { recursive: true, force: true }); }, 1) });
    if (which('skopeo') && which('umoci')) {
      rows.push({
        name: 'skopeo copy + umoci unpack',
        samples: await timeIt(n, (i) => {
          const d = fresh('skopeo', i);
          mkdirSync(d, { recursive: true });
          run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${d}/layout:v1`]);
          run('umoci', ['unpack', '--image', `${d}/layout:v1`, `${d}/bundle`]);
          rmSync(d, { recursive: true, force: true });
        }, 1),
      });
    } else rows.push({ name: 'skopeo copy + umoci unpack', samples: [], note: 'skopeo/umoci not installed' });
    if (which('podman')) {
      rows.push({
        name: 'podman pull',
        samples: await timeIt(n, (i) => {
          const d = fresh('podman', i);
          run('podman', ['--root', `${d}/root`, '--runroot', `${d}/run`, '--storage-driver', 'overlay', 'pull', '--quiet', '--tls-verify=false', ref]);
          run('podman', ['--root', `${d}/root`, '--runroot', `${d}/run`, '--storage-driver', 'overlay', 'system', 'reset', '--force'], { stdio: 'ignore' });
          rmSync(d, { recursive: true, force: true });
        }, 1),
      });
    } else rows.push({ name: 'podman pull', samples: [], note: 'podman not installed' });
    printTable(`pull: ${(bytes / 1e6).toFixed(0)} MB in ${img.manifests[0].layers.length} layers from 127.0.0.1, to an unpacked rootfs, ${n} runs each`, rows, 'skopeo copy + umoci unpack');
    for (const r of rows) if (r.samples.length) console.log(`  ${r.name}: ${(bytes / 1e6 / (median(r.samples) / 1000)).toFixed(0)} MB/s`);
    return rows;
  } finally {
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
