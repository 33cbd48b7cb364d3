/**
 * runtime/cgroups/warm.ts: the no-op cgroup migrations that keep the kernel's rcu_sync warm for a
 * container's first migration. They must move nothing, never keep a process alive, and stop when
 * released (or by themselves after 2 s).
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { keepCgroupMigrationWarm, warmCgroupMigration, warmingNow, warmTarget } from '../runtime/cgroups/warm.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

t.test('the target is the cgroup.procs of this process\'s own cgroup', async (tt) => {
  const file = warmTarget();
  tt.ok(file, 'found on this host');
  tt.match(file!, /^\/sys\/fs\/cgroup\/.*cgroup\.procs$/);
  tt.ok(readFileSync(file!, 'utf8').split('\n').includes(String(process.pid)), 'it lists this process');
});

t.test('warming moves nothing', async (tt) => {
  const before = readFileSync('/proc/self/cgroup', 'utf8');
  const done = keepCgroupMigrationWarm();
  warmCgroupMigration(); // one already in flight: skipped, not queued
  await sleep(30);
  done();
  await sleep(10);
  tt.equal(readFileSync('/proc/self/cgroup', 'utf8'), before, 'same cgroups in every hierarchy');
  tt.ok(readFileSync(warmTarget()!, 'utf8').split('\n').includes(String(process.pid)), 'still listed in its own');
});

t.test('the timer runs until every holder releases, and never keeps the process alive', async (tt) => {
  const ref = timers();
  const a = keepCgroupMigrationWarm();
  const b = keepCgroupMigrationWarm();
  tt.ok(warmingNow(), 'warming');
  tt.equal(timers(), ref, 'no ref\'d timer added');
  a();
  a(); // a second release of the same hold changes nothing
  tt.ok(warmingNow(), 'still warming for the other holder');
  b();
  tt.notOk(warmingNow(), 'stopped when both released');
});

t.test('a hold never released stops by itself after 2 s', async (tt) => {
  const old = keepCgroupMigrationWarm();
  tt.ok(warmingNow());
  await sleep(2200);
  tt.notOk(warmingNow(), 'stopped');
  const again = keepCgroupMigrationWarm();
  tt.ok(warmingNow(), 'a new hold starts it again');
  old();
  tt.ok(warmingNow(), 'the expired hold\'s late release does not stop the new one');
  again();
  tt.notOk(warmingNow());
});
