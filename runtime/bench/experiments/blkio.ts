/**
 * Block I/O throttling: write bandwidth limit (v1 blkio.throttle.write_bps_device, v2 io.max wbps)
 * on the disk backing the experiment's temp dir, which is bind-mounted into the container at
 * /data; `dd oflag=direct` writes there (direct I/O, so the page cache does not absorb the
 * writes and the throttle sees them at submission). Measured = bytes written / dd's elapsed
 * time (from its own summary), cross-checked with the cgroup's write byte counter. This is the
 * one experiment that may be skipped at runtime: tmpfs/overlay temp dirs, devices the kernel
 * refuses to throttle, or filesystems without O_DIRECT.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BenchEnv } from '../env.js';
import { BenchError } from '../rootfs.js';
import { now, sleep } from '../sampling.js';
import { errorPct, round, verdictFor } from '../stats.js';
import type { Chart, ExperimentResult, SeriesPoint } from '../types.js';
import type { ExperimentContext } from './context.js';

export interface BlkioOptions {
  bytesPerSecond?: number;
}

/** major:minor of a dev_t as Node's stat returns it (glibc encoding). */
export function devNumbers(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

/** The whole disk holding dir, or a reason why there is none (tmpfs, overlay, …). */
export function blockDeviceFor(dir: string): { major: number; minor: number; name: string } | { reason: string } {
  const { major, minor } = devNumbers(statSync(dir).dev);
  const sys = `/sys/dev/block/${major}:${minor}`;
  if (major === 0 || !existsSync(sys)) return { reason: `${dir} is not on a block device (device ${major}:${minor}; tmpfs, overlay or a network filesystem)` };
  let real = realpathSync(sys);
  if (existsSync(join(real, 'partition'))) real = realpathSync(join(real, '..'));
  const [ma, mi] = readFileSync(join(real, 'dev'), 'utf8').trim().split(':').map(Number);
  return { major: ma, minor: mi, name: basename(real) };
}

export async function blkioExperiment(ctx: ExperimentContext, opts: BlkioOptions = {}): Promise<ExperimentResult> {
  const started = Date.now();
  const bps = opts.bytesPerSecond ?? 8 * 1024 * 1024;
  const base = {
    id: 'blkio' as const, title: 'Block I/O write throttle',
    method: 'dd with O_DIRECT to a bind-mounted dir on the disk under a write bps limit; rate = bytes / dd elapsed time.',
  };
  const skip = (reason: string): ExperimentResult => ({
    ...base, rows: [{ name: 'write bps', asked: `${(bps / 1048576).toFixed(1)} MiB/s`, measured: 'skipped', askedValue: bps, measuredValue: null, errorPct: null, verdict: 'skipped', detail: reason }],
    charts: [], data: { skipped: reason }, skipped: reason, wallSeconds: round((Date.now() - started) / 1000, 2),
  });
  const env = await BenchEnv.create({ name: 'blkio', image: ctx.image, storeRoot: ctx.storeRoot });
  try {
    const dataDir = join(env.dir, 'data');
    mkdirSync(dataDir);
    const dev = blockDeviceFor(dataDir);
    if ('reason' in dev) return skip(dev.reason);
    const mib = Math.max(4, Math.round((bps * ctx.durationS) / 1048576));
    ctx.progress(`blkio: ${(bps / 1048576).toFixed(1)} MiB/s on ${dev.name} (${dev.major}:${dev.minor}), ${mib} MiB`);
    let id: string;
    try {
      id = await env.start('dd', ['/bin/sh', '-c', `sleep 0.2; dd if=/dev/zero of=/data/f bs=1M count=${mib} oflag=direct`], {
        resources: { blockIO: { throttleWriteBpsDevice: [{ major: dev.major, minor: dev.minor, rate: bps }] } },
        mounts: [{ destination: '/data', type: 'bind', source: dataDir, options: ['rbind', 'rw'] }],
      });
    } catch (e) {
      return skip(`the kernel refused a write throttle on ${dev.name} (${dev.major}:${dev.minor}): ${(e as Error).message}`);
    }
    // busybox dd prints no timing line: time the writes from the file's growth on the host
    // (polled every 20 ms) and chart the cgroup's write counter.
    const file = join(dataDir, 'f');
    const total = mib * 1048576;
    const series: SeriesPoint[] = [];
    let exited = false;
    const waitP = env.wait(id, Math.max(30_000, ctx.durationS * 10_000)).finally(() => { exited = true; });
    const t0 = now();
    let prev: { t: number; b: number } | null = null;
    let firstSeen: { t: number; size: number } | null = null;
    let lastSeen: { t: number; size: number } | null = null;
    let lastChart = -1;
    while (!exited) {
      const t = now() - t0;
      let size = 0;
      try { size = statSync(file).size; } catch { /* not created yet */ }
      if (size > 0 && !firstSeen) firstSeen = { t, size };
      if (size > 0 && (!lastSeen || size > lastSeen.size)) lastSeen = { t, size };
      if (t - lastChart >= 0.1) {
        lastChart = t;
        try {
          const b = env.stats(id).blkio.writeBytes;
          if (prev && t > prev.t) series.push({ t: round(t, 3), v: round((b - prev.b) / 1048576 / (t - prev.t), 3) });
          prev = { t, b };
        } catch { /* exiting */ }
      }
      await Promise.race([waitP, sleep(20)]);
    }
    const exit = await waitP;
    try { const size = statSync(file).size; if (!lastSeen || size > lastSeen.size) lastSeen = { t: now() - t0, size }; } catch { /* none */ }
    const cgroupBytes = (() => { try { return env.stats(id).blkio.writeBytes; } catch { return 0; } })();
    const out = env.output(id);
    await env.remove(id);
    if (/Invalid argument|not supported/i.test(out) && exit.exitCode !== 0) return skip(`O_DIRECT writes are not supported on ${dataDir}: ${out.trim().split('\n').pop()}`);
    if (exit.exitCode !== 0 || !firstSeen || !lastSeen || lastSeen.size < total) throw new BenchError(`dd in the blkio experiment failed (exit ${exit.exitCode}): ${out.trim().slice(-300)}`);
    const bytes = lastSeen.size - firstSeen.size;
    const secs = lastSeen.t - firstSeen.t;
    if (secs <= 0.05) throw new BenchError(`the write of ${total} bytes finished in ${secs.toFixed(3)} s: too fast to measure a rate; is the throttle applied?`);
    const rate = bytes / secs;
    const err = errorPct(bps, rate);
    const chart: Chart = { title: `Write bandwidth seen by the cgroup (limit ${(bps / 1048576).toFixed(1)} MiB/s)`, kind: 'line', xLabel: 's', yLabel: 'MiB/s', series: [{ label: 'write', points: series }], refs: [{ label: 'limit', v: bps / 1048576 }] };
    return {
      ...base,
      rows: [{
        name: `write bps ${dev.name}`, asked: `${(bps / 1048576).toFixed(1)} MiB/s`, measured: `${(rate / 1048576).toFixed(2)} MiB/s`,
        askedValue: bps, measuredValue: Math.round(rate), errorPct: round(err, 2), verdict: verdictFor(err, 10, 25),
        detail: `${bytes} bytes in ${secs.toFixed(3)} s with O_DIRECT (1 MiB writes); cgroup counted ${cgroupBytes} bytes written`,
      }],
      charts: [chart],
      data: { device: `${dev.major}:${dev.minor}`, deviceName: dev.name, limitBps: bps, bytes, seconds: round(secs, 4), measuredBps: Math.round(rate), cgroupWriteBytes: cgroupBytes },
      wallSeconds: round((Date.now() - started) / 1000, 2),
    };
  } finally {
    await env.cleanup();
  }
}
