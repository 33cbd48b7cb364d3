/**
 * Overlay snapshotter: one directory per layer chain id, `snapshots/<short-id>/fs`, where the
 * short id is an integer from the metadata DB (overlay's mount data is limited to one page, so
 * lowerdir paths must stay short). A layer is unpacked into `snapshots/tmp-<pid>-<rand>/fs`, a
 * short id is reserved in the DB ('committing'), the temp dir is renamed into place and the row
 * marked 'ready'. Layers need no parent at unpack time, so all layers of an image can unpack in
 * parallel. Same chain → same snapshot (unpacked once per process via an in-flight map, and
 * across processes the DB reservation decides). open() cleans what a crash left behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { BerthError } from '../runtime/errors.js';
import { mount, umount, MNT_DETACH } from '../runtime/linux/libc.js';
import type { ImageDB, SnapshotRecord } from './db.js';
import type { UnpackResult } from './unpack.js';
import { unpackLayerOffThread } from './unpack-offthread.js';
import { markTopDir } from './topdir.js';

export class SnapshotError extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ESNAPSHOT', message, options);
  }
}

/** chainID per the OCI image spec: chain(L0) = diff0; chain(Ln) = sha256(chain(Ln-1) + " " + diffn). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : 'sha256:' + createHash('sha256').update(`${prev} ${d}`).digest('hex'));
  }
  return out;
}

export interface RootfsMount {
  /** The merged overlay view. */
  target: string;
  upper: string;
  work: string;
}

/** Longest mount data the kernel accepts (one page, including the NUL). */
const MOUNT_DATA_MAX = 4095;

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

export interface PrepareLayer {
  chainId: string;
  parent: string | null;
  diffId: string;
  /** Produces the layer's bytes (compressed or not); called at most once per attempt. */
  open: () => Promise<AsyncIterable<Buffer> | Readable>;
  /** Nobody uses open()'s chunks once yielded (see UnpackOptions.transferChunks). */
  transferChunks?: boolean;
  /**
   * Receives the sha256 digest of the bytes open() produced once the unpack has read them all,
   * or null (unpack failed, or did not read to the end). Called at most once, only if open() was.
   */
  sourceDigest?: (digest: string | null) => void;
  signal?: AbortSignal;
}

export class Snapshotter {
  readonly dir: string;
  private readonly inflight = new Map<string, Promise<SnapshotRecord>>();

  constructor(root: string, private readonly db: ImageDB) {
    this.dir = path.join(root, 'snapshots');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o711 });
    markTopDir(this.dir); // each snapshot's inodes in a block group of its own (topdir.ts)
  }

  /** Remove temp dirs of dead pulls, rows whose commit never finished, and dirs without rows. */
  cleanup(): void {
    for (const name of fs.readdirSync(this.dir)) {
      const m = /^tmp-(\d+)-/.exec(name);
      if (m && !pidAlive(Number(m[1]))) fs.rmSync(path.join(this.dir, name), { recursive: true, force: true });
    }
    const rows = this.db.listSnapshots();
    const known = new Set<string>();
    for (const r of rows) {
      known.add(String(r.id));
      if (r.state === 'committing' && !pidAlive(r.pid)) {
        fs.rmSync(this.pathOf(r.id), { recursive: true, force: true });
        this.db.deleteSnapshot(r.chainId);
      } else if (r.state === 'ready' && !fs.existsSync(this.fsDir(r.id))) {
        this.db.deleteSnapshot(r.chainId);
      }
    }
    for (const name of fs.readdirSync(this.dir)) {
      if (/^\d+$/.test(name) && !known.has(name)) fs.rmSync(path.join(this.dir, name), { recursive: true, force: true });
    }
  }

  pathOf(id: number): string { return path.join(this.dir, String(id)); }
  fsDir(id: number): string { return path.join(this.dir, String(id), 'fs'); }

  /** The ready snapshot for chainId, or null. */
  get(chainId: string): SnapshotRecord | null {
    const r = this.db.getSnapshot(chainId);
    return r && r.state === 'ready' ? r : null;
  }

  /**
   * Make sure the snapshot for `layer.chainId` exists, unpacking it from `layer.open()` if not.
   * Concurrent calls for one chain share one unpack.
   */
  prepare(layer: PrepareLayer): Promise<SnapshotRecord> {
    const have = this.get(layer.chainId);
    if (have) return Promise.resolve(have);
    const running = this.inflight.get(layer.chainId);
    if (running) return running;
    const p = this.unpackNew(layer).finally(() => this.inflight.delete(layer.chainId));
    this.inflight.set(layer.chainId, p);
    return p;
  }

  private async unpackNew(layer: PrepareLayer): Promise<SnapshotRecord> {
    const tmp = path.join(this.dir, `tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    fs.mkdirSync(tmp, { mode: 0o711 });
    try {
      let res: UnpackResult;
      try {
        res = await unpackLayerOffThread(await layer.open(), path.join(tmp, 'fs'), {
          expectedDiffId: layer.diffId, signal: layer.signal, transferChunks: layer.transferChunks, sourceDigest: layer.sourceDigest !== undefined,
        });
      } catch (e) {
        layer.sourceDigest?.(null);
        throw e;
      }
      layer.sourceDigest?.(res.sourceDigest ?? null);
      const id = this.db.reserveSnapshot({ chainId: layer.chainId, parent: layer.parent, diffId: layer.diffId, size: res.tarSize });
      if (id === null) {
        // another process committed the same chain first
        const other = this.db.getSnapshot(layer.chainId);
        if (other) return other;
        throw new SnapshotError(`snapshot for ${layer.chainId} vanished while committing`);
      }
      try {
        fs.renameSync(tmp, this.pathOf(id));
      } catch (e) {
        this.db.deleteSnapshot(layer.chainId);
        throw e;
      }
      this.db.markSnapshotReady(id);
      return this.db.getSnapshot(layer.chainId)!;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** Delete a snapshot's row and directory. */
  remove(chainId: string): void {
    const r = this.db.getSnapshot(chainId);
    if (!r) return;
    this.db.deleteSnapshot(chainId);
    fs.rmSync(this.pathOf(r.id), { recursive: true, force: true });
  }

  /** fs dirs for a chain, bottom layer first; fails clearly if any is missing. */
  lowerDirs(chain: string[]): string[] {
    return chain.map((c) => {
      const r = this.get(c);
      if (!r) throw new SnapshotError(`snapshot for layer chain ${c} is missing; pull the image again`);
      return this.fsDir(r.id);
    });
  }

  /** Overlay-mount the chain (bottom layer first) at containerDir/rootfs with fresh upper/work dirs. */
  mountRootfs(chain: string[], containerDir: string): RootfsMount {
    return mountOverlay(this.lowerDirs(chain), containerDir);
  }

  unmountRootfs(containerDir: string): void {
    unmountOverlay(containerDir);
  }
}

/**
 * Overlay mount of `lowers` (bottom first) at containerDir/rootfs, with containerDir/upper and
 * containerDir/work created fresh. On failure, removes what it created.
 */
export function mountOverlay(lowers: string[], containerDir: string): RootfsMount {
  if (lowers.length === 0) throw new SnapshotError('cannot mount a rootfs with no layers');
  const target = path.join(containerDir, 'rootfs');
  const upper = path.join(containerDir, 'upper');
  const work = path.join(containerDir, 'work');
  for (const p of [...lowers, upper, work]) {
    if (/[,:\\]/.test(p)) throw new SnapshotError(`overlay path ${p} contains ',', ':' or '\\', which overlay mount options cannot carry`);
  }
  const data = `lowerdir=${[...lowers].reverse().join(':')},upperdir=${upper},workdir=${work}`;
  if (Buffer.byteLength(data) > MOUNT_DATA_MAX) {
    throw new SnapshotError(`overlay mount options for ${lowers.length} layers are ${Buffer.byteLength(data)} bytes, over the kernel's ${MOUNT_DATA_MAX}-byte limit; use a shorter --root or an image with fewer layers`);
  }
  fs.mkdirSync(containerDir, { recursive: true, mode: 0o711 });
  const created: string[] = [];
  try {
    for (const d of [upper, work, target]) {
      if (fs.existsSync(d)) throw new SnapshotError(`${d} already exists; the container's rootfs is already prepared`);
      fs.mkdirSync(d, { mode: 0o755 });
      created.push(d);
    }
    mount('overlay', target, 'overlay', 0, data);
  } catch (e) {
    for (const d of created.reverse()) fs.rmSync(d, { recursive: true, force: true });
    throw e;
  }
  return { target, upper, work };
}

/** Unmount containerDir/rootfs and remove rootfs, upper and work. Idempotent. */
export function unmountOverlay(containerDir: string): void {
  const target = path.join(containerDir, 'rootfs');
  umount(target, MNT_DETACH);
  for (const d of ['rootfs', 'upper', 'work']) fs.rmSync(path.join(containerDir, d), { recursive: true, force: true });
}
