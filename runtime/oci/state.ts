/**
 * OCI state kept under --root: <root>/<id>/state.json (written atomically) and exec.fifo while
 * the container is "created". The init's start time (field 22 of /proc/<pid>/stat) is recorded
 * and checked before every signal, so a recycled pid is never mistaken for our init.
 */
import { readFileSync, writeFileSync, renameSync, mkdirSync, rmSync, rmdirSync, unlinkSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, NotFoundError } from '../errors.js';
import type { Spec, OciState } from './spec.js';

export interface ContainerRecord {
  id: string;
  bundle: string;
  rootfs: string;
  pid: number;
  /** Start time of the init in clock ticks since boot (/proc/<pid>/stat field 22). */
  initStartTime: string;
  created: string;
  cgroupPath: string;
  cgroupPaths: Record<string, string>;
  cgroupVersion: 1 | 2;
  config: Spec;
  /** Namespace files of the init, for exec and for a pod's other containers to join. */
  namespacePaths: Record<string, string>;
  owner: string;
  /** true while created by this runtime's CLI (init reparented to the caller). */
  detached: boolean;
}

export const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export function checkId(id: string): void {
  if (!ID_RE.test(id)) throw new BerthError('EINVALIDID', `invalid container id ${JSON.stringify(id)}: use 1-128 characters from [a-zA-Z0-9_.-], starting with a letter or digit`);
}

export function containerDir(root: string, id: string): string {
  checkId(id);
  return join(root, id);
}

export function writeAtomic(file: string, data: string | Buffer, mode = 0o600): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}

export function saveRecord(root: string, rec: ContainerRecord): void {
  writeAtomic(join(containerDir(root, rec.id), 'state.json'), JSON.stringify(rec));
}

export function loadRecord(root: string, id: string): ContainerRecord {
  const dir = containerDir(root, id);
  let text: string;
  try {
    text = readFileSync(join(dir, 'state.json'), 'utf8');
  } catch {
    if (existsSync(dir)) {
      // A create that was interrupted (kill -9) before it recorded state: report it as stopped so delete cleans it.
      return { id, bundle: '', rootfs: '', pid: 0, initStartTime: '0', created: statSync(dir).mtime.toISOString(), cgroupPath: '', cgroupPaths: {}, cgroupVersion: 1, config: { ociVersion: '1.2.0' }, namespacePaths: {}, owner: 'root', detached: true };
    }
    throw new NotFoundError(`container "${id}" does not exist`);
  }
  return JSON.parse(text) as ContainerRecord;
}

export function listIds(root: string): string[] {
  try {
    return readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory() && ID_RE.test(d.name)).map((d) => d.name).sort();
  } catch {
    return [];
  }
}

export function removeContainerDir(root: string, id: string): void {
  const dir = containerDir(root, id);
  // Usual content: unlink it and rmdir (no recursive walk). Anything else (a temp file left by a
  // crash): the recursive removal.
  for (const f of ['exec.fifo', 'state.json']) {
    try { unlinkSync(join(dir, f)); } catch { /* absent */ }
  }
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') rmSync(dir, { recursive: true, force: true });
  }
}

export function ensureRoot(root: string): void {
  mkdirSync(root, { recursive: true, mode: 0o700 });
}

export interface ProcStat { state: string; startTime: string; ppid: number; exiting: boolean }

/** Parse /proc/<pid>/stat (the comm field may contain spaces and parentheses). */
export function readProcStat(pid: number): ProcStat | null {
  if (!pid) return null;
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 (starttime) is rest[19]; field 4 (ppid) is rest[1];
  // field 9 (flags) is rest[6], where PF_EXITING (0x4) marks a process already in exit (a pid-ns
  // init waiting for its namespace's other processes to be reaped).
  return { state: rest[0], startTime: rest[19], ppid: Number(rest[1]), exiting: (Number(rest[6]) & 0x4) !== 0 };
}

/** Is the recorded init still the same live process (not exited, not a zombie, not a recycled pid)? */
export function initAlive(rec: ContainerRecord): boolean {
  const st = readProcStat(rec.pid);
  return st !== null && st.startTime === rec.initStartTime && st.state !== 'Z' && st.state !== 'X' && !st.exiting;
}

export function ociState(rec: ContainerRecord, status: OciState['status']): OciState {
  const s: OciState = { ociVersion: rec.config.ociVersion ?? '1.2.0', id: rec.id, status, bundle: rec.bundle };
  if (status !== 'stopped') s.pid = rec.pid;
  else s.pid = 0;
  if (rec.config.annotations) s.annotations = rec.config.annotations;
  return s;
}
