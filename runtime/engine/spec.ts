/**
 * Image config + `berth run` options → OCI runtime spec (config.json), following Docker's rules:
 * Entrypoint/Cmd (exec form; `--entrypoint` resets the image's Cmd), Env merge, WorkingDir,
 * User `name|uid[:group|gid]` resolved from the image's /etc/passwd and /etc/group
 * (supplementary groups only when no group is given, as runc's GetExecUser), Docker's 14 default
 * capabilities and default seccomp profile, masked/readonly paths, /dev/shm 64m, resources and
 * rlimits (never above the host's hard limit). Pure apart from reading the host's rlimits.
 */
import { ConfigError } from '../errors.js';
import { ALL_CAPS, DEFAULT_CAPS, normalizeCapName, capNumber } from '../oci/caps.js';
import { defaultSeccompProfile } from '../oci/seccomp-default.js';
import { currentHardLimit, defaultRlimits, RLIMITS } from '../oci/rlimits.js';
import type { DeviceCgroup, LinuxResources, Mount, Namespace, Rlimit, Spec, User } from '../oci/spec.js';
import { hostDevices } from './host-devices.js';

/** The parts of an OCI image config that matter for running it. */
export interface ImageRunConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
  Volumes?: Record<string, unknown> | null;
  ExposedPorts?: Record<string, unknown> | null;
}

export interface VolumeMount { source: string; destination: string; readonly: boolean }
export interface TmpfsMount { destination: string; options: string[] }

/** Run options, already parsed (see the parse* helpers). */
export interface RunSpecOptions {
  /** Arguments after the image on the command line. */
  args?: string[];
  /** `--entrypoint`: '' clears the image's entrypoint; undefined keeps it. */
  entrypoint?: string;
  env?: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  tty?: boolean;
  readOnly?: boolean;
  privileged?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  noNewPrivileges?: boolean;
  seccompUnconfined?: boolean;
  resources?: LinuxResources;
  ulimits?: Rlimit[];
  volumes?: VolumeMount[];
  tmpfs?: TmpfsMount[];
  /** Host path of the init binary to bind at /dev/init and run as pid 1 (--init). */
  initPath?: string;
}

export interface SpecContext {
  /** Absolute rootfs path (mounted overlay). */
  rootfs: string;
  cgroupsPath: string;
  /** Contents of the image's /etc/passwd and /etc/group ('' when missing). */
  passwd: string;
  group: string;
  /** Host files bind-mounted at /etc/hosts, /etc/hostname, /etc/resolv.conf (omitted = none). */
  hostsFile?: string;
  hostnameFile?: string;
  resolvFile?: string;
  /** 'new' = own netns, 'host' = share the host's, or a netns file path to join. */
  network: 'new' | 'host' | { path: string };
  /** Default hostname (Docker: the short container id). */
  defaultHostname: string;
}

export const DOCKER_MASKED_PATHS: readonly string[] = Object.freeze([
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
]);
export const DOCKER_READONLY_PATHS: readonly string[] = Object.freeze([
  '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger',
]);
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** runc's default allowed devices (plus deny-all first). */
const DEFAULT_DEVICE_RULES: DeviceCgroup[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', major: null, minor: null, access: 'm' },
  { allow: true, type: 'b', major: null, minor: null, access: 'm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' },
  { allow: true, type: 'c', major: 136, minor: null, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' },
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' },
];

// ---------- command ----------

/** Docker's Entrypoint/Cmd rule: argv = entrypoint ++ (args || (entrypoint overridden ? [] : image Cmd)). */
export function resolveCommand(img: ImageRunConfig, args: string[] | undefined, entrypoint: string | undefined): string[] {
  let ep = img.Entrypoint ?? [];
  let cmd = img.Cmd ?? [];
  if (entrypoint !== undefined) {
    ep = entrypoint === '' ? [] : [entrypoint];
    cmd = [];
  }
  if (args && args.length) cmd = args;
  const argv = [...ep, ...cmd];
  if (!argv.length) throw new ConfigError('command', 'no command specified: the image has no Entrypoint or Cmd; give one after the image name');
  return argv;
}

// ---------- env ----------

/** Image Env, then -e values (KEY=VAL replaces; bare KEY takes the host's value if set). */
export function mergeEnv(image: string[], overrides: string[], hostEnv: NodeJS.ProcessEnv = process.env): string[] {
  const out = new Map<string, string>();
  const put = (kv: string): void => {
    const i = kv.indexOf('=');
    if (i === 0) throw new ConfigError('env', `"${kv}": variable name is empty`);
    if (i < 0) {
      const v = hostEnv[kv];
      if (v !== undefined) out.set(kv, `${kv}=${v}`);
      return;
    }
    out.set(kv.slice(0, i), kv);
  };
  for (const kv of image) put(kv);
  for (const kv of overrides) put(kv);
  if (!out.has('PATH')) out.set('PATH', DEFAULT_PATH);
  return [...out.values()];
}

/** Parse an --env-file: KEY=VAL or KEY lines; # comments and blank lines skipped. */
export function parseEnvFile(text: string): string[] {
  return text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() && !l.trimStart().startsWith('#'));
}

// ---------- user ----------

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || line.startsWith('#')) continue;
    const uid = Number(f[2]), gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    out.push({ name: f[0], uid, gid, home: f[5] });
  }
  return out;
}

function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    out.push({ name: f[0], gid, members: f[3].split(',').map((s) => s.trim()).filter(Boolean) });
  }
  return out;
}

const isNum = (s: string): boolean => /^\d+$/.test(s);

export interface ResolvedUser extends User { home: string }

/** Resolve `user[:group]` against passwd/group text as runc's GetExecUser does. */
export function resolveUser(spec: string | undefined, passwd: string, group: string): ResolvedUser {
  const s = spec ?? '';
  const [u, g] = s.includes(':') ? [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1)] : [s, ''];
  const users = parsePasswd(passwd);
  const groups = parseGroup(group);
  let uid = 0, gid = 0, home = '/', name = '';
  if (u === '') {
    const root = users.find((e) => e.uid === 0);
    if (root) { gid = root.gid; home = root.home; name = root.name; }
  } else {
    const m = users.find((e) => e.name === u) ?? (isNum(u) ? users.find((e) => e.uid === Number(u)) : undefined);
    if (m) { uid = m.uid; gid = m.gid; home = m.home; name = m.name; }
    else if (isNum(u)) { uid = Number(u); }
    else throw new ConfigError('user', `unable to find user ${u}: no matching entries in the image's /etc/passwd`);
  }
  const additionalGids: number[] = [];
  if (g !== '') {
    const m = groups.find((e) => e.name === g) ?? (isNum(g) ? groups.find((e) => e.gid === Number(g)) : undefined);
    if (m) gid = m.gid;
    else if (isNum(g)) gid = Number(g);
    else throw new ConfigError('user', `unable to find group ${g}: no matching entries in the image's /etc/group`);
  } else if (name) {
    for (const e of groups) if (e.gid !== gid && e.members.includes(name) && !additionalGids.includes(e.gid)) additionalGids.push(e.gid);
  }
  for (const v of [uid, gid]) if (v > 2 ** 31 - 1) throw new ConfigError('user', `"${s}": id ${v} is out of range`);
  const out: ResolvedUser = { uid, gid, home };
  if (additionalGids.length) out.additionalGids = additionalGids;
  return out;
}

// ---------- parsing helpers ----------

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4 };

/** Docker's RAMInBytes: `<n>[b|k|m|g|t][b]`, case-insensitive. */
export function parseBytes(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(v.trim());
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new ConfigError(flag, `invalid size "${v}": want a number with an optional unit b, k, m, g (e.g. 64m)`);
  return Math.floor(Number(m[1]) * unit);
}

/** Resources from docker's flags; throws ConfigError naming the flag. */
export function parseResources(o: { memory?: string; memorySwap?: string; cpus?: string; cpuShares?: string; cpusetCpus?: string; pidsLimit?: string }): LinuxResources {
  const r: LinuxResources = {};
  if (o.memory !== undefined) {
    const limit = parseBytes('--memory', o.memory);
    if (limit < 6 * 1024 * 1024) throw new ConfigError('--memory', `"${o.memory}" is below the minimum of 6m`);
    r.memory = { limit };
    if (o.memorySwap === undefined) r.memory.swap = limit * 2;
  }
  if (o.memorySwap !== undefined) {
    if (!r.memory) throw new ConfigError('--memory-swap', 'needs --memory as well');
    const swap = o.memorySwap === '-1' ? -1 : parseBytes('--memory-swap', o.memorySwap);
    if (swap !== -1 && swap < r.memory.limit!) throw new ConfigError('--memory-swap', `"${o.memorySwap}" must be at least --memory (${o.memory})`);
    r.memory.swap = swap;
  }
  if (o.cpus !== undefined) {
    const n = Number(o.cpus);
    if (!/^\d*\.?\d+$/.test(o.cpus) || !(n > 0)) throw new ConfigError('--cpus', `invalid value "${o.cpus}": want a positive number like 0.5`);
    r.cpu = { ...(r.cpu ?? {}), period: 100000, quota: Math.round(n * 100000) };
  }
  if (o.cpuShares !== undefined) {
    if (!isNum(o.cpuShares) || Number(o.cpuShares) < 2) throw new ConfigError('--cpu-shares', `invalid value "${o.cpuShares}": want an integer ≥ 2`);
    r.cpu = { ...(r.cpu ?? {}), shares: Number(o.cpuShares) };
  }
  if (o.cpusetCpus !== undefined) {
    if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(o.cpusetCpus)) throw new ConfigError('--cpuset-cpus', `invalid value "${o.cpusetCpus}": want a list like 0-1,3`);
    r.cpu = { ...(r.cpu ?? {}), cpus: o.cpusetCpus };
  }
  if (o.pidsLimit !== undefined) {
    if (!/^-?\d+$/.test(o.pidsLimit)) throw new ConfigError('--pids-limit', `invalid value "${o.pidsLimit}": want an integer (-1 = unlimited)`);
    r.pids = { limit: Number(o.pidsLimit) <= 0 ? -1 : Number(o.pidsLimit) };
  }
  return r;
}

/** `--ulimit name=soft[:hard]` (Docker's names: nofile, nproc, core, ...). */
export function parseUlimit(v: string): Rlimit {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(v);
  if (!m) throw new ConfigError('--ulimit', `"${v}": want name=soft[:hard], e.g. nofile=1024:2048`);
  const type = `RLIMIT_${m[1].toUpperCase()}`;
  if (RLIMITS[type] === undefined) throw new ConfigError('--ulimit', `"${m[1]}" is not a known limit (nofile, nproc, core, memlock, stack, ...)`);
  const conv = (s: string): number => (Number(s) < 0 ? 2 ** 64 - 1 : Number(s));
  const soft = conv(m[2]);
  const hard = m[3] !== undefined ? conv(m[3]) : soft;
  if (soft > hard) throw new ConfigError('--ulimit', `"${v}": soft limit ${m[2]} is above the hard limit ${m[3]}`);
  return { type, soft, hard };
}

/** `-v src:dst[:ro|rw]`; src absolute = bind, else a volume name. */
export function parseVolumeSpec(v: string): { source: string; destination: string; readonly: boolean; named: boolean } {
  const parts = v.split(':');
  let mode = '';
  if (parts.length === 3) mode = parts.pop()!;
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new ConfigError('--volume', `"${v}": want SOURCE:DEST[:ro|rw]`);
  if (mode && mode !== 'ro' && mode !== 'rw') throw new ConfigError('--volume', `"${v}": mode "${mode}" is not ro or rw`);
  const [source, destination] = parts;
  if (!destination.startsWith('/')) throw new ConfigError('--volume', `"${v}": the container path must be absolute`);
  const named = !source.startsWith('/');
  if (named && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(source)) throw new ConfigError('--volume', `"${source}" is not a valid volume name or absolute host path`);
  return { source, destination: normPath(destination), readonly: mode === 'ro', named };
}

/** `--tmpfs /path[:opts]`. */
export function parseTmpfs(v: string): TmpfsMount {
  const i = v.indexOf(':');
  const dest = i < 0 ? v : v.slice(0, i);
  if (!dest.startsWith('/')) throw new ConfigError('--tmpfs', `"${v}": the path must be absolute`);
  const extra = i < 0 ? [] : v.slice(i + 1).split(',').filter(Boolean);
  return { destination: normPath(dest), options: ['noexec', 'nosuid', 'nodev', ...extra] };
}

function normPath(p: string): string {
  const out: string[] = [];
  for (const s of p.split('/')) {
    if (!s || s === '.') continue;
    if (s === '..') out.pop(); else out.push(s);
  }
  return `/${out.join('/')}`;
}

/** Capabilities after --cap-add/--cap-drop (ALL allowed in both), Docker's order of application. */
export function resolveCaps(add: string[] = [], drop: string[] = [], privileged = false): string[] {
  if (privileged) return [...ALL_CAPS];
  const norm = (c: string): string => {
    if (c.toUpperCase() === 'ALL') return 'ALL';
    const n = normalizeCapName(c);
    if (capNumber(n) === undefined) throw new ConfigError('capabilities', `unknown capability "${c}"`);
    return n;
  };
  const a = add.map(norm), d = drop.map(norm);
  let caps: string[] = a.includes('ALL') ? [...ALL_CAPS] : [...DEFAULT_CAPS];
  if (d.includes('ALL')) caps = [];
  for (const c of a) if (c !== 'ALL' && !caps.includes(c)) caps.push(c);
  caps = caps.filter((c) => !d.includes(c) || a.includes(c));
  return caps;
}

// ---------- spec ----------

/** Build the container's OCI spec. `argv` is resolveCommand()'s result. */
export function buildSpec(img: ImageRunConfig, o: RunSpecOptions, ctx: SpecContext): Spec {
  const argv0 = resolveCommand(img, o.args, o.entrypoint);
  const argv = o.initPath ? ['/dev/init', '--', ...argv0] : argv0;
  const user = resolveUser(o.user ?? img.User ?? '', ctx.passwd, ctx.group);
  const hostname = o.hostname ?? ctx.defaultHostname;
  const env = mergeEnv(img.Env ?? [], o.env ?? []);
  const put = (k: string, v: string): void => { if (!env.some((e) => e.startsWith(`${k}=`))) env.push(`${k}=${v}`); };
  put('HOSTNAME', hostname);
  if (o.tty) put('TERM', 'xterm');
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home || '/'}`);
  const cwd = o.workdir ?? (img.WorkingDir || '/');
  if (!cwd.startsWith('/')) throw new ConfigError('workdir', `"${cwd}" must be an absolute path`);

  const privileged = !!o.privileged;
  const caps = resolveCaps(o.capAdd, o.capDrop, privileged);
  const rlimits = defaultRlimits();
  for (const u of o.ulimits ?? []) {
    const hard = currentHardLimit(u.type);
    if (u.hard > hard) throw new ConfigError('--ulimit', `${u.type.slice(7).toLowerCase()} hard limit ${u.hard >= 2 ** 64 - 1 ? 'unlimited' : u.hard} is above this host's hard limit ${hard === Infinity ? 'unlimited' : hard}`);
    const i = rlimits.findIndex((r) => r.type === u.type);
    if (i >= 0) rlimits[i] = u; else rlimits.push(u);
  }

  const mounts: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', privileged ? 'rw' : 'ro'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=67108864'] },
  ];
  const bindFile = (src: string | undefined, dst: string): void => {
    if (src) mounts.push({ destination: dst, type: 'bind', source: src, options: ['rbind', 'rprivate'] });
  };
  bindFile(ctx.resolvFile, '/etc/resolv.conf');
  bindFile(ctx.hostnameFile, '/etc/hostname');
  bindFile(ctx.hostsFile, '/etc/hosts');
  for (const v of o.volumes ?? []) {
    mounts.push({ destination: v.destination, type: 'bind', source: v.source, options: ['rbind', 'rprivate', ...(v.readonly ? ['ro'] : [])] });
  }
  for (const t of o.tmpfs ?? []) mounts.push({ destination: t.destination, type: 'tmpfs', source: 'tmpfs', options: t.options });
  if (o.initPath) mounts.push({ destination: '/dev/init', type: 'bind', source: o.initPath, options: ['bind', 'ro'] });

  const namespaces: Namespace[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (ctx.network === 'new') namespaces.push({ type: 'network' });
  else if (typeof ctx.network === 'object') namespaces.push({ type: 'network', path: ctx.network.path });

  const resources: LinuxResources = { ...(o.resources ?? {}), devices: privileged ? [{ allow: true, access: 'rwm' }] : DEFAULT_DEVICE_RULES.map((d) => ({ ...d })) };

  const spec: Spec = {
    ociVersion: '1.2.0',
    process: {
      terminal: !!o.tty,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids ? { additionalGids: user.additionalGids } : {}) },
      args: argv,
      env,
      cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits,
      noNewPrivileges: !!o.noNewPrivileges,
    },
    root: { path: ctx.rootfs, readonly: !!o.readOnly },
    hostname: ctx.network === 'host' ? undefined : hostname,
    mounts,
    linux: {
      cgroupsPath: ctx.cgroupsPath,
      resources,
      namespaces,
      // Docker's --privileged: every host device node, and (above) a cgroup rule allowing all.
      ...(privileged ? { devices: hostDevices() } : {}),
      ...(privileged ? {} : { maskedPaths: [...DOCKER_MASKED_PATHS], readonlyPaths: [...DOCKER_READONLY_PATHS] }),
      ...(privileged || o.seccompUnconfined ? {} : { seccomp: defaultSeccompProfile(caps) }),
    },
  };
  if (spec.hostname === undefined) delete spec.hostname;
  return spec;
}

/** Docker's signal names/numbers for --stop-signal and StopSignal. */
export function normalizeSignal(s: string | undefined, fallback = 'SIGTERM'): string {
  if (!s) return fallback;
  if (/^\d+$/.test(s)) return s;
  const up = s.toUpperCase();
  return up.startsWith('SIG') ? up : `SIG${up}`;
}
