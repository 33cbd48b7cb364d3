import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { markTopDir } from '../images/topdir.js';
import { ImageStore } from '../images/store.js';

const lsattr = (p: string) => execFileSync('lsattr', ['-d', p], { encoding: 'utf8' }).split(/\s/)[0];
const fsType = (p: string) => execFileSync('stat', ['-f', '-c', '%T', p], { encoding: 'utf8' }).trim();

t.test("the store's snapshots dir spreads new layer dirs over ext4 block groups (chattr +T)", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'berth-topdir-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  if (!/ext2\/ext3|ext4/.test(fsType(root))) {
    t.pass(`skipped: ${tmpdir()} is ${fsType(root)}, not ext4`);
    return;
  }
  const store = ImageStore.open(root);
  t.teardown(() => store.close());
  t.match(lsattr(join(root, 'snapshots')), /T/, 'snapshots/ has the top-directory flag');
  t.equal(markTopDir(join(root, 'snapshots')), true, 'idempotent');
  const plain = join(root, 'plain');
  mkdirSync(plain);
  t.notMatch(lsattr(plain), /T/, 'other dirs are left alone');
});

t.test('best effort: no error where the flag does not exist or the dir is missing', async (t) => {
  if (existsSync('/dev/shm')) t.equal(markTopDir('/dev/shm'), false, 'tmpfs has no such flag');
  t.equal(markTopDir('/nonexistent-berth-dir'), false);
});
