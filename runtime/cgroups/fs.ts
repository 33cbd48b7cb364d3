/**
 * Small helpers for reading and writing cgroupfs files. Every failure becomes a CgroupError that
 * names the file, the value and the errno, with a hint for the errnos that have a well-known cause
 * (EBUSY on a memory limit below usage, ENOENT for a controller that is not enabled, ...).
 *
 * Writes open the file O_WRONLY|O_TRUNC without O_CREAT, like `echo v > file` minus the create: a
 * file that does not exist is a missing controller, never a new file. (O_TRUNC is a no-op on
 * cgroupfs and keeps plain-file layout trees exact.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { BerthError } from '../errors.js';

/** A cgroupfs operation failed. `file` is the absolute path, `errnoCode` e.g. "EBUSY". */
export class CgroupError extends BerthError {
  readonly file: string;
  readonly errnoCode: string;
  constructor(file: string, errnoCode: string, message: string, options?: { cause?: unknown }) {
    super('ECGROUP', message, options);
    this.file = file;
    this.errnoCode = errnoCode;
  }
}

/** A resource was requested that this host's cgroup setup cannot program. */
export class CgroupUnsupportedError extends BerthError {
  constructor(message: string) {
    super('ECGROUPUNSUPPORTED', message);
  }
}

function errCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return 'EUNKNOWN';
}

function hintFor(file: string, code: string, value: string): string {
  const base = path.basename(file);
  switch (code) {
    case 'EBUSY':
      if (base.startsWith('memory.')) return ' (the cgroup already uses more memory than this limit and the kernel could not reclaim enough)';
      if (base === 'cgroup.subtree_control') return ' (a cgroup with processes cannot enable controllers for its children: no-internal-processes rule)';
      if (base.startsWith('cpuset.')) return ' (a child cgroup or a running task uses CPUs/memory nodes outside the new set)';
      return ' (the cgroup or the resource is in use)';
    case 'ENOENT':
      return ' (the file does not exist: the controller is not enabled for this cgroup, or this kernel does not support the setting)';
    case 'EINVAL':
      if (base.startsWith('memory.') && base.includes('limit')) return ' (memory.limit_in_bytes must be <= memory.memsw.limit_in_bytes)';
      if (base === 'cpu.cfs_quota_us' || base === 'cpu.cfs_period_us' || base === 'cpu.max') return ' (invalid CPU bandwidth: period must be 1000..1000000 us, quota >= 1000 us and within the parent\'s bandwidth)';
      if (base === 'devices.deny' && value.startsWith('a')) return ' (deny-all is refused on a cgroup that has children)';
      return ' (the kernel rejected the value)';
    case 'ERANGE':
      if (base.startsWith('cpuset.')) return ' (the list names CPUs or memory nodes that do not exist on this host)';
      return ' (the value is out of range)';
    case 'ESRCH':
      return ' (no such process: it has already exited)';
    case 'EACCES':
    case 'EPERM':
      return ' (permission denied: root and write access to cgroupfs are required)';
    case 'ENOSPC':
      return ' (the parent cgroup does not have these CPUs/memory nodes, or a limit such as cgroup.max.descendants was reached)';
    case 'EOPNOTSUPP':
      return ' (not supported by this kernel or controller)';
    default:
      return '';
  }
}

function describeValue(value: string): string {
  const v = value.length > 120 ? `${value.slice(0, 117)}...` : value;
  return JSON.stringify(v);
}

/** Write `value` to an existing cgroup file. Throws CgroupError naming file, value and errno. */
export function writeCgroupFile(file: string, value: string | number | bigint): void {
  const text = String(value);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
  } catch (err) {
    const code = errCode(err);
    throw new CgroupError(file, code, `cannot write ${describeValue(text)} to ${file}: ${code}${hintFor(file, code, text)}`, { cause: err });
  }
  try {
    fs.writeSync(fd, text);
  } catch (err) {
    const code = errCode(err);
    throw new CgroupError(file, code, `cannot write ${describeValue(text)} to ${file}: ${code}${hintFor(file, code, text)}`, { cause: err });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Write each value with its own write(2) through one open file (devices.allow/deny take one rule
 * per write). Same errors as writeCgroupFile, naming the value that failed.
 */
export function writeCgroupValues(file: string, values: (string | number)[]): void {
  if (values.length === 0) return;
  if (values.length === 1) return writeCgroupFile(file, values[0]);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
  } catch (err) {
    const code = errCode(err);
    const text = String(values[0]);
    throw new CgroupError(file, code, `cannot write ${describeValue(text)} to ${file}: ${code}${hintFor(file, code, text)}`, { cause: err });
  }
  try {
    for (const v of values) {
      const text = String(v);
      try {
        fs.writeSync(fd, text);
      } catch (err) {
        const code = errCode(err);
        throw new CgroupError(file, code, `cannot write ${describeValue(text)} to ${file}: ${code}${hintFor(file, code, text)}`, { cause: err });
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Read a cgroup file, trimmed. Throws CgroupError. */
export function readCgroupFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    const code = errCode(err);
    throw new CgroupError(file, code, `cannot read ${file}: ${code}${hintFor(file, code, '')}`, { cause: err });
  }
}

/** Read a cgroup file, or null when it does not exist (any other error throws). */
export function readCgroupFileOptional(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT' || code === 'ENODEV' || code === 'EOPNOTSUPP') return null;
    throw new CgroupError(file, code, `cannot read ${file}: ${code}${hintFor(file, code, '')}`, { cause: err });
  }
}

export function fileExists(file: string): boolean {
  try {
    fs.accessSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Parse an unsigned integer file value; "max" and absent become null. Big values lose precision. */
export function parseIntOrNull(text: string | null): number | null {
  if (text === null || text === '' || text === 'max') return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

/** Parse a "key value" per line file (cpu.stat, memory.events, memory.oom_control, cpuacct.stat). */
export function parseKeyValues(text: string | null): Map<string, bigint> {
  const out = new Map<string, bigint>();
  if (!text) return out;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (!k || v === undefined || !/^-?\d+$/.test(v)) continue;
    out.set(k, BigInt(v));
  }
  return out;
}

/** Parse cgroup.procs: one pid per line. */
export function parsePids(text: string | null): number[] {
  if (!text) return [];
  return text.split('\n').map((s) => s.trim()).filter((s) => s !== '').map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

/** mkdir -p that reports a CgroupError. Returns the directories it created, shallowest first. */
export function mkdirCgroup(dir: string): string[] {
  // Fast path: the parent usually exists already.
  try {
    fs.mkdirSync(dir);
    return [dir];
  } catch (err) {
    const code = errCode(err);
    if (code === 'EEXIST') return [];
    if (code !== 'ENOENT') throw new CgroupError(dir, code, `cannot create cgroup directory ${dir}: ${code}${hintFor(dir, code, '')}`, { cause: err });
  }
  const created: string[] = [];
  const missing: string[] = [];
  let cur = dir;
  while (!fileExists(cur)) {
    missing.unshift(cur);
    const parent = path.dirname(cur);
    if (parent === cur) break;
    cur = parent;
  }
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
      created.push(d);
    } catch (err) {
      const code = errCode(err);
      if (code === 'EEXIST') continue;
      throw new CgroupError(d, code, `cannot create cgroup directory ${d}: ${code}${hintFor(d, code, '')}`, { cause: err });
    }
  }
  return created;
}

/** rmdir one cgroup directory; returns the errno code or null on success/absent. */
export function rmdirCgroup(dir: string): string | null {
  try {
    fs.rmdirSync(dir);
    return null;
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT') return null;
    return code;
  }
}

/** Sub-cgroups of dir, deepest first, then dir itself. Missing dir yields []. */
export function cgroupTreeDeepestFirst(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(d, e.name));
    out.push(d);
  };
  if (fileExists(dir)) walk(dir);
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Send SIGKILL, ignoring ESRCH (already gone). */
export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if (errCode(err) !== 'ESRCH') throw err;
  }
}

/**
 * The fast path of destroy(): rmdir each directory once. The kernel refuses (EBUSY) a cgroup that
 * still has tasks or children, so when every rmdir succeeds (or the directory is already gone)
 * there was nothing to kill and nothing is left. Returns false when any directory remains; the
 * caller then runs the full kill-and-remove.
 */
export function removeEmptyCgroups(dirs: string[]): boolean {
  let all = true;
  for (const d of dirs) if (rmdirCgroup(d) !== null) all = false;
  return all;
}

/**
 * The common part of destroy() for both drivers: SIGKILL every process in each tree (plus anything
 * `killTree` does first, e.g. v2 cgroup.kill), wait up to waitMs for cgroup.procs to be empty
 * everywhere, then rmdir every directory deepest-first, retrying EBUSY for up to rmdirRetryMs.
 * Directories that are already gone are fine. Throws a CgroupError when something remains.
 */
export async function killAndRemoveTrees(
  roots: string[],
  opts: { killTree?: (root: string) => void; waitMs?: number; rmdirRetryMs?: number } = {},
): Promise<void> {
  const waitMs = opts.waitMs ?? 2000;
  const rmdirRetryMs = opts.rmdirRetryMs ?? 1000;
  const allDirs = (): string[] => roots.flatMap((r) => cgroupTreeDeepestFirst(r));
  const livePids = (): Map<number, string> => {
    const found = new Map<number, string>();
    for (const d of allDirs()) for (const pid of parsePids(readCgroupFileOptional(path.join(d, 'cgroup.procs')))) found.set(pid, d);
    return found;
  };
  for (const r of roots) if (opts.killTree && fileExists(r)) opts.killTree(r);
  const deadline = Date.now() + waitMs;
  let remaining = livePids();
  while (remaining.size > 0) {
    for (const pid of remaining.keys()) killPid(pid);
    if (Date.now() > deadline) break;
    await sleep(10);
    remaining = livePids();
  }
  if (remaining.size > 0) {
    const [pid, dir] = [...remaining.entries()][0];
    throw new CgroupError(dir, 'EBUSY', `cannot empty cgroup ${dir}: process ${pid} (of ${remaining.size}) still in it ${waitMs} ms after SIGKILL (uninterruptible sleep or frozen?)`);
  }
  const rmDeadline = Date.now() + rmdirRetryMs;
  for (;;) {
    const failures: [string, string][] = [];
    for (const d of allDirs()) {
      const code = rmdirCgroup(d);
      if (code !== null) failures.push([d, code]);
    }
    if (failures.length === 0) return;
    const fatal = failures.find(([, code]) => code !== 'EBUSY' && code !== 'ENOTEMPTY');
    if (fatal || Date.now() > rmDeadline) {
      const [d, code] = fatal ?? failures[0];
      throw new CgroupError(d, code, `cannot remove cgroup directory ${d}: ${code}${code === 'EBUSY' ? ' (still has processes or child cgroups)' : ''}`);
    }
    await sleep(20);
  }
}
