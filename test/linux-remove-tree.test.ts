/**
 * runtime/linux/remove-tree.ts: `rm -rf --one-file-system` for container directories, on the
 * real file system (and a real tmpfs mount for the file-system boundary).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '../runtime/linux/remove-tree.js';
import { BerthError } from '../runtime/errors.js';

function scratch(tt: { teardown: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-rmtree-'));
  tt.teardown(() => {
    try { execFileSync('umount', ['-R', '-l', d], { stdio: 'ignore' }); } catch { /* nothing mounted */ }
    rmSync(d, { recursive: true, force: true });
  });
  return d;
}

t.test('removes files, fifos, empty and unreadable directories; follows no symlink', async (tt) => {
  const d = scratch(tt);
  const outside = join(d, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'precious');
  const top = join(d, 'ctr');
  mkdirSync(join(top, 'a/b/c'), { recursive: true });
  writeFileSync(join(top, 'a/b/c/f'), 'x');
  writeFileSync(join(top, 'config.json'), '{}');
  mkdirSync(join(top, 'empty'));
  mkdirSync(join(top, 'work/work'), { recursive: true });
  chmodSync(join(top, 'work/work'), 0o000); // as overlayfs leaves its workdir
  execFileSync('mkfifo', [join(top, 'fifo')]);
  symlinkSync(outside, join(top, 'link-dir'));
  symlinkSync(join(outside, 'keep'), join(top, 'link-file'));
  symlinkSync('/nonexistent', join(top, 'dangling'));
  removeTree(top);
  tt.notOk(existsSync(top), 'gone');
  tt.equal(readFileSync(join(outside, 'keep'), 'utf8'), 'precious', 'symlink targets untouched');
});

t.test('a missing path is no error; a file is unlinked', async (tt) => {
  const d = scratch(tt);
  removeTree(join(d, 'nope'));
  writeFileSync(join(d, 'file'), 'x');
  removeTree(join(d, 'file'));
  tt.notOk(existsSync(join(d, 'file')));
});

t.test('never enters another file system: the mount\'s files survive and the error names it', async (tt) => {
  const d = scratch(tt);
  const top = join(d, 'ctr');
  const mnt = join(top, 'rootfs');
  mkdirSync(mnt, { recursive: true });
  writeFileSync(join(top, 'hosts'), 'x');
  execFileSync('mount', ['-t', 'tmpfs', 'berth-rmtree-test', mnt]);
  writeFileSync(join(mnt, 'image-file'), 'from the image');
  let err: unknown;
  try { removeTree(top); } catch (e) { err = e; }
  tt.ok(err instanceof BerthError, 'an error');
  tt.equal((err as BerthError).code, 'EBUSY');
  tt.match((err as Error).message, mnt, 'names the mount point');
  tt.equal(readFileSync(join(mnt, 'image-file'), 'utf8'), 'from the image', 'nothing removed through the mount');
  tt.notOk(existsSync(join(top, 'hosts')), 'the rest is removed');
  execFileSync('umount', [mnt]);
  removeTree(top);
  tt.notOk(existsSync(top), 'removed once unmounted');
});
