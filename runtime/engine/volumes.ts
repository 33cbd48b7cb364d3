/**
 * Named volumes: <root>/volumes/<name>/_data plus <name>/volume.json (written to a temp file and
 * link()ed, so concurrent creates of one name cannot both win). A volume first mounted over a
 * path that has content in the image is initialised with a copy of that content (Docker's
 * behaviour: only while the volume is empty), keeping modes, owners, times and symlinks.
 */
import { chownSync, copyFileSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, chmodSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BerthError, ConfigError, NotFoundError } from '../errors.js';

export interface VolumeRecord {
  name: string;
  driver: 'local';
  mountpoint: string;
  created: string;
  anonymous: boolean;
  labels: Record<string, string>;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export class VolumeStore {
  readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'volumes');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private metaPath(name: string): string { return join(this.dir, name, 'volume.json'); }

  /** Create a volume (random 64-hex name when omitted). Existing name → EEXIST unless `ifMissing`. */
  create(name?: string, opts: { ifMissing?: boolean; anonymous?: boolean; labels?: Record<string, string> } = {}): VolumeRecord {
    const n = name ?? randomBytes(32).toString('hex');
    if (!NAME_RE.test(n) || n.length > 255) throw new ConfigError('volume', `"${n}": volume names are letters, digits, _ . - and start with a letter or digit`);
    const existing = this.get(n);
    if (existing) {
      if (opts.ifMissing) return existing;
      throw new BerthError('EEXIST', `volume "${n}" already exists`);
    }
    const rec: VolumeRecord = { name: n, driver: 'local', mountpoint: join(this.dir, n, '_data'), created: new Date().toISOString(), anonymous: !!opts.anonymous, labels: opts.labels ?? {} };
    mkdirSync(rec.mountpoint, { recursive: true, mode: 0o755 });
    const tmp = `${this.metaPath(n)}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`;
    writeFileSync(tmp, JSON.stringify(rec, null, 2));
    try {
      linkSync(tmp, this.metaPath(n));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        if (opts.ifMissing) return this.get(n)!;
        throw new BerthError('EEXIST', `volume "${n}" already exists`);
      }
      throw e;
    } finally {
      rmSync(tmp, { force: true });
    }
    return rec;
  }

  get(name: string): VolumeRecord | null {
    if (!NAME_RE.test(name)) return null;
    try { return JSON.parse(readFileSync(this.metaPath(name), 'utf8')) as VolumeRecord; } catch { return null; }
  }

  require(name: string): VolumeRecord {
    const v = this.get(name);
    if (!v) throw new NotFoundError(`no such volume: ${name}`);
    return v;
  }

  list(): VolumeRecord[] {
    const out: VolumeRecord[] = [];
    for (const n of readdirSync(this.dir)) { const v = this.get(n); if (v) out.push(v); }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Remove a volume; `users` are containers using it (refused unless empty). */
  remove(name: string, users: string[] = []): void {
    this.require(name);
    if (users.length) throw new BerthError('EBUSY', `volume "${name}" is in use by container(s) ${users.join(', ')}; remove them first`);
    rmSync(join(this.dir, name), { recursive: true, force: true });
  }

  /** Copy `src` (a directory in the image's rootfs) into the volume when the volume is empty. */
  initFrom(name: string, src: string): void {
    const v = this.require(name);
    if (readdirSync(v.mountpoint).length) return;
    let st;
    try { st = lstatSync(src); } catch { return; }
    if (!st.isDirectory()) return;
    copyTree(src, v.mountpoint);
    chownSync(v.mountpoint, st.uid, st.gid);
    chmodSync(v.mountpoint, st.mode & 0o7777);
  }
}

/** Recursive copy keeping type, mode, owner, times and symlinks (no hardlink detection). */
export function copyTree(src: string, dst: string): void {
  for (const e of readdirSync(src)) {
    const s = join(src, e), d = join(dst, e);
    const st = lstatSync(s);
    if (st.isDirectory()) {
      mkdirSync(d, { mode: st.mode & 0o7777 });
      copyTree(s, d);
    } else if (st.isSymbolicLink()) {
      symlinkSync(readlinkSync(s), d);
    } else if (st.isFile()) {
      copyFileSync(s, d);
    } else {
      continue; // devices, fifos and sockets are not copied
    }
    lchownSync(d, st.uid, st.gid);
    if (!st.isSymbolicLink()) chmodSync(d, st.mode & 0o7777);
    try { lutimesSync(d, st.atime, st.mtime); } catch { /* best effort */ }
  }
}
