/**
 * Runs last (tap runs files in name order with jobs=1): whatever the suite created on this machine
 * must be gone — mounts, cgroups, veths, network namespaces, monitors, registries.
 */
import t from 'tap';
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

function findBerthCgroups(dir: string, depth: number, out: string[]): void {
  if (depth === 0) return;
  let entries: string[] = [];
  try { entries = readdirSync(dir); } catch { return; }
  for (const e of entries) {
    const p = join(dir, e);
    let isDir = false;
    try { isDir = statSync(p).isDirectory(); } catch { continue; }
    if (!isDir) continue;
    if (/berth/i.test(e)) out.push(p);
    else findBerthCgroups(p, depth - 1, out);
  }
}

t.test('no mounts made by the tests remain', async (t) => {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => /berth/.test(l));
  t.same(mounts, [], 'no mount mentions berth');
});

t.test('no cgroups made by the tests remain', async (t) => {
  const found: string[] = [];
  for (const h of readdirSync('/sys/fs/cgroup')) findBerthCgroups(join('/sys/fs/cgroup', h), 4, found);
  t.same(found, []);
});

t.test('no veths, network namespace files or test processes remain', async (t) => {
  const veths = execFileSync('ip', ['-o', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' }).trim();
  t.equal(veths, '', 'no veth interfaces');
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  t.same(netns, [], 'no /run/netns entries');
  const procs = execFileSync('ps', ['-eo', 'pid,stat,args'], { encoding: 'utf8' }).split('\n')
    .filter((l) => /berth-monitor|docker-registry|berth-oci/.test(l) && !/ps -eo/.test(l));
  t.same(procs, [], 'no monitors, registries or runtime processes');
});
