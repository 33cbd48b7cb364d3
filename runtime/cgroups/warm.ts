/**
 * The first cgroup migration after a quiet spell waits for an RCU grace period (the kernel's
 * cgroup_threadgroup_rwsem rcu_sync: ~8 ms here, sometimes two); later ones do not, as long as
 * the previous one ended less than about a grace period ago (measured: a no-op migration 16 ms
 * after the last one takes 3-30 µs, 32 ms after it 7.7 ms). Creating a container moves its init
 * into a cgroup, so callers start a no-op migration (this process into its own pids or v2 cgroup)
 * on the threadpool first and let the grace period run while they do other work. Errors are
 * ignored: it is only a head start. (bin/berth-oci.cjs, which cannot import TypeScript, has its
 * own copy for the same reason, run before the bundle loads.)
 *
 * A single head start is not enough when the migration comes later than a grace period after it
 * (`berth run`: ~15-30 ms of other work between), and one issued just before the migration makes
 * the migration wait for it: keepCgroupMigrationWarm() repeats the no-op migration every few ms
 * (one at a time) until the caller has made its migration and calls the returned function, or
 * for at most 2 s.
 */
import { closeSync, openSync, readFileSync, write } from 'node:fs';

let ownProcsFile: string | null | undefined;
let inFlight = false;

/** The cgroup.procs file the no-op migration writes this process's pid into, or null (exported for tests). */
export function warmTarget(): string | null {
  if (ownProcsFile === undefined) {
    ownProcsFile = null;
    try {
      const lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
      const v1 = lines.find((l) => l.split(':')[1] === 'pids');
      const v2 = lines.find((l) => l.startsWith('0::'));
      if (v1) ownProcsFile = `/sys/fs/cgroup/pids${v1.split(':')[2]}/cgroup.procs`.replace('//', '/');
      else if (v2) ownProcsFile = `/sys/fs/cgroup${v2.slice(3)}/cgroup.procs`.replace('//', '/');
    } catch { /* no /proc: nothing to warm */ }
  }
  return ownProcsFile;
}

export function warmCgroupMigration(): void {
  warmTarget();
  // One at a time: a second one queued behind a grace-period wait only holds a threadpool thread.
  if (!ownProcsFile || inFlight) return;
  let fd: number;
  try { fd = openSync(ownProcsFile, 'w'); } catch { ownProcsFile = null; return; }
  inFlight = true;
  write(fd, String(process.pid), () => {
    inFlight = false;
    try { closeSync(fd); } catch { /* closed */ }
  });
}

const WARM_EVERY_MS = 4;
const WARM_AT_MOST_MS = 2000;
let holders = 0;
let generation = 0; // bumped when the timer stops: holds from before then release nothing
let until = 0;
let timer: ReturnType<typeof setInterval> | null = null;

function tick(): void {
  if (Date.now() > until) stopWarming();
  else warmCgroupMigration();
}

function stopWarming(): void {
  if (timer) clearInterval(timer);
  timer = null;
  holders = 0;
  generation++;
}

/**
 * Warm now and keep warming every few ms (an unref'd timer: it never keeps the process alive)
 * until every caller has called the function it got back, or for at most 2 s after the last call.
 */
export function keepCgroupMigrationWarm(): () => void {
  warmCgroupMigration();
  holders++;
  until = Date.now() + WARM_AT_MOST_MS;
  if (!timer) {
    timer = setInterval(tick, WARM_EVERY_MS);
    timer.unref();
  }
  const gen = generation;
  let released = false;
  return () => {
    if (released || gen !== generation) return;
    released = true;
    if (--holders === 0) stopWarming();
  };
}

/** Whether keepCgroupMigrationWarm's timer runs (for tests). */
export function warmingNow(): boolean {
  return timer !== null;
}
