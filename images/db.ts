/**
 * The image metadata database: SQLite (better-sqlite3) at <root>/metadata.db in WAL mode with a
 * busy timeout, so concurrent `berth` invocations wait for each other instead of failing. Every
 * multi-row change runs in a transaction; the schema is versioned with PRAGMA user_version.
 *
 * Tables: images (id = config digest), tags (name → image), snapshots (chain id → short id),
 * image_uses (container → image / top snapshot; `rmi` refuses used images unless forced).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { BerthError } from '../runtime/errors.js';

export interface LayerRecord {
  digest: string;
  mediaType: string;
  size: number;
  diffId: string;
  chainId: string;
}

export interface ImageRecord {
  /** Config digest. */
  id: string;
  manifestDigest: string;
  manifestMediaType: string;
  /** Canonical repository it was pulled from / loaded as (docker.io/library/alpine), may be ''. */
  repository: string;
  /** Compressed size: config + layers as stored. */
  size: number;
  created: string | null;
  os: string;
  architecture: string;
  variant: string | null;
  layers: LayerRecord[];
  /** When this store recorded it (ms since epoch). */
  addedAt: number;
  /** Canonical tags (docker.io/library/alpine:latest), filled in by queries. */
  repoTags: string[];
  /** repo@manifest-digest, filled in by queries. */
  repoDigests: string[];
}

export interface SnapshotRecord {
  /** Short id: the directory name under snapshots/. */
  id: number;
  chainId: string;
  parent: string | null;
  diffId: string;
  size: number;
  state: 'committing' | 'ready';
  pid: number;
  createdAt: number;
}

export class DatabaseError extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EDB', message, options);
  }
}

const SCHEMA_VERSION = 1;

const MIGRATIONS: Record<number, string> = {
  1: `
    CREATE TABLE images (
      id TEXT PRIMARY KEY,
      manifest_digest TEXT NOT NULL,
      manifest_media_type TEXT NOT NULL,
      repository TEXT NOT NULL DEFAULT '',
      size INTEGER NOT NULL,
      created TEXT,
      os TEXT NOT NULL,
      architecture TEXT NOT NULL,
      variant TEXT,
      layers TEXT NOT NULL,
      added_at INTEGER NOT NULL
    );
    CREATE TABLE repo_digests (
      name TEXT PRIMARY KEY,
      image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE TABLE tags (
      name TEXT PRIMARY KEY,
      image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE snapshots (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      chain_id TEXT NOT NULL UNIQUE,
      parent TEXT,
      diff_id TEXT NOT NULL,
      size INTEGER NOT NULL,
      state TEXT NOT NULL,
      pid INTEGER NOT NULL,
      created_at INTEGER NOT NULL
    );
    CREATE TABLE image_uses (
      container_id TEXT PRIMARY KEY,
      image_id TEXT NOT NULL,
      chain_id TEXT
    );
    CREATE INDEX image_uses_image ON image_uses(image_id);
  `,
};

interface ImageRow {
  id: string; manifest_digest: string; manifest_media_type: string; repository: string; size: number;
  created: string | null; os: string; architecture: string; variant: string | null; layers: string; added_at: number;
}
interface SnapRow {
  id: number; chain_id: string; parent: string | null; diff_id: string; size: number; state: string; pid: number; created_at: number;
}

/**
 * better-sqlite3's addon, by path. Without it, better-sqlite3 finds the addon through the
 * `bindings` package, which probes a dozen paths and parses a stack trace: ~1.5 ms of every
 * `berth` call that opens the store. undefined (the default lookup) if it is not where the
 * package builds it.
 */
let binding: string | undefined | null = null;
function nativeBinding(): string | undefined {
  if (binding !== null) return binding;
  binding = undefined;
  // The package's node_modules next to this module's tree (images/ or dist/images/), checked
  // directly (a require.resolve costs ~0.7 ms), then through resolution.
  const rel = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
  const here = import.meta.dirname ?? path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../..']) {
    const p = path.join(here, up, rel);
    if (fs.existsSync(p)) return (binding = p);
  }
  try {
    const pkg = createRequire(import.meta.url).resolve('better-sqlite3/package.json');
    const p = path.join(path.dirname(pkg), 'build', 'Release', 'better_sqlite3.node');
    if (fs.existsSync(p)) binding = p;
  } catch { /* the default lookup */ }
  return binding;
}

export class ImageDB {
  readonly db: Database.Database;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  static open(root: string): ImageDB {
    fs.mkdirSync(root, { recursive: true, mode: 0o711 });
    const file = path.join(root, 'metadata.db');
    let db: Database.Database;
    try {
      const addon = nativeBinding();
      db = new Database(file, { timeout: 30_000, ...(addon ? { nativeBinding: addon } : {}) });
      // (the busy timeout is the `timeout` option above)
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
    } catch (e) {
      throw new DatabaseError(`cannot open the image database ${file}: ${(e as Error).message}`, { cause: e });
    }
    const me = new ImageDB(db);
    me.migrate(file);
    return me;
  }

  private migrate(file: string): void {
    // Up to date (every call but the first on a new store): no transaction. BEGIN IMMEDIATE takes
    // the write lock, so every `berth` call (ps, run...) would queue behind a writer's transaction.
    if (this.db.pragma('user_version', { simple: true }) === SCHEMA_VERSION) return;
    const tx = this.db.transaction(() => {
      const v = this.db.pragma('user_version', { simple: true }) as number;
      if (v > SCHEMA_VERSION) {
        throw new DatabaseError(`${file} has schema version ${v}, newer than this berth understands (${SCHEMA_VERSION}); upgrade berth`);
      }
      for (let n = v + 1; n <= SCHEMA_VERSION; n++) this.db.exec(MIGRATIONS[n]);
      if (v !== SCHEMA_VERSION) this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    tx.immediate();
  }

  close(): void {
    this.db.close();
  }

  /** Run fn in one IMMEDIATE transaction (takes the write lock up front, so no upgrade deadlocks). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  // ---- images ----

  private toImage(r: ImageRow): ImageRecord {
    return {
      id: r.id, manifestDigest: r.manifest_digest, manifestMediaType: r.manifest_media_type, repository: r.repository,
      size: r.size, created: r.created, os: r.os, architecture: r.architecture, variant: r.variant,
      layers: JSON.parse(r.layers) as LayerRecord[], addedAt: r.added_at,
      repoTags: (this.db.prepare('SELECT name FROM tags WHERE image_id = ? ORDER BY name').all(r.id) as { name: string }[]).map((x) => x.name),
      repoDigests: (this.db.prepare('SELECT name FROM repo_digests WHERE image_id = ? ORDER BY name').all(r.id) as { name: string }[]).map((x) => x.name),
    };
  }

  /** Insert or update an image, and point `tags` at it, in one transaction. */
  putImage(img: Omit<ImageRecord, 'repoTags' | 'repoDigests' | 'addedAt'>, tags: string[] = [], repoDigests: string[] = []): ImageRecord {
    return this.tx(() => {
      this.db.prepare(`INSERT INTO images (id, manifest_digest, manifest_media_type, repository, size, created, os, architecture, variant, layers, added_at)
        VALUES (@id, @manifestDigest, @manifestMediaType, @repository, @size, @created, @os, @architecture, @variant, @layers, @addedAt)
        ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest, manifest_media_type = excluded.manifest_media_type,
          repository = CASE WHEN excluded.repository <> '' THEN excluded.repository ELSE images.repository END,
          size = excluded.size, layers = excluded.layers`).run({
        ...img, variant: img.variant ?? null, created: img.created ?? null, layers: JSON.stringify(img.layers), addedAt: Date.now(),
      });
      for (const t of tags) this.db.prepare('INSERT INTO tags (name, image_id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id').run(t, img.id);
      for (const d of repoDigests) this.db.prepare('INSERT INTO repo_digests (name, image_id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id').run(d, img.id);
      return this.getImage(img.id)!;
    });
  }

  getImage(id: string): ImageRecord | null {
    const r = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow | undefined;
    return r ? this.toImage(r) : null;
  }

  /** Images whose id starts with `prefix` (hex, with or without sha256:). */
  findImagesByPrefix(prefix: string): ImageRecord[] {
    const p = prefix.startsWith('sha256:') ? prefix : `sha256:${prefix}`;
    return (this.db.prepare("SELECT * FROM images WHERE substr(id, 1, ?) = ?").all(p.length, p) as ImageRow[]).map((r) => this.toImage(r));
  }

  listImages(): ImageRecord[] {
    return (this.db.prepare('SELECT * FROM images ORDER BY added_at DESC, id').all() as ImageRow[]).map((r) => this.toImage(r));
  }

  deleteImage(id: string): void {
    this.tx(() => {
      this.db.prepare('DELETE FROM tags WHERE image_id = ?').run(id);
      this.db.prepare('DELETE FROM repo_digests WHERE image_id = ?').run(id);
      this.db.prepare('DELETE FROM images WHERE id = ?').run(id);
    });
  }

  // ---- tags ----

  resolveTag(name: string): string | null {
    const r = this.db.prepare('SELECT image_id FROM tags WHERE name = ?').get(name) as { image_id: string } | undefined;
    return r?.image_id ?? null;
  }

  resolveRepoDigest(name: string): string | null {
    const r = this.db.prepare('SELECT image_id FROM repo_digests WHERE name = ?').get(name) as { image_id: string } | undefined;
    return r?.image_id ?? null;
  }

  setTag(name: string, imageId: string): void {
    this.db.prepare('INSERT INTO tags (name, image_id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id').run(name, imageId);
  }

  removeTag(name: string): boolean {
    return this.db.prepare('DELETE FROM tags WHERE name = ?').run(name).changes > 0;
  }

  // ---- snapshots ----

  private toSnap(r: SnapRow): SnapshotRecord {
    return { id: r.id, chainId: r.chain_id, parent: r.parent, diffId: r.diff_id, size: r.size, state: r.state as SnapshotRecord['state'], pid: r.pid, createdAt: r.created_at };
  }

  getSnapshot(chainId: string): SnapshotRecord | null {
    const r = this.db.prepare('SELECT * FROM snapshots WHERE chain_id = ?').get(chainId) as SnapRow | undefined;
    return r ? this.toSnap(r) : null;
  }

  listSnapshots(): SnapshotRecord[] {
    return (this.db.prepare('SELECT * FROM snapshots ORDER BY id').all() as SnapRow[]).map((r) => this.toSnap(r));
  }

  /**
   * Reserve a short id for chainId in state 'committing' (owned by this pid). Returns null when the
   * chain is already recorded (another pull won the race).
   */
  reserveSnapshot(s: { chainId: string; parent: string | null; diffId: string; size: number }): number | null {
    return this.tx(() => {
      if (this.db.prepare('SELECT 1 FROM snapshots WHERE chain_id = ?').get(s.chainId)) return null;
      const r = this.db.prepare(`INSERT INTO snapshots (chain_id, parent, diff_id, size, state, pid, created_at)
        VALUES (?, ?, ?, ?, 'committing', ?, ?)`).run(s.chainId, s.parent, s.diffId, s.size, process.pid, Date.now());
      return Number(r.lastInsertRowid);
    });
  }

  markSnapshotReady(id: number): void {
    this.db.prepare("UPDATE snapshots SET state = 'ready' WHERE id = ?").run(id);
  }

  deleteSnapshot(chainId: string): void {
    this.db.prepare('DELETE FROM snapshots WHERE chain_id = ?').run(chainId);
  }

  // ---- container uses ----

  /** Record that a container uses an image (and optionally which top snapshot). */
  addImageUse(imageId: string, containerId: string, chainId: string | null = null): void {
    this.db.prepare('INSERT INTO image_uses (container_id, image_id, chain_id) VALUES (?, ?, ?) ON CONFLICT(container_id) DO UPDATE SET image_id = excluded.image_id, chain_id = excluded.chain_id').run(containerId, imageId, chainId);
  }

  removeImageUse(_imageId: string | null, containerId: string): void {
    this.db.prepare('DELETE FROM image_uses WHERE container_id = ?').run(containerId);
  }

  usesOf(imageId: string): string[] {
    return (this.db.prepare('SELECT container_id FROM image_uses WHERE image_id = ? ORDER BY container_id').all(imageId) as { container_id: string }[]).map((r) => r.container_id);
  }
}
