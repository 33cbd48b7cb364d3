/**
 * OCI mount options → mount(2) flags, propagation changes and the fs data string, as runc's
 * parseMountOptions does. Pure: unit-tested without root.
 */
import * as L from '../linux/libc.js';

const SET: Record<string, number> = {
  ro: L.MS_RDONLY, nosuid: L.MS_NOSUID, nodev: L.MS_NODEV, noexec: L.MS_NOEXEC, sync: L.MS_SYNCHRONOUS,
  remount: L.MS_REMOUNT, mand: L.MS_MANDLOCK, dirsync: L.MS_DIRSYNC, noatime: L.MS_NOATIME,
  nodiratime: L.MS_NODIRATIME, bind: L.MS_BIND, rbind: L.MS_BIND | L.MS_REC, relatime: L.MS_RELATIME,
  strictatime: L.MS_STRICTATIME, nosymfollow: L.MS_NOSYMFOLLOW, lazytime: L.MS_LAZYTIME, silent: L.MS_SILENT,
};
const CLEAR: Record<string, number> = {
  rw: L.MS_RDONLY, suid: L.MS_NOSUID, dev: L.MS_NODEV, exec: L.MS_NOEXEC, async: L.MS_SYNCHRONOUS,
  nomand: L.MS_MANDLOCK, atime: L.MS_NOATIME, diratime: L.MS_NODIRATIME, norelatime: L.MS_RELATIME,
  nostrictatime: L.MS_STRICTATIME, symfollow: L.MS_NOSYMFOLLOW, nolazytime: L.MS_LAZYTIME, loud: L.MS_SILENT,
};
const PROPAGATION: Record<string, number> = {
  private: L.MS_PRIVATE, rprivate: L.MS_PRIVATE | L.MS_REC, shared: L.MS_SHARED, rshared: L.MS_SHARED | L.MS_REC,
  slave: L.MS_SLAVE, rslave: L.MS_SLAVE | L.MS_REC, unbindable: L.MS_UNBINDABLE, runbindable: L.MS_UNBINDABLE | L.MS_REC,
};
/** Options runc accepts and handles elsewhere (or ignores); never passed to the kernel as data. */
const IGNORED = new Set(['defaults', 'tmpcopyup', 'idmap', 'ridmap', 'copy-symlink', 'src-nofollow', 'bind-nonrecursive']);

export interface ParsedMountOptions { flags: number; propagation: number[]; data: string }

export function parseMountOptions(options: readonly string[] = []): ParsedMountOptions {
  let flags = 0;
  const propagation: number[] = [];
  const data: string[] = [];
  for (const o of options) {
    if (o in SET) flags |= SET[o];
    else if (o in CLEAR) flags &= ~CLEAR[o];
    else if (o in PROPAGATION) propagation.push(PROPAGATION[o]);
    else if (IGNORED.has(o)) continue;
    else data.push(o);
  }
  return { flags, propagation, data: data.join(',') };
}

export function propagationFlag(name: string): number | undefined {
  return PROPAGATION[name];
}
