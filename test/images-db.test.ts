/**
 * images/db.ts: the metadata database's schema versioning, on real SQLite files. Opening a store
 * that is up to date takes no write lock, so a `berth ps` or `run` is not queued behind another
 * process's write transaction (a pull recording its layers, say).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageDB } from '../images/db.js';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3') as typeof import('better-sqlite3');

function scratch(tt: { teardown: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-db-'));
  tt.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test('a new store gets the schema and its version', async (tt) => {
  const root = scratch(tt);
  ImageDB.open(root).close();
  const db = new Database(join(root, 'metadata.db'), { readonly: true });
  tt.equal(db.pragma('user_version', { simple: true }), 1);
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  tt.same(tables, ['image_uses', 'images', 'repo_digests', 'snapshots', 'tags']);
  db.close();
});

t.test('an up-to-date store opens while another process holds the write lock', async (tt) => {
  const root = scratch(tt);
  ImageDB.open(root).close();
  // another process: BEGIN IMMEDIATE, say so, hold it for 5 s, then mark that it is about to
  // COMMIT (a file) and commit: an open that needed the write lock returns only after that mark
  const mark = join(root, 'committing');
  const holder = spawn(process.execPath, ['-e', `
    const db = new (require(${JSON.stringify(require.resolve('better-sqlite3'))}))(${JSON.stringify(join(root, 'metadata.db'))});
    db.prepare('BEGIN IMMEDIATE').run();
    process.stdout.write('locked\\n');
    setTimeout(() => { require('node:fs').writeFileSync(${JSON.stringify(mark)}, ''); db.prepare('COMMIT').run(); setTimeout(() => {}, 60000); }, 5000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  tt.teardown(() => { holder.kill('SIGKILL'); });
  await new Promise<void>((res) => holder.stdout!.once('data', () => res()));
  const db = ImageDB.open(root);
  tt.notOk(existsSync(mark), 'opened while the other process still held the write lock');
  tt.ok(db.db.prepare('SELECT count(*) AS n FROM images').get(), 'and it reads');
  db.close();
});

t.test('a store from a newer berth is refused, naming the versions', async (tt) => {
  const root = scratch(tt);
  ImageDB.open(root).close();
  const db = new Database(join(root, 'metadata.db'));
  db.pragma('user_version = 7');
  db.close();
  tt.throws(() => ImageDB.open(root), /metadata\.db has schema version 7, newer than this berth understands \(1\)/);
});
