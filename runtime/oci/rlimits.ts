/**
 * POSIX rlimits for `process.rlimits`: the RLIMIT_* name → number table (Linux x86_64 /
 * asm-generic), this process's current limits (from /proc/self/limits, whose rows are in
 * resource order; getrlimit(2) through koffi where a row is missing), the default set (runc's
 * template: NOFILE 1024/1024, never above what the caller may set), and a check that refuses an
 * explicit limit the container's init could not get: raising a hard limit needs
 * CAP_SYS_RESOURCE, which root lacks on some hosts (see TEST-ENVIRONMENT.md).
 */
import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { ConfigError, SyscallError } from '../errors.js';
import { CAPS, readProcCaps } from './caps.js';
import type { Rlimit } from './spec.js';

export const RLIMITS: Readonly<Record<string, number>> = Object.freeze({
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
});

/** RLIM_INFINITY as a JS number: any value at or above 2^64-1 (JSON can't hold it exactly). */
export const RLIM_INFINITY = Number.POSITIVE_INFINITY;
const U64_MAX = 0xffffffffffffffffn;

/** The resource number for an RLIMIT_* name; unknown names throw ConfigError naming `path`. */
export function rlimitNumber(name: string, path: string): number {
  const nr = typeof name === 'string' ? RLIMITS[name] : undefined;
  if (nr === undefined) {
    throw new ConfigError(path, `unknown rlimit type ${JSON.stringify(name)} (expected one of ${Object.keys(RLIMITS).join(', ')})`);
  }
  return nr;
}

interface Libc { getrlimit: (resource: number, out: Buffer) => number }
let cached: Libc | null = null;
function libc(): Libc {
  if (!cached) {
    const c = koffi.load('libc.so.6');
    cached = { getrlimit: c.func('int getrlimit(int resource, _Out_ void *rlim)') } as unknown as Libc;
  }
  return cached;
}

function toNumber(v: bigint): number {
  return v === U64_MAX ? RLIM_INFINITY : Number(v);
}

/** Row nr (= the resource number) of /proc/self/limits: "Max open files  1024  4096  files". */
function procLimit(nr: number): { soft: number; hard: number } | null {
  let text: string;
  try { text = readFileSync('/proc/self/limits', 'latin1'); } catch { return null; }
  const row = text.split('\n')[nr + 1];
  // The name column is 26 characters wide; soft and hard follow, then the (optional) unit.
  const m = row === undefined ? null : /^Max .{21}\s*(\d+|unlimited)\s+(\d+|unlimited)(\s|$)/.exec(row);
  if (!m) return null;
  const v = (s: string) => (s === 'unlimited' ? RLIM_INFINITY : Number(s));
  return { soft: v(m[1]), hard: v(m[2]) };
}

/** This process's soft and hard limit for `resource` (Infinity for unlimited). */
export function currentLimit(resource: number | string): { soft: number; hard: number } {
  const nr = typeof resource === 'string' ? rlimitNumber(resource, 'rlimit') : resource;
  const fromProc = procLimit(nr);
  if (fromProc) return fromProc;
  const buf = Buffer.alloc(16);
  if (libc().getrlimit(nr, buf) < 0) throw new SyscallError('getrlimit', koffi.errno(), `read limit ${nr}`);
  return { soft: toNumber(buf.readBigUInt64LE(0)), hard: toNumber(buf.readBigUInt64LE(8)) };
}

/** This process's hard limit for `resource` (Infinity for unlimited). */
export function currentHardLimit(resource: number | string): number {
  return currentLimit(resource).hard;
}

/** Whether this process may raise hard limits (CAP_SYS_RESOURCE in its effective set). */
export function canRaiseHardLimits(): boolean {
  return (readProcCaps('self').effective & (1n << BigInt(CAPS.CAP_SYS_RESOURCE))) !== 0n;
}

/** A spec value as a number where ≥ 2^64-1 means unlimited. */
function specValue(v: number): number {
  return v >= 2 ** 64 - 1 ? RLIM_INFINITY : v;
}

function show(v: number): string {
  return v === RLIM_INFINITY ? 'unlimited' : String(v);
}

/** runc's template (RLIMIT_NOFILE 1024/1024), capped at this process's hard limit. */
export function defaultRlimits(): Rlimit[] {
  const hard = currentHardLimit('RLIMIT_NOFILE');
  const v = Math.min(1024, hard);
  return [{ type: 'RLIMIT_NOFILE', soft: v, hard: v }];
}

/**
 * Validates `process.rlimits` and refuses what setrlimit/prlimit would refuse: an unknown
 * type, a duplicate, soft above hard, or a hard limit above this process's own hard limit
 * when it lacks CAP_SYS_RESOURCE. Throws ConfigError naming `path[i]`.
 */
export function checkRlimits(rlimits: readonly Rlimit[] | undefined, path = 'process.rlimits'): void {
  if (rlimits === undefined) return;
  if (!Array.isArray(rlimits)) throw new ConfigError(path, 'must be a list of {type, soft, hard}');
  const seen = new Set<string>();
  let mayRaise: boolean | null = null;
  rlimits.forEach((r, i) => {
    const p = `${path}[${i}]`;
    if (r === null || typeof r !== 'object') throw new ConfigError(p, 'must be an object {type, soft, hard}');
    const nr = rlimitNumber(r.type, `${p}.type`);
    if (seen.has(r.type)) throw new ConfigError(`${p}.type`, `rlimit ${r.type} is set more than once`);
    seen.add(r.type);
    for (const k of ['soft', 'hard'] as const) {
      const v = r[k];
      if (typeof v !== 'number' || (!Number.isInteger(v) && v !== RLIM_INFINITY) || v < 0) {
        throw new ConfigError(`${p}.${k}`, `must be a non-negative integer, got ${JSON.stringify(v)}`);
      }
    }
    const soft = specValue(r.soft), hard = specValue(r.hard);
    if (soft > hard) throw new ConfigError(p, `rlimit ${r.type} soft ${show(soft)} is above its hard ${show(hard)}`);
    const current = currentHardLimit(nr);
    if (hard > current) {
      mayRaise ??= canRaiseHardLimits();
      if (!mayRaise) {
        throw new ConfigError(p, `rlimit ${r.type} hard ${show(hard)} exceeds this process's hard limit ${show(current)} and raising it needs CAP_SYS_RESOURCE; lower it to at most ${show(current)}`);
      }
    }
  });
}
