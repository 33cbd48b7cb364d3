/**
 * Device rules on cgroup v2: there is no devices.allow file, so (as runc and crun do) the OCI
 * linux.resources.devices list is compiled into a BPF_PROG_TYPE_CGROUP_DEVICE program, loaded with
 * bpf(2) and attached to the container's cgroup2 directory (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI).
 * The kernel runs it on every open/mknod of a device node by a process in that cgroup (or below);
 * 1 allows, 0 makes the syscall fail with EPERM. The attachment lives as long as the cgroup
 * directory: no pinning, the program fd is closed after attach.
 *
 * Semantics (OCI / runc's cgroup v1 emulation): the list starts from deny-all and the LAST rule that
 * matches a device decides, per access bit. A request (e.g. open O_RDWR = r+w) is allowed only when
 * every bit it asks for is allowed by the last rule covering that bit. Compiled as: walk the rules
 * from last to first; R3 holds the requested bits not yet decided; a matching deny rule that covers
 * one of them returns 0; a matching allow rule clears the bits it covers and returns 1 when none are
 * left; falling off the end returns 0. Rules that can no longer change anything (shadowed by a later
 * wildcard rule) are not emitted, so the verifier never sees unreachable instructions.
 *
 * Context (struct bpf_cgroup_dev_ctx): u32 access_type = (access << 16) | type at offset 0, u32 major
 * at 4, u32 minor at 8. type: BPF_DEVCG_DEV_BLOCK=1, CHAR=2; access: MKNOD=1, READ=2, WRITE=4.
 *
 * Updates: attach the new program, then detach every other program attached directly to the same
 * directory (found with BPF_PROG_QUERY). In between both run and both must allow, so an update is
 * never briefly looser than either rule set.
 */
import fs from 'node:fs';
import koffi from 'koffi';
import { BerthError, ConfigError, errnoName } from '../errors.js';
import type { DeviceCgroup } from '../oci/spec.js';
import { deviceRuleToV1 } from './convert.js';

export const BPF_DEVCG_ACC_MKNOD = 1;
export const BPF_DEVCG_ACC_READ = 2;
export const BPF_DEVCG_ACC_WRITE = 4;
export const BPF_DEVCG_DEV_BLOCK = 1;
export const BPF_DEVCG_DEV_CHAR = 2;
const ACC_ALL = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;

/** statfs f_type of a cgroup2 filesystem. */
export const CGROUP2_SUPER_MAGIC = 0x63677270;

/** One eBPF instruction (struct bpf_insn, 8 bytes). */
export interface BpfInsn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

/** A compiled device filter. */
export interface DeviceFilterProgram {
  insns: BpfInsn[];
  /** The rules allow every access to every device: no program is needed. */
  allowAll: boolean;
}

/** bpf(2) failed: op names the command, errno the cause; verifierLog is set for a rejected program. */
export class DeviceFilterError extends BerthError {
  readonly errno: number;
  readonly op: string;
  readonly verifierLog: string;
  constructor(op: string, errno: number, context: string, verifierLog = '') {
    const log = verifierLog.trim();
    super('EDEVICEFILTER', `${context}: bpf(${op}): ${errnoName(errno)} (errno ${errno})${log ? `\nverifier log:\n${log}` : ''}`);
    this.errno = errno;
    this.op = op;
    this.verifierLog = verifierLog;
  }
}

// ---- instruction encoding -------------------------------------------------------------------------

const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5;
const OP = {
  LDXW: 0x61, // BPF_LDX | BPF_MEM | BPF_W
  AND32: 0x54, // BPF_ALU | BPF_AND | BPF_K
  RSH32: 0x74, // BPF_ALU | BPF_RSH | BPF_K
  MOV32: 0xb4, // BPF_ALU | BPF_MOV | BPF_K
  JA: 0x05, // BPF_JMP | BPF_JA
  JEQ: 0x15, // BPF_JMP | BPF_JEQ | BPF_K
  JNE: 0x55, // BPF_JMP | BPF_JNE | BPF_K
  JSET: 0x45, // BPF_JMP | BPF_JSET | BPF_K
  EXIT: 0x95, // BPF_JMP | BPF_EXIT
} as const;
export const BPF_OPCODES = OP;

const ins = (code: number, dst = 0, src = 0, off = 0, imm = 0): BpfInsn => ({ code, dst, src, off, imm });

/** struct bpf_insn array, little-endian (x86_64, arm64). */
export function encodeInsns(insns: BpfInsn[]): Buffer {
  const buf = Buffer.alloc(insns.length * 8);
  insns.forEach((i, n) => {
    buf.writeUInt8(i.code, n * 8);
    buf.writeUInt8((i.src << 4) | i.dst, n * 8 + 1);
    buf.writeInt16LE(i.off, n * 8 + 2);
    buf.writeInt32LE(i.imm, n * 8 + 4);
  });
  return buf;
}

// ---- compiler ---------------------------------------------------------------------------------------

interface Rule {
  types: number[]; // BPF_DEVCG_DEV_* it covers
  typeImm: number | null; // null: any type
  major: number | null;
  minor: number | null;
  access: number;
  allow: boolean;
}

function normalize(rule: DeviceCgroup, index: number): Rule {
  deviceRuleToV1(rule, index); // validates type, access, major/minor
  const num = (n: number | null | undefined, what: string): number | null => {
    if (n === undefined || n === null || n === -1) return null;
    if (n > 0x7fffffff) throw new ConfigError(`linux.resources.devices[${index}].${what}`, `${n} is larger than any device number`);
    return n;
  };
  const type = rule.type ?? 'a';
  let access = 0;
  for (const ch of rule.access ?? 'rwm') access |= ch === 'r' ? BPF_DEVCG_ACC_READ : ch === 'w' ? BPF_DEVCG_ACC_WRITE : BPF_DEVCG_ACC_MKNOD;
  const typeImm = type === 'b' ? BPF_DEVCG_DEV_BLOCK : type === 'c' ? BPF_DEVCG_DEV_CHAR : null;
  return {
    types: typeImm === null ? [BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR] : [typeImm],
    typeImm, major: num(rule.major, 'major'), minor: num(rule.minor, 'minor'), access, allow: rule.allow,
  };
}

type Target = 'next' | 'allow' | 'deny';
interface Pending { insn: BpfInsn; target?: Target }

/**
 * Compile OCI device rules to a cgroup device program (see the header for the semantics). Throws
 * ConfigError for a malformed rule, naming its index.
 */
export function compileDeviceFilter(rules: DeviceCgroup[]): DeviceFilterProgram {
  const norm = rules.map((r, i) => normalize(r, i));
  const out: Pending[] = [
    { insn: ins(OP.LDXW, R2, R1, 0) }, // R2 = access_type
    { insn: ins(OP.AND32, R2, 0, 0, 0xffff) }, // R2 = type
    { insn: ins(OP.LDXW, R3, R1, 0) },
    { insn: ins(OP.RSH32, R3, 0, 0, 16) }, // R3 = requested access bits
    { insn: ins(OP.LDXW, R4, R1, 4) }, // R4 = major
    { insn: ins(OP.LDXW, R5, R1, 8) }, // R5 = minor
  ];
  // Access bits per type that some later (already emitted) wildcard rule has decided for every device.
  const undecided = new Map<number, number>([[BPF_DEVCG_DEV_BLOCK, ACC_ALL], [BPF_DEVCG_DEV_CHAR, ACC_ALL]]);
  let denyEmitted = false;
  let fallsThrough = true;
  // Block boundaries: indexes into `out` where each rule's block starts (for 'next' jumps).
  const blockStarts: number[] = [];
  for (let i = norm.length - 1; i >= 0; i--) {
    const r = norm[i];
    if (r.types.every((t) => ((undecided.get(t) ?? 0) & r.access) === 0)) continue; // shadowed
    const wildcardDevice = r.major === null && r.minor === null;
    const unconditional = r.typeImm === null && wildcardDevice;
    blockStarts.push(out.length);
    if (unconditional && r.access === ACC_ALL) {
      // Decides everything that is left: nothing after it runs.
      if (r.allow) {
        out.push({ insn: ins(OP.MOV32, R0, 0, 0, 1) }, { insn: ins(OP.EXIT) });
        fallsThrough = false;
      } else {
        denyEmitted = true; // falling through to the end denies
      }
      for (const t of r.types) undecided.set(t, 0);
      break;
    }
    if (r.typeImm !== null) out.push({ insn: ins(OP.JNE, R2, 0, 0, r.typeImm), target: 'next' });
    if (r.major !== null) out.push({ insn: ins(OP.JNE, R4, 0, 0, r.major), target: 'next' });
    if (r.minor !== null) out.push({ insn: ins(OP.JNE, R5, 0, 0, r.minor), target: 'next' });
    if (r.allow) {
      if (r.access === ACC_ALL) {
        out.push({ insn: ins(OP.JA), target: 'allow' });
      } else {
        out.push({ insn: ins(OP.AND32, R3, 0, 0, ~r.access) }, { insn: ins(OP.JEQ, R3, 0, 0, 0), target: 'allow' });
      }
    } else {
      denyEmitted = true;
      if (r.access === ACC_ALL) out.push({ insn: ins(OP.JA), target: 'deny' });
      else out.push({ insn: ins(OP.JSET, R3, 0, 0, r.access), target: 'deny' });
    }
    if (wildcardDevice) for (const t of r.types) undecided.set(t, (undecided.get(t) ?? 0) & ~r.access);
  }
  const allowAll = [...undecided.values()].every((u) => u === 0) && !denyEmitted;
  // A last unconditional "ja deny" is the same as falling off the end.
  const last = out[out.length - 1];
  if (fallsThrough && last.target === 'deny' && last.insn.code === OP.JA) {
    out.pop();
    if (blockStarts[blockStarts.length - 1] === out.length) blockStarts.pop();
  }
  const end = out.length;
  const refs = (t: Target): boolean => out.some((p) => p.target === t);
  const denyAt = end;
  const needDeny = fallsThrough || refs('deny');
  const allowAt = needDeny ? end + 2 : end;
  const insns: BpfInsn[] = out.map((p, idx) => {
    if (!p.target) return p.insn;
    let to: number;
    if (p.target === 'deny') to = denyAt;
    else if (p.target === 'allow') to = allowAt;
    else to = blockStarts.find((s) => s > idx) ?? denyAt; // no later block: the default (deny)
    return { ...p.insn, off: to - idx - 1 };
  });
  if (needDeny) insns.push(ins(OP.MOV32, R0, 0, 0, 0), ins(OP.EXIT));
  if (refs('allow')) insns.push(ins(OP.MOV32, R0, 0, 0, 1), ins(OP.EXIT));
  for (const i of insns) {
    if (i.off > 0x7fff) throw new BerthError('EDEVICEFILTER', `linux.resources.devices: too many rules (${rules.length}) for one program`);
  }
  return { insns, allowAll };
}

/**
 * Run a compiled program on one request, as the kernel would (only the opcodes compileDeviceFilter
 * emits). For tests and diagnostics: `access` is a string of r, w, m.
 */
export function evalDeviceFilter(insns: BpfInsn[], req: { type: 'b' | 'c'; major: number; minor: number; access: string }): 0 | 1 {
  let acc = 0;
  for (const ch of req.access) acc |= ch === 'r' ? BPF_DEVCG_ACC_READ : ch === 'w' ? BPF_DEVCG_ACC_WRITE : BPF_DEVCG_ACC_MKNOD;
  const ctx = [((acc << 16) | (req.type === 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR)) >>> 0, req.major >>> 0, req.minor >>> 0];
  const reg = new Array<number>(11).fill(0);
  for (let pc = 0, steps = 0; pc < insns.length && steps < 100_000; pc++, steps++) {
    const i = insns[pc];
    switch (i.code) {
      case OP.LDXW:
        reg[i.dst] = ctx[i.off / 4];
        break;
      case OP.AND32:
        reg[i.dst] = (reg[i.dst] & i.imm) >>> 0;
        break;
      case OP.RSH32:
        reg[i.dst] = reg[i.dst] >>> i.imm;
        break;
      case OP.MOV32:
        reg[i.dst] = i.imm >>> 0;
        break;
      case OP.JA:
        pc += i.off;
        break;
      case OP.JEQ:
        if (reg[i.dst] === i.imm >>> 0) pc += i.off;
        break;
      case OP.JNE:
        if (reg[i.dst] !== i.imm >>> 0) pc += i.off;
        break;
      case OP.JSET:
        if ((reg[i.dst] & i.imm) !== 0) pc += i.off;
        break;
      case OP.EXIT:
        return reg[R0] === 1 ? 1 : 0;
      default:
        throw new BerthError('EDEVICEFILTER', `evalDeviceFilter: opcode 0x${i.code.toString(16)} at ${pc} is not one the compiler emits`);
    }
  }
  throw new BerthError('EDEVICEFILTER', 'evalDeviceFilter: the program ran off its end');
}

// ---- bpf(2) -----------------------------------------------------------------------------------------

/** bpf(2) syscall number for this architecture. */
function sysBpf(): number {
  if (process.arch === 'x64') return 321;
  if (process.arch === 'arm64') return 280;
  throw new DeviceFilterError('syscall', 38, `cgroup device programs: no bpf(2) syscall number known for ${process.arch}`);
}
const BPF_PROG_LOAD = 5;
const BPF_PROG_ATTACH = 8;
const BPF_PROG_DETACH = 9;
const BPF_PROG_GET_FD_BY_ID = 13;
const BPF_OBJ_GET_INFO_BY_FD = 15;
const BPF_PROG_QUERY = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
const BPF_CGROUP_DEVICE = 6;
const BPF_F_ALLOW_MULTI = 2;
const ATTR_SIZE = 128;
const EPERM = 1, ENOENT = 2, ENOSPC = 28;

interface Sys {
  bpf: (nr: number, cmd: number, attr: bigint, size: number) => number;
  close: (fd: number) => number;
}
let sys: Sys | null = null;
function lib(): Sys {
  if (sys) return sys;
  const c = koffi.load('libc.so.6');
  sys = {
    bpf: c.func('long syscall(long nr, long cmd, void *attr, unsigned int size)'),
    close: c.func('int close(int fd)'),
  } as unknown as Sys;
  return sys;
}

/** Native memory (bpf_attr points at it by address), freed by the caller with free(). */
class NativeBuf {
  readonly ptr: bigint;
  readonly view: DataView;
  readonly bytes: Uint8Array;
  constructor(size: number) {
    this.ptr = koffi.alloc('uint8', size) as bigint;
    const ab = koffi.view(this.ptr, size);
    this.view = new DataView(ab);
    this.bytes = new Uint8Array(ab);
    this.bytes.fill(0);
  }
  get address(): bigint {
    return koffi.address(this.ptr);
  }
  free(): void {
    koffi.free(this.ptr);
  }
}

function withBufs<T>(sizes: number[], fn: (...bufs: NativeBuf[]) => T): T {
  const bufs: NativeBuf[] = [];
  try {
    for (const s of sizes) bufs.push(new NativeBuf(s));
    return fn(...bufs);
  } finally {
    for (const b of bufs) b.free();
  }
}

/** bpf(cmd, attr); returns the result or -errno. */
function bpf(cmd: number, attr: NativeBuf): number {
  const rc = lib().bpf(sysBpf(), cmd, attr.ptr, ATTR_SIZE);
  return rc < 0 ? -koffi.errno() : rc;
}

function closeFd(fd: number): void {
  if (fd >= 0) lib().close(fd);
}

/** True when `dir` is on a cgroup2 filesystem (statfs magic), i.e. a program can be attached to it. */
export function isCgroup2Dir(dir: string): boolean {
  try {
    return fs.statfsSync(dir).type === CGROUP2_SUPER_MAGIC;
  } catch {
    return false;
  }
}

function openCgroupDir(dir: string): number {
  try {
    return fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new DeviceFilterError('open', -(e.errno ?? -ENOENT), `open cgroup directory ${dir}`);
  }
}

/** Load a compiled program; returns its fd. On rejection, reloads with the verifier log to report it. */
export function loadDeviceFilter(prog: DeviceFilterProgram, name = 'berth_devices'): number {
  const code = encodeInsns(prog.insns);
  const load = (logSize: number): { fd: number; log: string } =>
    withBufs([ATTR_SIZE, code.length, 16, Math.max(logSize, 1)], (attr, insns, license, log) => {
      insns.bytes.set(code);
      license.bytes.set(Buffer.from('Apache\0'));
      const v = attr.view;
      v.setUint32(0, BPF_PROG_TYPE_CGROUP_DEVICE, true);
      v.setUint32(4, prog.insns.length, true);
      v.setBigUint64(8, insns.address, true);
      v.setBigUint64(16, license.address, true);
      if (logSize > 0) {
        v.setUint32(24, 1, true); // log_level
        v.setUint32(28, logSize, true);
        v.setBigUint64(32, log.address, true);
      }
      attr.bytes.set(Buffer.from(name.slice(0, 15)), 48); // prog_name (NUL from the zero fill)
      const fd = bpf(BPF_PROG_LOAD, attr);
      const end = log.bytes.indexOf(0);
      return { fd, log: logSize > 0 ? Buffer.from(log.bytes.subarray(0, end < 0 ? logSize : end)).toString('utf8') : '' };
    });
  const first = load(0);
  if (first.fd >= 0) return first.fd;
  const errno = -first.fd;
  // EPERM/ENOSYS/EINVAL-for-type are not the verifier speaking; retry with a log otherwise.
  const withLog = errno === EPERM ? first : load(1 << 20);
  if (withLog.fd >= 0) return withLog.fd; // (a transient failure)
  throw new DeviceFilterError('BPF_PROG_LOAD', errno, `load the cgroup device program (${prog.insns.length} instructions)`, withLog.log);
}

/** Ids of the device programs attached directly to the cgroup open at dirFd. */
function queryIds(dirFd: number, dir: string): number[] {
  for (let cap = 64; ; cap *= 4) {
    const got = withBufs([ATTR_SIZE, cap * 4], (attr, ids) => {
      attr.view.setUint32(0, dirFd, true);
      attr.view.setUint32(4, BPF_CGROUP_DEVICE, true);
      attr.view.setBigUint64(16, ids.address, true);
      attr.view.setUint32(24, cap, true);
      const rc = bpf(BPF_PROG_QUERY, attr);
      const count = attr.view.getUint32(24, true);
      if (rc === -ENOSPC) return null;
      if (rc < 0) throw new DeviceFilterError('BPF_PROG_QUERY', -rc, `list the device programs attached to ${dir}`);
      return Array.from({ length: Math.min(count, cap) }, (_, i) => ids.view.getUint32(i * 4, true));
    });
    if (got) return got;
  }
}

/** Ids of the device programs attached directly to a cgroup2 directory (not inherited ones). */
export function queryDeviceFilters(dir: string): number[] {
  const dirFd = openCgroupDir(dir);
  try {
    return queryIds(dirFd, dir);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** The kernel's id of a loaded program. */
function progId(fd: number): number {
  return withBufs([ATTR_SIZE, 256], (attr, info) => {
    attr.view.setUint32(0, fd, true);
    attr.view.setUint32(4, 256, true);
    attr.view.setBigUint64(8, info.address, true);
    const rc = bpf(BPF_OBJ_GET_INFO_BY_FD, attr);
    if (rc < 0) throw new DeviceFilterError('BPF_OBJ_GET_INFO_BY_FD', -rc, 'read the id of the device program');
    return info.view.getUint32(4, true);
  });
}

function attach(op: number, dirFd: number, progFd: number, flags: number): number {
  return withBufs([ATTR_SIZE], (attr) => {
    attr.view.setUint32(0, dirFd, true);
    attr.view.setUint32(4, progFd, true);
    attr.view.setUint32(8, BPF_CGROUP_DEVICE, true);
    attr.view.setUint32(12, flags, true);
    return bpf(op, attr);
  });
}

/** Detach one program, by id, from the cgroup open at dirFd. False when it was already gone. */
function detachId(dirFd: number, id: number, dir: string): boolean {
  const fd = withBufs([ATTR_SIZE], (attr) => {
    attr.view.setUint32(0, id, true);
    return bpf(BPF_PROG_GET_FD_BY_ID, attr);
  });
  if (fd === -ENOENT) return false;
  if (fd < 0) throw new DeviceFilterError('BPF_PROG_GET_FD_BY_ID', -fd, `open device program ${id} attached to ${dir}`);
  try {
    const rc = attach(BPF_PROG_DETACH, dirFd, fd, 0);
    if (rc === -ENOENT) return false;
    if (rc < 0) throw new DeviceFilterError('BPF_PROG_DETACH', -rc, `detach device program ${id} from ${dir}`);
    return true;
  } finally {
    closeFd(fd);
  }
}

export interface AttachResult {
  /** Kernel id of the program now attached (0 when the rules allow everything and none is). */
  id: number;
  /** Ids of the programs it replaced (detached). */
  replaced: number[];
}

/**
 * Make `rules` the device policy of the cgroup2 directory `dir`: compile, load, attach with
 * BPF_F_ALLOW_MULTI, then detach the programs that were attached there before. Allow-all rules
 * attach nothing (and detach the old ones). Throws DeviceFilterError (errno, verifier log) or
 * ConfigError; on failure the previous programs stay attached.
 */
export function setDeviceFilter(dir: string, rules: DeviceCgroup[]): AttachResult {
  const prog = compileDeviceFilter(rules);
  const dirFd = openCgroupDir(dir);
  try {
    const before = queryIds(dirFd, dir);
    let id = 0;
    if (!prog.allowAll) {
      const progFd = loadDeviceFilter(prog);
      try {
        id = progId(progFd);
        const rc = attach(BPF_PROG_ATTACH, dirFd, progFd, BPF_F_ALLOW_MULTI);
        if (rc < 0) throw new DeviceFilterError('BPF_PROG_ATTACH', -rc, `attach the device program to ${dir}`);
      } finally {
        closeFd(progFd); // the attachment holds its own reference
      }
    }
    const replaced = before.filter((old) => old !== id && detachId(dirFd, old, dir));
    return { id, replaced };
  } finally {
    fs.closeSync(dirFd);
  }
}

/** True when this process runs in a user namespace other than the initial one. */
export function inUserNamespace(): boolean {
  try {
    const map = fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return !(map.length === 3 && map[0] === '0' && map[1] === '0' && map[2] === '4294967295');
  } catch {
    return false;
  }
}

/** True while the kernel still holds a BPF program with this id (e.g. to check nothing leaked). */
export function programExists(id: number): boolean {
  const fd = withBufs([ATTR_SIZE], (attr) => {
    attr.view.setUint32(0, id, true);
    return bpf(BPF_PROG_GET_FD_BY_ID, attr);
  });
  if (fd === -ENOENT) return false;
  if (fd < 0) throw new DeviceFilterError('BPF_PROG_GET_FD_BY_ID', -fd, `look up BPF program ${id}`);
  closeFd(fd);
  return true;
}
