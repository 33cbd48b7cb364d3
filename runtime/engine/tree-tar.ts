/**
 * Directory trees to tar streams, for `berth export` (a container's merged rootfs) and `berth
 * commit` (its overlay upper dir as a new image layer). In layer mode the overlayfs forms are
 * turned back into OCI whiteouts: a 0:0 character device `x` becomes an empty `.wh.x`, and a
 * directory with trusted.overlay.opaque=y gets a `.wh..wh..opq` entry. Hardlinks within the tree
 * are kept as links; entries are sorted, so the same tree gives the same tar.
 */
import { lstatSync, readdirSync, readlinkSync, createReadStream, type Stats } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import tar from 'tar-stream';
import { lgetxattr } from '../linux/libc.js';
import { BerthError } from '../errors.js';

export interface PackOptions {
  /** Convert overlayfs whiteouts and opaque dirs to OCI whiteout entries (commit). */
  layer?: boolean;
}

function major(dev: number): number { return Number((BigInt(dev) >> 8n) & 0xfffn) | Number((BigInt(dev) >> 32n) & ~0xfffn); }
function minor(dev: number): number { return Number(BigInt(dev) & 0xffn) | Number((BigInt(dev) >> 12n) & ~0xffn); }

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** Pack root into a tar stream. Paths in the tar are relative ("etc/passwd", "etc/"). */
export function packTree(root: string, opts: PackOptions = {}): tar.Pack {
  const pack = tar.pack();
  const links = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const abs = rel ? join(root, rel) : root;
    const names = readdirSync(abs).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = lstatSync(p);
      const base = { name: r, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
      if (opts.layer && isWhiteout(st)) {
        await entry(pack, { ...base, name: rel ? `${rel}/.wh.${name}` : `.wh.${name}`, type: 'file', size: 0, mode: 0o644 });
        continue;
      }
      if (st.isDirectory()) {
        await entry(pack, { ...base, type: 'directory' });
        if (opts.layer && lgetxattr(p, 'trusted.overlay.opaque')?.toString() === 'y') {
          await entry(pack, { name: `${r}/.wh..wh..opq`, type: 'file', size: 0, mode: 0o644, uid: 0, gid: 0, mtime: st.mtime });
        }
        await walk(r);
      } else if (st.isSymbolicLink()) {
        await entry(pack, { ...base, type: 'symlink', linkname: readlinkSync(p) });
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? links.get(key) : undefined;
        if (first) {
          await entry(pack, { ...base, type: 'link', linkname: first });
          continue;
        }
        if (st.nlink > 1) links.set(key, r);
        await new Promise<void>((resolve, reject) => {
          const w = pack.entry({ ...base, type: 'file', size: st.size }, (err) => (err ? reject(err) : resolve()));
          createReadStream(p).on('error', reject).pipe(w);
        });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        await entry(pack, { ...base, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor: major(st.rdev), devminor: minor(st.rdev) });
      } else if (st.isFIFO()) {
        await entry(pack, { ...base, type: 'fifo' });
      }
      // Sockets are not representable in tar; skipped like docker export does.
    }
  };
  walk('').then(() => pack.finalize(), (e: unknown) => pack.destroy(e instanceof Error ? e : new BerthError('EEXPORT', String(e))));
  return pack;
}

function entry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }): Promise<void> {
  // A file entry given without a body makes tar-stream wait for one on a stream: give it empty.
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    if (header.type === 'file') pack.entry(header, Buffer.alloc(0), cb);
    else pack.entry(header, cb);
  });
}

/** Pack a tree, writing the tar to `out` and returning its sha256 digest and size. */
export async function packTreeTo(root: string, out: Writable, opts: PackOptions = {}): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of packTree(root, opts) as AsyncIterable<Buffer>) {
    h.update(chunk);
    size += chunk.length;
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise<void>((resolve, reject) => { out.once('error', reject); out.end(resolve); });
  return { digest: `sha256:${h.digest('hex')}`, size };
}
