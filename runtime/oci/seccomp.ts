/**
 * Compiles an OCI `linux.seccomp` profile into a classic-BPF program with libseccomp (Debian
 * libseccomp2 2.5.4, the library runc and crun use), through koffi. The program is exported
 * into a memfd and read back; the container's init installs it with seccomp(2) at the right
 * moment (ANCHORS.md §3.5 step 16) using the returned `flags`. Nothing here loads a filter into
 * this process. libseccomp is loaded on first use, so importing this module costs nothing.
 *
 * Semantics follow runc (libcontainer/seccomp/seccomp_linux.go):
 * - syscall names libseccomp cannot resolve are skipped (and reported in `skipped`);
 * - a rule whose action equals the default action is skipped;
 * - ERRNO and TRACE take `errnoRet` (default EPERM);
 * - several conditions on the same argument index become one rule per condition (OR), since
 *   libseccomp refuses two comparisons of one argument within one rule.
 *
 * Compiled programs are cached in memory (per process) and, once setSeccompCacheDir() named a
 * directory (the engine uses <root>/cache/seccomp), on disk: one file per sha256 of (profile
 * JSON, arch, libseccomp file identity, COMPILER_VERSION), written atomically and checked on
 * read (magic, lengths, instruction count, sha256 of the program); anything wrong with a cache
 * file means compiling again and rewriting it. A disk hit loads neither koffi nor libseccomp.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { LibraryHandle } from 'koffi';
import { BerthError, ConfigError, errnoName } from '../errors.js';
import { addon } from '../linux/addon.js';
import type { Seccomp, SeccompArg } from './spec.js';

/** A libseccomp call failed while compiling a profile; `path` is the JSON path at fault. */
export class SeccompError extends BerthError {
  readonly path: string;
  readonly errno: number;
  constructor(path: string, errno: number, message: string) {
    super('ESECCOMP', `${path}: ${message}${errno ? ` (${errnoName(errno)})` : ''}`);
    this.path = path;
    this.errno = errno;
  }
}

export interface CompiledSeccomp {
  /** The BPF program: an array of struct sock_filter (8 bytes each), host byte order. */
  program: Buffer;
  /** The flags argument for seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog). */
  flags: number;
  /** Syscall names this libseccomp does not know; their rules were left out (as runc does). */
  skipped: string[];
}

// Actions (seccomp.h).
export const SCMP_ACT_KILL_PROCESS = 0x80000000;
export const SCMP_ACT_KILL_THREAD = 0x00000000;
export const SCMP_ACT_TRAP = 0x00030000;
export const SCMP_ACT_NOTIFY = 0x7fc00000;
export const SCMP_ACT_LOG = 0x7ffc0000;
export const SCMP_ACT_ALLOW = 0x7fff0000;
export const scmpActErrno = (e: number): number => (0x00050000 | (e & 0xffff)) >>> 0;
export const scmpActTrace = (e: number): number => (0x7ff00000 | (e & 0xffff)) >>> 0;

// seccomp(2) filter flags (linux/seccomp.h).
export const SECCOMP_FILTER_FLAG_TSYNC = 1;
export const SECCOMP_FILTER_FLAG_LOG = 2;
export const SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4;
export const SECCOMP_FILTER_FLAG_NEW_LISTENER = 8;
export const SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16;
export const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32;

const FLAGS: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC,
  SECCOMP_FILTER_FLAG_LOG,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW,
  SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
};

const OPS: Record<string, number> = {
  SCMP_CMP_NE: 1,
  SCMP_CMP_LT: 2,
  SCMP_CMP_LE: 3,
  SCMP_CMP_EQ: 4,
  SCMP_CMP_GE: 5,
  SCMP_CMP_GT: 6,
  SCMP_CMP_MASKED_EQ: 7,
};

const EPERM = 1;
const EEXIST = 17;
const EACCES = 13;
const MAX_ARGS = 6;
const ARG_CMP_SIZE = 24; // struct scmp_arg_cmp { u32 arg; enum op; u64 datum_a; u64 datum_b; }
const MFD_CLOEXEC = 1;

type Ctx = bigint;

interface LibSeccomp {
  init: (defAction: number) => Ctx | null;
  release: (ctx: Ctx) => void;
  archAdd: (ctx: Ctx, arch: number) => number;
  archResolveName: (name: string) => number;
  syscallResolveName: (name: string) => number;
  ruleAddArray: (ctx: Ctx, action: number, syscall: number, count: number, args: Buffer | null) => number;
  exportBpf: (ctx: Ctx, fd: number) => number;
  memfdCreate: (name: string, flags: number) => number;
}

let cached: LibSeccomp | null = null;

type Koffi = typeof import('koffi');
let koffiMod: Koffi | null = null;
/** koffi, required on first use: a disk-cache hit never loads it (~5-9 ms for a CLI). */
function koffi(): Koffi {
  if (!koffiMod) {
    const m = createRequire(import.meta.url)('koffi') as Koffi & { default?: Koffi };
    koffiMod = m.default ?? m;
  }
  return koffiMod;
}

function lib(): LibSeccomp {
  if (cached) return cached;
  let l: LibraryHandle;
  try {
    l = koffi().load('libseccomp.so.2');
  } catch (err) {
    throw new BerthError('ESECCOMP', 'cannot load libseccomp.so.2: install the libseccomp2 package (apt-get install libseccomp2)', { cause: err });
  }
  const c = koffi().load('libc.so.6');
  cached = {
    init: l.func('void *seccomp_init(uint32_t def_action)'),
    release: l.func('void seccomp_release(void *ctx)'),
    archAdd: l.func('int seccomp_arch_add(void *ctx, uint32_t arch_token)'),
    archResolveName: l.func('uint32_t seccomp_arch_resolve_name(const char *name)'),
    syscallResolveName: l.func('int seccomp_syscall_resolve_name(const char *name)'),
    ruleAddArray: l.func('int seccomp_rule_add_array(void *ctx, uint32_t action, int syscall, unsigned int arg_cnt, const void *arg_array)'),
    exportBpf: l.func('int seccomp_export_bpf(void *ctx, int fd)'),
    memfdCreate: c.func('int memfd_create(const char *name, unsigned int flags)'),
  } as unknown as LibSeccomp;
  return cached;
}

/** Maps an OCI action (+ errnoRet) to a libseccomp action value. */
function actionValue(action: string, errnoRet: number | undefined, path: string): number {
  switch (action) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return SCMP_ACT_KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return SCMP_ACT_KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return SCMP_ACT_TRAP;
    case 'SCMP_ACT_ERRNO':
      return scmpActErrno(errnoRet ?? EPERM);
    case 'SCMP_ACT_TRACE':
      return scmpActTrace(errnoRet ?? EPERM);
    case 'SCMP_ACT_ALLOW':
      return SCMP_ACT_ALLOW;
    case 'SCMP_ACT_LOG':
      return SCMP_ACT_LOG;
    case 'SCMP_ACT_NOTIFY':
      throw new ConfigError(path, 'SCMP_ACT_NOTIFY is not supported by berth (no seccomp user-notification listener); use SCMP_ACT_ERRNO or SCMP_ACT_TRACE');
    default:
      throw new ConfigError(path, `unknown seccomp action "${action}" (expected one of SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_ERRNO, SCMP_ACT_TRACE, SCMP_ACT_ALLOW, SCMP_ACT_LOG)`);
  }
}

function checkErrnoRet(v: unknown, path: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new ConfigError(path, `must be an errno number between 0 and 65535, got ${JSON.stringify(v)}`);
  }
  return v;
}

function u64(v: unknown, path: string): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > 0xffffffffffffffffn) throw new ConfigError(path, `must fit in an unsigned 64-bit integer, got ${v}`);
    return v;
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ConfigError(path, `must be an integer, got ${JSON.stringify(v)}`);
  // Negative values are accepted as their two's-complement (e.g. -1 for an int argument).
  return BigInt.asUintN(64, BigInt(v));
}

/** Packs validated conditions into an array of struct scmp_arg_cmp. */
function packArgs(args: SeccompArg[], path: string): Buffer {
  const buf = Buffer.alloc(args.length * ARG_CMP_SIZE);
  args.forEach((a, i) => {
    const p = `${path}[${i}]`;
    if (a === null || typeof a !== 'object') throw new ConfigError(p, 'must be an object {index, value, valueTwo?, op}');
    if (!Number.isInteger(a.index) || a.index < 0 || a.index >= MAX_ARGS) {
      throw new ConfigError(`${p}.index`, `must be an argument index 0..5, got ${JSON.stringify(a.index)}`);
    }
    const op = OPS[a.op];
    if (op === undefined) {
      throw new ConfigError(`${p}.op`, `unknown comparison "${String(a.op)}" (expected one of ${Object.keys(OPS).join(', ')})`);
    }
    const o = i * ARG_CMP_SIZE;
    buf.writeUInt32LE(a.index, o);
    buf.writeInt32LE(op, o + 4);
    buf.writeBigUInt64LE(u64(a.value, `${p}.value`), o + 8);
    buf.writeBigUInt64LE(a.valueTwo === undefined ? 0n : u64(a.valueTwo, `${p}.valueTwo`), o + 16);
  });
  return buf;
}

/** libseccomp architecture token for an OCI name such as SCMP_ARCH_X86_64 (0 if unknown). */
export function archToken(ociName: string): number {
  if (!/^SCMP_ARCH_[A-Z0-9_]+$/.test(ociName)) return 0;
  return lib().archResolveName(ociName.slice('SCMP_ARCH_'.length).toLowerCase());
}

/** Syscall number for the native architecture, a negative pseudo-number for syscalls that
 * exist only on other architectures, or null when libseccomp does not know the name. */
export function resolveSyscall(name: string): number | null {
  const nr = lib().syscallResolveName(name);
  return nr === -1 ? null : nr;
}

export interface CompileOptions {
  /** JSON path of the profile, used in error messages. Default `linux.seccomp`. */
  path?: string;
}

/**
 * Builds the BPF program for `profile`. Throws ConfigError for malformed input and
 * SeccompError when libseccomp rejects a rule; both name the JSON path at fault.
 */
export function compileSeccomp(profile: Seccomp, opts: CompileOptions = {}): CompiledSeccomp {
  // Compiling Docker's profile costs ~7 ms (plus loading koffi and libseccomp); pods start many
  // containers with the same one, and every `berth run` is a new process (hence the disk cache).
  let key: string | null = null;
  try {
    key = JSON.stringify(profile);
  } catch {
    key = null; // e.g. BigInt values: compile without caching
  }
  const hit = key === null ? undefined : cache.get(key);
  if (hit) return copyOf(hit);
  const disk = key === null ? null : diskCacheFile(key);
  let out = disk ? readCacheFile(disk.file, disk.key) : null;
  if (!out) {
    out = compileUncached(profile, opts.path ?? 'linux.seccomp');
    if (disk) writeCacheFile(disk.file, disk.key, out);
  }
  if (key !== null) {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(key, copyOf(out));
  }
  return out;
}

function copyOf(c: CompiledSeccomp): CompiledSeccomp {
  return { program: Buffer.from(c.program), flags: c.flags, skipped: [...c.skipped] };
}

const CACHE_MAX = 16;
const cache = new Map<string, CompiledSeccomp>();

// ---------- the disk cache ----------

/** Bump when compileUncached's output for a given profile changes: old cache files then miss. */
export const COMPILER_VERSION = 1;
/** BPF_MAXINSNS: the kernel refuses longer classic-BPF programs. */
const MAX_INSNS = 4096;
/**
 * A cache file: MAGIC, then u32 LE lengths of the key, the meta JSON and the program, then those
 * three. The key is the whole string the file name is a hash of (compiler version, arch,
 * libseccomp identity, profile JSON): a hit compares it byte for byte, so the name's hash needs
 * no collision resistance, and no digest (node:crypto, ~2 ms to load) is on the run path.
 */
const MAGIC = Buffer.from('berthbpf2\n');
const HEADER = MAGIC.length + 12;

const hex32 = (v: number): string => (v >>> 0).toString(16).padStart(8, '0');

/**
 * 64 bits (16 hex digits) of two 32-bit multiplicative hashes: a file name for a key and a check
 * on a program's bytes (against a torn or damaged file; the key comparison makes a hit exact).
 */
export function hash64(data: Uint8Array): string {
  const native = addon()?.hash64;
  if (native) {
    const out = new Int32Array(2);
    if (native(data, out) === 0) return hex32(out[0]) + hex32(out[1]);
  }
  return hash64js(data);
}

/** hash64 in JavaScript (~2 ms cold for a 40 KB key; berth.node's is the same in C). */
export function hash64js(data: Uint8Array): string {
  let a = 0x811c9dc5, b = 0x9e3779b9 ^ data.length;
  for (let i = 0; i < data.length; i++) {
    a = Math.imul(a ^ data[i], 0x01000193);
    b = Math.imul(b ^ data[i], 0x5bd1e995);
    b ^= b >>> 13;
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  b = Math.imul(b ^ (b >>> 15), 0xc2b2ae35);
  return hex32(a) + hex32(b ^ (b >>> 16));
}

let cacheDir: string | null = null;
let libIdentity: string | null | undefined;

/**
 * Keep compiled programs in `dir` (created on first write, mode 0700), or stop using a disk
 * cache (null). The engine calls this with <root>/cache/seccomp.
 */
export function setSeccompCacheDir(dir: string | null): void {
  cacheDir = dir;
}

/** The cache file for a profile, or null when the disk cache is off or libseccomp not found. */
export function seccompCacheFile(profileJson: string): string | null {
  return diskCacheFile(profileJson)?.file ?? null;
}

/**
 * What identifies the libseccomp koffi would load, without loading it: the real path (its
 * version, e.g. libseccomp.so.2.5.4), size and mtime of libseccomp.so.2 in the usual library
 * directories. null (no disk cache) when it is not there or LD_LIBRARY_PATH could pick another.
 */
function libseccompIdentity(): string | null {
  if (libIdentity !== undefined) return libIdentity;
  libIdentity = null;
  if (process.env.LD_LIBRARY_PATH || process.env.LD_PRELOAD) return null;
  const triplet = ({ x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', s390x: 's390x-linux-gnu', ppc64: 'powerpc64le-linux-gnu', riscv64: 'riscv64-linux-gnu' } as Record<string, string>)[process.arch];
  const dirs = [...(triplet ? [`/lib/${triplet}`, `/usr/lib/${triplet}`] : []), '/lib64', '/usr/lib64', '/lib', '/usr/lib'];
  for (const d of dirs) {
    try {
      const real = fs.realpathSync(join(d, 'libseccomp.so.2'));
      const st = fs.statSync(real);
      libIdentity = `${real}:${st.size}:${st.mtimeMs}`;
      break;
    } catch { /* not here */ }
  }
  return libIdentity;
}

function diskCacheKey(profileJson: string): Buffer | null {
  if (!cacheDir) return null;
  const lib = libseccompIdentity();
  if (!lib) return null;
  return Buffer.from(`${COMPILER_VERSION}\0${process.arch}\0${lib}\0${profileJson}`, 'utf8');
}

function diskCacheFile(profileJson: string): { file: string; key: Buffer } | null {
  const key = diskCacheKey(profileJson);
  return key && cacheDir ? { file: join(cacheDir, `${hash64(key)}.bpf`), key } : null;
}

interface CacheMeta { flags: number; skipped: string[]; check: string }

/** A cached program, or null when the file is missing, is for another key, or anything about it is wrong. */
function readCacheFile(file: string, key: Buffer): CompiledSeccomp | null {
  let buf: Buffer;
  try { buf = fs.readFileSync(file); } catch { return null; }
  try {
    if (buf.length < HEADER || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return null;
    const keyLen = buf.readUInt32LE(MAGIC.length);
    const metaLen = buf.readUInt32LE(MAGIC.length + 4);
    const progLen = buf.readUInt32LE(MAGIC.length + 8);
    if (progLen === 0 || progLen % 8 !== 0 || progLen / 8 > MAX_INSNS || buf.length !== HEADER + keyLen + metaLen + progLen) return null;
    if (!buf.subarray(HEADER, HEADER + keyLen).equals(key)) return null;
    const meta = JSON.parse(buf.subarray(HEADER + keyLen, HEADER + keyLen + metaLen).toString('utf8')) as CacheMeta;
    const program = Buffer.from(buf.subarray(HEADER + keyLen + metaLen));
    if (!Number.isInteger(meta.flags) || meta.flags < 0 || !Array.isArray(meta.skipped) || meta.skipped.some((n) => typeof n !== 'string')) return null;
    if (hash64(program) !== meta.check) return null;
    return { program, flags: meta.flags, skipped: [...meta.skipped] };
  } catch {
    return null;
  }
}

/** Write a cache file atomically (tmp + rename); a failure only means no cache next time. */
function writeCacheFile(file: string, key: Buffer, c: CompiledSeccomp): void {
  if (c.program.length / 8 > MAX_INSNS) return;
  const meta = Buffer.from(JSON.stringify({ flags: c.flags, skipped: c.skipped, check: hash64(c.program) } satisfies CacheMeta));
  const head = Buffer.alloc(HEADER);
  MAGIC.copy(head);
  head.writeUInt32LE(key.length, MAGIC.length);
  head.writeUInt32LE(meta.length, MAGIC.length + 4);
  head.writeUInt32LE(c.program.length, MAGIC.length + 8);
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`;
  try {
    fs.mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, Buffer.concat([head, key, meta, c.program]), { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch {
    try { fs.rmSync(tmp, { force: true }); } catch { /* never written */ }
  }
}

function compileUncached(profile: Seccomp, base: string): CompiledSeccomp {
  if (profile === null || typeof profile !== 'object') throw new ConfigError(base, 'must be an object');
  if (profile.listenerPath) {
    throw new ConfigError(`${base}.listenerPath`, 'seccomp user notification (listenerPath) is not supported by berth');
  }
  const defErrno = checkErrnoRet(profile.defaultErrnoRet, `${base}.defaultErrnoRet`);
  const defAction = actionValue(profile.defaultAction, defErrno, `${base}.defaultAction`);

  let flags = 0;
  (profile.flags ?? []).forEach((f, i) => {
    const v = FLAGS[f];
    if (v === undefined) {
      throw new ConfigError(`${base}.flags[${i}]`, `unknown seccomp flag "${f}" (expected one of ${Object.keys(FLAGS).join(', ')})`);
    }
    flags |= v;
  });

  const l = lib();
  const ctx = l.init(defAction);
  if (!ctx) throw new SeccompError(`${base}.defaultAction`, 0, `seccomp_init(${profile.defaultAction}) failed`);
  const skipped: string[] = [];
  try {
    (profile.architectures ?? []).forEach((arch, i) => {
      const p = `${base}.architectures[${i}]`;
      const tok = typeof arch === 'string' ? archToken(arch) : 0;
      if (!tok) throw new ConfigError(p, `unknown seccomp architecture ${JSON.stringify(arch)} (expected e.g. SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64)`);
      const rc = l.archAdd(ctx, tok);
      if (rc < 0 && rc !== -EEXIST) throw new SeccompError(p, -rc, `seccomp_arch_add(${arch}) failed (architectures of different byte order cannot share a filter)`);
    });

    (profile.syscalls ?? []).forEach((sc, i) => {
      const p = `${base}.syscalls[${i}]`;
      if (sc === null || typeof sc !== 'object') throw new ConfigError(p, 'must be an object {names, action, errnoRet?, args?}');
      if (!Array.isArray(sc.names) || sc.names.length === 0) throw new ConfigError(`${p}.names`, 'must be a non-empty list of syscall names');
      const errnoRet = checkErrnoRet(sc.errnoRet, `${p}.errnoRet`);
      const action = actionValue(sc.action, errnoRet, `${p}.action`);
      const args = sc.args ?? [];
      if (!Array.isArray(args)) throw new ConfigError(`${p}.args`, 'must be a list');
      if (args.length > MAX_ARGS) throw new ConfigError(`${p}.args`, `at most ${MAX_ARGS} conditions are allowed, got ${args.length}`);
      const packed = packArgs(args, `${p}.args`);
      // Same index twice: libseccomp cannot AND them; runc adds one rule per condition.
      const indices = args.map((a) => a.index);
      const perCondition = new Set(indices).size !== indices.length;
      const ruleArgs: Array<{ buf: Buffer | null; n: number }> = perCondition
        ? args.map((_, k) => ({ buf: packed.subarray(k * ARG_CMP_SIZE, (k + 1) * ARG_CMP_SIZE), n: 1 }))
        : [{ buf: args.length ? packed : null, n: args.length }];
      // A rule that repeats the default action adds nothing (libseccomp refuses it with EACCES).
      const sameAsDefault = action === defAction;

      sc.names.forEach((name, j) => {
        const np = `${p}.names[${j}]`;
        if (typeof name !== 'string' || name === '') throw new ConfigError(np, `must be a syscall name, got ${JSON.stringify(name)}`);
        const nr = l.syscallResolveName(name);
        if (nr === -1) {
          if (!skipped.includes(name)) skipped.push(name);
          return;
        }
        if (sameAsDefault) return;
        for (const r of ruleArgs) {
          const rc = l.ruleAddArray(ctx, action, nr, r.n, r.buf);
          if (rc === -EACCES) continue; // equals the default action
          if (rc < 0) throw new SeccompError(np, -rc, `seccomp_rule_add_array for syscall "${name}" (${sc.action}${args.length ? ` with ${args.length} condition(s)` : ''}) failed`);
        }
      });
    });

    return { program: exportProgram(l, ctx, base), flags, skipped };
  } finally {
    l.release(ctx);
  }
}

function exportProgram(l: LibSeccomp, ctx: Ctx, path: string): Buffer {
  const fd = l.memfdCreate('berth-seccomp', MFD_CLOEXEC);
  if (fd < 0) throw new SeccompError(path, koffi().errno(), 'memfd_create for the BPF export failed');
  try {
    const rc = l.exportBpf(ctx, fd);
    if (rc < 0) throw new SeccompError(path, -rc, 'seccomp_export_bpf failed');
    const size = fs.fstatSync(fd).size;
    const out = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, out, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    if (off !== size || size === 0 || size % 8 !== 0) {
      throw new SeccompError(path, 0, `seccomp_export_bpf produced a malformed program (${off} of ${size} bytes)`);
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
