/**
 * Runs last (tap runs files in name order with jobs=1): whatever the suite created on this machine
 * must be gone — mounts, cgroups, veths, network namespaces, monitors, registries, zygotes.
 * Things that existed before the suite (test/000-baseline.test.ts) are not the suite's.
 */
import t from 'tap';
import { rmSync } from 'node:fs';
import { leftovers, baseline, BASELINE_FILE, type Leftovers } from './helpers/leftovers.js';

const before = baseline();
const now = leftovers();
t.teardown(() => rmSync(BASELINE_FILE, { force: true }));

const added = (k: keyof Leftovers) => now[k].filter((x) => !before[k].includes(x));

t.test('no mounts made by the tests remain', async (t) => { t.same(added('mounts'), []); });
t.test('no cgroups made by the tests remain', async (t) => { t.same(added('cgroups'), []); });
t.test('no veths or network namespace files remain', async (t) => {
  t.same(added('veths'), []);
  t.same(added('netns'), []);
});
t.test('no monitors, registries, runtimes or zygotes remain', async (t) => { t.same(added('procs'), []); });
