/**
 * Root filesystems for bench containers. By default a busybox-static tree built on the fly from
 * the host's /bin/busybox (Debian's busybox-static): the binary plus one symlink per applet and a
 * minimal /etc. With an image reference, the image's layers from the local store, mounted as an
 * overlay (the image must have been pulled).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '../errors.js';

export const BUSYBOX = '/bin/busybox';
/** berth's default --root (images live there). */
export const DEFAULT_STORE_ROOT = '/var/lib/berth';

export class BenchError extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EBENCH', message, options);
  }
}

/** A rootfs ready to use, and how to release it. */
export interface BenchRootfs {
  path: string;
  /** "busybox-static (/bin/busybox)" or the image reference and id. */
  description: string;
  release(): void;
}

function isStaticBusybox(): boolean {
  try {
    const head = execFileSync('file', ['-L', BUSYBOX], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return !/dynamically linked/.test(head);
  } catch {
    return true; // no `file` tool: trust the path
  }
}

/** Fill dir with a busybox tree. Throws BenchError when /bin/busybox is missing or not static. */
export function populateBusyboxRootfs(dir: string): void {
  if (!existsSync(BUSYBOX)) {
    throw new BenchError(`${BUSYBOX} is missing: install Debian's busybox-static (apt-get install busybox-static) or pass --image REF with a pulled image`);
  }
  if (!isStaticBusybox()) {
    throw new BenchError(`${BUSYBOX} is dynamically linked and cannot run in an empty rootfs: install busybox-static, or pass --image REF`);
  }
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'data']) mkdirSync(join(dir, d), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  copyFileSync(BUSYBOX, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) {
    try { symlinkSync('/bin/busybox', join(dir, 'bin', a)); } catch { /* duplicate applet name */ }
  }
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
}

function lexists(p: string): boolean {
  try { lstatSync(p); return true; } catch { return false; }
}

/** The busybox rootfs at dir/rootfs; release is a no-op (the experiment's temp dir goes away). */
export function busyboxRootfs(dir: string): BenchRootfs {
  const path = join(dir, 'rootfs');
  populateBusyboxRootfs(path);
  return { path, description: `busybox-static (${BUSYBOX})`, release: () => {} };
}

/**
 * The image's layers from the store under storeRoot, overlay-mounted at dir/rootfs (with
 * dir/upper and dir/work). The image must exist in the store and provide /bin/sh and the
 * tools the experiments run (head, tr, dd, seq): a busybox-based image does.
 */
export async function imageRootfs(storeRoot: string, ref: string, dir: string): Promise<BenchRootfs> {
  if (!existsSync(storeRoot)) throw new BenchError(`image store ${storeRoot} does not exist: run \`berth pull ${ref}\` first (or give --root)`);
  // Loaded lazily: the store pulls in sqlite, which the default (busybox) run does not need.
  const { ImageStore } = await import('../../images/store.js');
  const { mountOverlay, unmountOverlay } = await import('../../images/snapshots.js');
  const store = ImageStore.open(storeRoot);
  try {
    let info;
    try {
      info = await store.rootfsFor(ref);
    } catch (e) {
      throw new BenchError(`image ${ref} is not in the store at ${storeRoot}: run \`berth pull ${ref}\` first (${(e as Error).message})`, { cause: e });
    }
    const m = mountOverlay(info.lowerDirs, dir);
    if (!lexists(join(m.target, 'bin/sh'))) {
      unmountOverlay(dir);
      throw new BenchError(`image ${ref} has no /bin/sh; the bench needs a shell with head, tr, dd and seq (a busybox-based image works)`);
    }
    for (const d of ['proc', 'sys', 'dev', 'tmp', 'data']) mkdirSync(join(m.target, d), { recursive: true });
    let released = false;
    return {
      path: m.target,
      description: `${ref} (${info.image.id.slice(0, 19)})`,
      release: () => {
        if (released) return;
        released = true;
        unmountOverlay(dir);
      },
    };
  } finally {
    store.close();
  }
}

/** Throws BenchError unless ref is in the store at storeRoot (nothing is mounted). */
export async function assertImageAvailable(storeRoot: string, ref: string): Promise<void> {
  if (!existsSync(storeRoot)) throw new BenchError(`image store ${storeRoot} does not exist: run \`berth pull ${ref}\` first (or give --root)`);
  const { ImageStore } = await import('../../images/store.js');
  const store = ImageStore.open(storeRoot);
  try {
    await store.rootfsFor(ref);
  } catch (e) {
    throw new BenchError(`image ${ref} is not in the store at ${storeRoot}: run \`berth pull ${ref}\` first (${(e as Error).message})`, { cause: e });
  } finally {
    store.close();
  }
}
