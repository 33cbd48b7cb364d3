/**
 * Linux capabilities: the name ↔ number table (linux/capability.h, CAP_CHOWN=0 …
 * CAP_CHECKPOINT_RESTORE=40), conversion of OCI name lists to the 64-bit masks capset(2) and
 * the bounding-set drop need, the default sets Docker uses, and a reader for the Cap* lines of
 * /proc/<pid>/status that tests across the project use to check what a process really holds.
 */
import fs from 'node:fs';
import { BerthError, ConfigError } from '../errors.js';

/** Capability numbers, in kernel order. */
export const CAPS: Readonly<Record<string, number>> = Object.freeze({
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_DAC_READ_SEARCH: 2,
  CAP_FOWNER: 3,
  CAP_FSETID: 4,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_SETPCAP: 8,
  CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14,
  CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_BOOT: 22,
  CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24,
  CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26,
  CAP_MKNOD: 27,
  CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29,
  CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31,
  CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33,
  CAP_SYSLOG: 34,
  CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36,
  CAP_AUDIT_READ: 37,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
  CAP_CHECKPOINT_RESTORE: 40,
});

const BY_NUMBER: string[] = [];
for (const [name, nr] of Object.entries(CAPS)) BY_NUMBER[nr] = name;

/** Highest capability this table knows. */
export const CAP_LAST_KNOWN = BY_NUMBER.length - 1;

/** Every capability this table knows, in kernel order. */
export const ALL_CAPS: readonly string[] = Object.freeze([...BY_NUMBER]);

/** Docker's default capability set (moby oci/caps/defaults.go), in its order. */
export const DEFAULT_CAPS: readonly string[] = Object.freeze([
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
]);

/** Canonical form of a capability name: upper case with the CAP_ prefix ("net_raw" → CAP_NET_RAW). */
export function normalizeCapName(name: string): string {
  const up = name.trim().toUpperCase();
  return up.startsWith('CAP_') ? up : `CAP_${up}`;
}

/** The capability number for a name, or undefined when the name is not a capability. */
export function capNumber(name: string): number | undefined {
  return CAPS[normalizeCapName(name)];
}

let lastCapCache: number | null = null;

/** The running kernel's highest capability (/proc/sys/kernel/cap_last_cap). */
export function kernelLastCap(): number {
  if (lastCapCache !== null) return lastCapCache;
  try {
    const v = Number.parseInt(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim(), 10);
    lastCapCache = Number.isInteger(v) && v >= 0 ? v : CAP_LAST_KNOWN;
  } catch {
    lastCapCache = CAP_LAST_KNOWN;
  }
  return lastCapCache;
}

/**
 * Converts OCI capability names to a mask. `path` is the JSON path of the list (e.g.
 * `process.capabilities.bounding`): an unknown name throws ConfigError naming `path[i]`.
 * Known capabilities the running kernel does not have (beyond cap_last_cap) are left out of
 * the mask and, when `dropped` is given, appended to it so the caller can warn.
 */
export function capsToMask(names: readonly string[], path: string, dropped?: string[]): bigint {
  if (!Array.isArray(names)) throw new ConfigError(path, 'must be a list of capability names');
  const last = kernelLastCap();
  let mask = 0n;
  names.forEach((name, i) => {
    if (typeof name !== 'string') throw new ConfigError(`${path}[${i}]`, `must be a capability name, got ${JSON.stringify(name)}`);
    const nr = capNumber(name);
    if (nr === undefined) {
      throw new ConfigError(`${path}[${i}]`, `unknown capability "${name}" (expected a name such as CAP_NET_ADMIN; see capabilities(7))`);
    }
    if (nr > last) {
      const n = normalizeCapName(name);
      if (dropped && !dropped.includes(n)) dropped.push(n);
      return;
    }
    mask |= 1n << BigInt(nr);
  });
  return mask;
}

/** Names of the capabilities set in `mask`, in kernel order (unknown high bits are ignored). */
export function maskToCaps(mask: bigint): string[] {
  const out: string[] = [];
  for (let i = 0; i < BY_NUMBER.length; i++) if (mask & (1n << BigInt(i))) out.push(BY_NUMBER[i]);
  return out;
}

/** A mask as /proc/<pid>/status prints it: 16 hex digits. */
export function maskToHex(mask: bigint): string {
  return mask.toString(16).padStart(16, '0');
}

export interface ProcCaps {
  inheritable: bigint;
  permitted: bigint;
  effective: bigint;
  bounding: bigint;
  ambient: bigint;
}

/** Parses the CapInh/CapPrm/CapEff/CapBnd/CapAmb lines of a /proc/<pid>/status text. */
export function parseProcStatusCaps(status: string): ProcCaps {
  const get = (key: string): bigint => {
    const m = new RegExp(`^${key}:\\s*([0-9a-fA-F]+)\\s*$`, 'm').exec(status);
    if (!m) throw new BerthError('EPROCSTATUS', `process status has no "${key}:" line`);
    return BigInt(`0x${m[1]}`);
  };
  return {
    inheritable: get('CapInh'),
    permitted: get('CapPrm'),
    effective: get('CapEff'),
    bounding: get('CapBnd'),
    ambient: get('CapAmb'),
  };
}

/** The five capability sets of a running process, from /proc/<pid>/status. */
export function readProcCaps(pid: number | 'self' = 'self'): ProcCaps {
  return parseProcStatusCaps(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
}
