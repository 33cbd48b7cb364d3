/**
 * The first cgroup migration after a quiet spell waits for an RCU grace period (the kernel's
 * cgroup_threadgroup_rwsem rcu_sync: 0.05-20 ms on this host); later ones do not, as long as the
 * previous one ended less than about a grace period ago. Creating a container moves its init into
 * a cgroup, so callers start a no-op migration (this process into its own pids or v2 cgroup) on
 * the threadpool first and let the grace period run while they do other work. Errors are
 * ignored: it is only a head start. (bin/berth-oci.cjs, which cannot import TypeScript, has its
 * own copy for the same reason, run before the bundle loads.)
 */
import { closeSync, openSync, readFileSync, write } from 'node:fs';

let ownProcsFile: string | null | undefined;

export function warmCgroupMigration(): void {
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
  if (!ownProcsFile) return;
  let fd: number;
  try { fd = openSync(ownProcsFile, 'w'); } catch { ownProcsFile = null; return; }
  write(fd, String(process.pid), () => { try { closeSync(fd); } catch { /* closed */ } });
}
