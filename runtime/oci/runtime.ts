/**
 * The in-process runtime API: create/start/run/state/kill/delete/exec/pause/resume/update on OCI
 * bundles. berth-oci (the runc-compatible CLI) is a thin layer over it; the engine, the agent and
 * `berth bench` call it directly. A pod's containers share a sandbox by naming its namespace
 * files (`record.namespacePaths`) in their spec; any container can be adopted after a restart
 * because everything needed is in <root>/<id>/state.json.
 */
import net from 'node:net';
import { mkdir, mkdirSync, openSync, readSync, closeSync, unlinkSync, writeFileSync, existsSync, constants as fsConstants } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { constants as osConstants, userInfo } from 'node:os';
import { BerthError, SpawnError } from '../errors.js';
import type { Spec, Process, LinuxResources, OciState, NamespaceType, Hook } from './spec.js';
import { loadBundle, validateProcess } from './validate.js';
import { planInit, planProcess, cgroupResources } from './plan.js';
import {
  ContainerRecord, ensureRoot, containerDir, saveRecord, loadRecord, listIds, removeContainerDir,
  readProcStat, initAlive, ociState, writeAtomic, checkId,
} from './state.js';
import type { Cgroup, CgroupDriver, CgroupStats } from '../cgroups/types.js';
import { detectCgroupDriver } from '../cgroups/index.js';
import { removeEmptyCgroups } from '../cgroups/fs.js';
import { spawnInit, beginSpawnInit, reaper, sendFdToSocket, encodeSpawnConfig, PendingInit } from '../linux/spawn.js';
import type { SpawnConfig } from '../linux/spawn-types.js';
import * as N from '../linux/native.js';
import { keepCgroupMigrationWarm } from '../cgroups/warm.js';

export const DEFAULT_ROOT = '/run/berth-oci';

export interface RuntimeOptions {
  root?: string;
  cgroupDriver?: CgroupDriver;
  /** Called with warnings that do not fail an operation (poststop hook failures, ...). */
  warn?: (msg: string) => void;
  /**
   * Clone non-detached inits through the spawn zygote (runtime/linux/zygote.ts): default true,
   * right for long-lived users (engine, agent, bench); a CLI that spawns once passes false.
   */
  zygote?: boolean;
}

export interface CreateOptions {
  bundle: string;
  /** Use this spec instead of reading <bundle>/config.json (the engine builds specs in memory). */
  spec?: Spec;
  pidFile?: string;
  consoleSocket?: string;
  noPivot?: boolean;
  /** Number of fds after stdio (3, 4, …) passed to the container (runc --preserve-fds). */
  preserveFds?: number;
  /** fds that become the init's 0,1,2. Default: this process's own. */
  stdio?: [number, number, number];
  /**
   * true (the CLI): the init becomes a child of our caller (CLONE_PARENT), as runc's does, so a
   * shim/monitor that called us reaps it. false (in-process users): the init is our child and wait() works.
   */
  detached?: boolean;
  /**
   * Clone the init through this spawn-zygote socket (protocol in native/spawn.h) instead of our
   * own: the init becomes the child of the zygote's parent (e.g. berth-monitor, which hands its
   * zygote to the engine), so it is recorded as detached, as with `detached: true`.
   */
  zygoteSocket?: number;
}

/**
 * beginSpawnInit through someone else's zygote (CreateOptions.zygoteSocket); the init is not our
 * child. The request is sent now; the returned function reads the answer (call it exactly once).
 */
function beginSpawnViaZygote(sock: number, cfg: SpawnConfig): () => PendingInit {
  const b = N.zygoteBindings();
  if (!b) throw new BerthError('ENATIVE', 'native/build/berth.node is not built: run `make -C native`');
  const abs = (p: string) => (p ? resolvePath(p) : p);
  const zcfg: SpawnConfig = { ...cfg, cloneParent: false, execFifo: abs(cfg.execFifo), namespaces: cfg.namespaces.map((n) => (n.path ? { ...n, path: abs(n.path) } : n)) };
  const fds = Int32Array.from([...zcfg.stdio, ...zcfg.extraFds].filter((fd) => fd >= 0));
  const out = new Int32Array(5);
  const err = Buffer.alloc(1024);
  const decode = (rc: number): PendingInit => {
    if (out[4] === 1) throw new SpawnError('spawn', -rc || 32, 'the spawn zygote did not answer');
    if (rc < 0) throw new SpawnError('spawn', -rc, err.subarray(0, Math.max(0, err.indexOf(0))).toString('utf8') || 'berth_spawn failed');
    return new PendingInit(out[0], out[1], out[2], out[3], false);
  };
  const { zygoteSend, zygoteRecv } = b;
  if (!zygoteSend || !zygoteRecv) {
    const rc = b.zygoteSpawn(sock, encodeSpawnConfig(zcfg), fds, out, err);
    return () => decode(rc);
  }
  const sent = zygoteSend(sock, encodeSpawnConfig(zcfg), fds);
  if (sent < 0) throw new SpawnError('spawn', -sent, 'the spawn zygote did not answer');
  return () => decode(zygoteRecv(sock, out, err));
}

export interface ExitInfo {
  code: number | null;
  signal: number | null;
  /** Shell-style status: code, or 128 + signal. */
  exitCode: number;
  oomKilled: boolean;
}

export interface Created {
  record: ContainerRecord;
  /** The pty master when process.terminal and no consoleSocket was given; the caller owns it. */
  ptyMaster: number;
}

export interface ExecOptions {
  detached?: boolean;
  pidFile?: string;
  consoleSocket?: string;
  stdio?: [number, number, number];
  preserveFds?: number;
}

export interface ExecHandle {
  pid: number;
  ptyMaster: number;
  /** Resolves when the process exits (only when not detached). */
  wait(): Promise<ExitInfo>;
}

const NS_FILE: Record<NamespaceType, string> = {
  pid: 'pid', network: 'net', mount: 'mnt', ipc: 'ipc', uts: 'uts', user: 'user', cgroup: 'cgroup', time: 'time',
};

export class ContainerStateError extends BerthError {
  constructor(message: string) {
    super('ESTATE', message);
  }
}

export function parseSignal(sig: string | number): number {
  if (typeof sig === 'number') return sig;
  if (/^\d+$/.test(sig)) return Number(sig);
  const name = sig.toUpperCase().startsWith('SIG') ? sig.toUpperCase() : `SIG${sig.toUpperCase()}`;
  const n = (osConstants.signals as Record<string, number>)[name];
  if (n === undefined) throw new BerthError('EINVALIDSIGNAL', `unknown signal ${JSON.stringify(sig)}`);
  return n;
}

function exitInfo(code: number | null, signal: number | null, oomKilled: boolean): ExitInfo {
  return { code, signal, exitCode: signal !== null ? 128 + signal : code ?? 0, oomKilled };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** hooks.ts (and node:child_process with it) is loaded only for specs that have hooks. */
async function hooksBestEffort(kind: string, hooks: Hook[] | undefined, state: OciState): Promise<string[]> {
  if (!hooks?.length) return [];
  const { runHooksBestEffort } = await import('./hooks.js');
  return runHooksBestEffort(kind, hooks, state);
}

export class Runtime {
  readonly root: string;
  private driverCache: CgroupDriver | undefined;
  private readonly warn: (msg: string) => void;
  private readonly zygote: boolean;

  constructor(opts: RuntimeOptions = {}) {
    this.root = opts.root ?? DEFAULT_ROOT;
    this.driverCache = opts.cgroupDriver;
    this.warn = opts.warn ?? ((m) => process.stderr.write(`warning: ${m}\n`));
    this.zygote = opts.zygote ?? true;
  }

  get cgroups(): CgroupDriver {
    if (!this.driverCache) this.driverCache = detectCgroupDriver();
    return this.driverCache;
  }

  /** Cgroup directories being made ahead of create() (prepareCgroup), by resolved cgroup path. */
  private readonly precreated = new Map<string, Promise<string[]>>();

  /**
   * Start making the directories of `cgroupsPath` (every hierarchy) on the threadpool, for a
   * create() that follows in this process: on cgroup v1 that is one mkdir per controller
   * (0.5 to 20 ms of kernel time here) that then overlaps with the caller's other work instead
   * of holding up create. create() with that cgroupsPath waits for them and takes them over;
   * abandonCgroup() removes them if no create came. Resolves to the directories it made, deepest
   * first; errors are left for create() to meet.
   */
  prepareCgroup(cgroupsPath: string): void {
    const cg = this.cgroups.open(cgroupsPath);
    if (this.precreated.has(cg.path)) return;
    const dirs = [...new Set(Object.values(cg.paths()))];
    const made = Promise.all(dirs.map((d) => new Promise<string[]>((res) => {
      mkdir(d, { recursive: true, mode: 0o755 }, (e, first) => {
        const out: string[] = [];
        // mkdir -p made everything from `first` down to d
        if (!e && first) for (let cur = d; ; cur = dirname(cur)) { out.push(cur); if (cur === first || cur === dirname(cur)) break; }
        res(out);
      });
    }))).then((lists) => lists.flat());
    this.precreated.set(cg.path, made);
  }

  /** Remove what prepareCgroup made for `cgroupsPath` when no container was created with it. */
  async abandonCgroup(cgroupsPath: string): Promise<void> {
    const path = this.cgroups.open(cgroupsPath).path;
    const made = this.precreated.get(path);
    if (!made) return;
    this.precreated.delete(path);
    removeEmptyCgroups(await made);
  }

  private cgroupOf(rec: ContainerRecord): Cgroup | null {
    return rec.cgroupPath ? this.cgroups.open(rec.cgroupPath) : null;
  }

  /** The status the kernel shows now. */
  status(rec: ContainerRecord): OciState['status'] {
    if (!rec.pid || !initAlive(rec)) return 'stopped';
    if (existsSync(join(containerDir(this.root, rec.id), 'exec.fifo'))) return 'created';
    const cg = this.cgroupOf(rec);
    if (cg && cg.exists() && cg.isFrozen()) return 'paused';
    return 'running';
  }

  load(id: string): ContainerRecord {
    return loadRecord(this.root, id);
  }

  state(id: string): OciState {
    const rec = this.load(id);
    return ociState(rec, this.status(rec));
  }

  list(): { state: OciState; record: ContainerRecord }[] {
    const out: { state: OciState; record: ContainerRecord }[] = [];
    for (const id of listIds(this.root)) {
      try {
        const record = this.load(id);
        out.push({ record, state: ociState(record, this.status(record)) });
      } catch {
        /* removed concurrently */
      }
    }
    return out;
  }

  async create(id: string, opts: CreateOptions): Promise<Created> {
    checkId(id);
    ensureRoot(this.root);
    const dir = containerDir(this.root, id);
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new ContainerStateError(`container "${id}" already exists: delete it first`);
      throw e;
    }
    const warmed = keepCgroupMigrationWarm(); // until the init is in its cgroup
    let cgroup: Cgroup | null = null;
    let precreated: string[] = [];
    let pending: PendingInit | null = null;
    try {
      const { bundle, spec, rootfs } = loadBundle(opts.bundle, opts.spec);
      const cgroupPath = spec.linux?.cgroupsPath || id;
      const cg = this.cgroups.open(cgroupPath);
      const ahead = this.precreated.get(cg.path);
      if (ahead) {
        this.precreated.delete(cg.path);
        precreated = await ahead;
      }
      const record: ContainerRecord = {
        id, bundle, rootfs, pid: 0, initStartTime: '0', created: new Date().toISOString(), cgroupPath: cg.path,
        cgroupPaths: cg.paths(), cgroupVersion: this.cgroups.version, config: spec, namespacePaths: {}, owner: ownerName(), detached: opts.detached === true || opts.zygoteSocket !== undefined,
      };
      const fifo = join(dir, 'exec.fifo');
      const hasCreateHooks = Boolean(spec.hooks?.prestart?.length || spec.hooks?.createRuntime?.length || spec.hooks?.createContainer?.length);
      const extraFds = Array.from({ length: opts.preserveFds ?? 0 }, (_, i) => 3 + i);
      const cfg = planInit(spec, {
        rootfs, cgroupPaths: record.cgroupPaths, cgroupVersion: this.cgroups.version, noPivot: opts.noPivot,
        execFifo: fifo, stdio: opts.stdio ?? [0, 1, 2], extraFds, cloneParent: opts.detached ?? false, hookPause: hasCreateHooks,
      });
      // The spawn makes the exec fifo (mode 0622 whatever the umask: the init may run as any user).
      cfg.createExecFifo = true;
      // The zygote makes the fifo and clones while we record the container and make its cgroup (no
      // await until finishSpawn: one request in flight). Until state.json exists an interrupted
      // create leaves only this directory (delete removes it) and an init that exits when our end
      // of its sync socket closes; the cgroup is made after state.json names it, so delete can remove it.
      const finishSpawn = opts.zygoteSocket !== undefined ? beginSpawnViaZygote(opts.zygoteSocket, cfg) : beginSpawnInit(cfg, { zygote: this.zygote });
      let setupError: unknown = null;
      try {
        saveRecord(this.root, record);
        cgroup = cg;
        cg.create(precreated);
      } catch (e) {
        setupError = e;
      }
      pending = finishSpawn();
      if (setupError) throw setupError;
      // Record the init before GO: from GO on it may outlive us (a created container's init waits
      // at the exec fifo, and it is in its cgroup only once addProcess below has run), so after a
      // kill -9 of this process state.json must name it for delete to kill it. Before GO, our
      // death closes its sync socket and it exits. Its pid and start time are final from clone on;
      // a failure below still removes the whole directory.
      const procStat = readProcStat(pending.pid);
      record.pid = pending.pid;
      record.initStartTime = procStat?.startTime ?? '0';
      for (const ns of spec.linux?.namespaces ?? []) record.namespacePaths[ns.type] = ns.path ?? `/proc/${pending.pid}/ns/${NS_FILE[ns.type]}`;
      saveRecord(this.root, record);
      // The child needs its cgroup before GO only when it unshares a cgroup namespace, and its id
      // maps only for a new user namespace. Otherwise let it do its mounts while we program the
      // cgroup: it cannot exec before `start`, and it is in the cgroup before create returns.
      const newNs = (t: string) => (spec.linux?.namespaces ?? []).some((n) => n.type === t && !n.path);
      const early = !newNs('cgroup') && !newNs('user');
      if (early) pending.go();
      const resources = cgroupResources(spec);
      if (resources) cg.apply(resources);
      cg.addProcess(pending.pid);
      warmed();
      if (!early) {
        this.writeIdMaps(spec, pending.pid);
        pending.go();
      }
      let outcome = await pending.awaitOutcome();
      if (outcome.kind === 'hooks') {
        const st = ociState(record, 'creating');
        const { runHooks } = await import('./hooks.js');
        await runHooks('prestart', spec.hooks?.prestart, st);
        await runHooks('createRuntime', spec.hooks?.createRuntime, st);
        await runHooks('createContainer', spec.hooks?.createContainer, st);
        pending.continueAfterHooks();
        outcome = await pending.awaitOutcome();
      }
      if (outcome.kind !== 'ready') throw new BerthError('ESPAWN', `container init did not stop at the exec fifo (got ${outcome.kind})`);
      let ptyMaster = outcome.ptyMaster;
      if (ptyMaster >= 0 && opts.consoleSocket) {
        try {
          sendFdToSocket(opts.consoleSocket, ptyMaster);
        } finally {
          N.closeFd(ptyMaster);
          ptyMaster = -1;
        }
      }
      if (opts.pidFile) writeAtomic(opts.pidFile, String(record.pid), 0o644);
      N.closeFd(pending.pidfd);
      if (!record.detached) reaper.watch(record.pid);
      return { record, ptyMaster };
    } catch (e) {
      warmed();
      if (pending) {
        pending.abort();
      }
      if (cgroup) await cgroup.destroy().catch(() => {});
      else if (precreated.length) removeEmptyCgroups(precreated);
      else await this.abandonCgroup(opts.spec?.linux?.cgroupsPath || id).catch(() => {}); // failed before taking them over
      removeContainerDir(this.root, id);
      throw e;
    }
  }

  private writeIdMaps(spec: Spec, pid: number): void {
    const userNs = spec.linux?.namespaces?.find((n) => n.type === 'user');
    if (!userNs || userNs.path) return;
    const fmt = (m: { containerID: number; hostID: number; size: number }[]) => m.map((x) => `${x.containerID} ${x.hostID} ${x.size}\n`).join('');
    writeFileSync(`/proc/${pid}/setgroups`, 'deny');
    writeFileSync(`/proc/${pid}/uid_map`, fmt(spec.linux?.uidMappings ?? []));
    writeFileSync(`/proc/${pid}/gid_map`, fmt(spec.linux?.gidMappings ?? []));
  }

  async start(id: string): Promise<void> {
    const rec = this.load(id);
    const status = this.status(rec);
    if (status !== 'created') throw new ContainerStateError(`cannot start container "${id}": it is ${status}, not created`);
    for (const hook of rec.config.hooks?.startContainer ?? []) {
      const h = await this.exec(id, { args: [hook.path, ...(hook.args ?? []).slice(1)], env: hook.env, cwd: '/', user: { uid: 0, gid: 0 } }, {});
      const r = await h.wait();
      if (r.exitCode !== 0) throw new BerthError('EHOOK', `startContainer hook ${hook.path} failed with status ${r.exitCode}`);
    }
    const fifo = join(containerDir(this.root, id), 'exec.fifo');
    await takeStartSignal(fifo, rec);
    try { unlinkSync(fifo); } catch { /* already gone */ }
    for (const w of await hooksBestEffort('poststart', rec.config.hooks?.poststart, ociState(rec, 'running'))) this.warn(w);
  }

  async run(id: string, opts: CreateOptions): Promise<Created> {
    const c = await this.create(id, opts);
    try {
      await this.start(id);
    } catch (e) {
      await this.delete(id, true).catch(() => {});
      throw e;
    }
    return c;
  }

  /** Wait for the init to exit (in-process containers, created with detached=false). */
  async wait(id: string): Promise<ExitInfo> {
    const rec = this.load(id);
    if (!rec.pid) return exitInfo(null, null, false);
    const r = await reaper.wait(rec.pid);
    return exitInfo(r.code, r.signal, r.signal === 9 && this.oomKills(rec) > 0);
  }

  private oomKills(rec: ContainerRecord): number {
    try {
      const cg = this.cgroupOf(rec);
      return cg && cg.exists() ? cg.stats().memory.oomKills : 0;
    } catch {
      return 0;
    }
  }

  kill(id: string, signal: string | number = 'SIGTERM', all = false): void {
    const rec = this.load(id);
    const sig = parseSignal(signal);
    const status = this.status(rec);
    if (status === 'stopped') throw new ContainerStateError(`container "${id}" is not running`);
    if (all) {
      const cg = this.cgroupOf(rec);
      for (const pid of cg?.pids() ?? [rec.pid]) {
        try { process.kill(pid, sig); } catch { /* exited */ }
      }
      return;
    }
    const pidfd = N.pidfdOpen(rec.pid);
    try {
      // The pidfd pins the process: re-check identity after opening it, then signal race-free.
      if (!initAlive(rec)) throw new ContainerStateError(`container "${id}" is not running`);
      N.pidfdSendSignal(pidfd, sig);
    } finally {
      N.closeFd(pidfd);
    }
  }

  async delete(id: string, force = false): Promise<void> {
    const rec = this.load(id);
    const status = this.status(rec);
    const cg = this.cgroupOf(rec);
    if (status !== 'stopped') {
      if (!force && status !== 'created') throw new ContainerStateError(`cannot delete container "${id}": it is ${status} — stop it first or use --force`);
      if (status === 'paused' && cg) await cg.thaw();
      if (cg) {
        for (const pid of cg.pids()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      }
      try { this.kill(id, 'SIGKILL'); } catch { /* gone */ }
      const deadline = Date.now() + 5000;
      while (initAlive(rec) && Date.now() < deadline) await sleep(2);
    }
    if (cg) await cg.destroy();
    if (rec.pid) {
      for (const w of await hooksBestEffort('poststop', rec.config.hooks?.poststop, ociState(rec, 'stopped'))) this.warn(w);
    }
    // An init that is our child must be reaped before we stop tracking it, or it stays a zombie
    // of this process forever (the bench and the agent live long). A non-child answers ECHILD.
    if (rec.pid && !rec.detached) {
      // The 2 s bound must not outlive the reap: a pending timer kept `berth-oci run` alive for 2 s.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const bound = new Promise<void>((r) => { timer = setTimeout(r, 2000); });
      await Promise.race([reaper.wait(rec.pid).catch(() => undefined), bound]);
      clearTimeout(timer);
    }
    reaper.forget(rec.pid);
    removeContainerDir(this.root, id);
  }

  async exec(id: string, proc: Process, opts: ExecOptions = {}): Promise<ExecHandle> {
    validateProcess(proc, 'process');
    const rec = this.load(id);
    const status = this.status(rec);
    if (status === 'stopped') throw new ContainerStateError(`cannot exec in container "${id}": it is stopped`);
    if (status === 'paused') throw new ContainerStateError(`cannot exec in container "${id}": it is paused`);
    const spec = rec.config;
    const namespaces = (spec.linux?.namespaces ?? []).map((n) => ({ kind: n.type, path: rec.namespacePaths[n.type] ?? `/proc/${rec.pid}/ns/${NS_FILE[n.type]}` }));
    const cfg: SpawnConfig = {
      namespaces, rootfs: '', rootfsReadonly: false, rootfsPropagation: 0, noPivot: false, mounts: [], setupDev: false, devices: [],
      maskedPaths: [], readonlyPaths: [], hostname: '', domainname: '', sysctls: [],
      ...planProcess(proc, spec),
      stdio: opts.stdio ?? [0, 1, 2],
      extraFds: Array.from({ length: opts.preserveFds ?? 0 }, (_, i) => 3 + i),
      execFifo: '', cloneParent: opts.detached ?? false, parentDeathSignal: 0, hookPause: false,
    };
    const pending = spawnInit(cfg, { zygote: this.zygote });
    try {
      const cg = this.cgroupOf(rec);
      if (cg) cg.addProcess(pending.pid);
      pending.go();
      const outcome = await pending.awaitOutcome();
      let ptyMaster = outcome.ptyMaster;
      if (ptyMaster >= 0 && opts.consoleSocket) {
        try { sendFdToSocket(opts.consoleSocket, ptyMaster); } finally { N.closeFd(ptyMaster); ptyMaster = -1; }
      }
      if (opts.pidFile) writeAtomic(opts.pidFile, String(pending.pid), 0o644);
      N.closeFd(pending.pidfd);
      const pid = pending.pid;
      if (!opts.detached) reaper.watch(pid);
      return {
        pid, ptyMaster,
        wait: async () => {
          if (opts.detached) throw new BerthError('EDETACHED', 'cannot wait for a detached exec process');
          const r = await reaper.wait(pid);
          return exitInfo(r.code, r.signal, false);
        },
      };
    } catch (e) {
      pending.abort();
      throw e;
    }
  }

  async pause(id: string): Promise<void> {
    const rec = this.load(id);
    const status = this.status(rec);
    if (status !== 'running' && status !== 'created') throw new ContainerStateError(`cannot pause container "${id}": it is ${status}`);
    await this.requireCgroup(rec).freeze();
  }

  async resume(id: string): Promise<void> {
    const rec = this.load(id);
    if (this.status(rec) !== 'paused') throw new ContainerStateError(`cannot resume container "${id}": it is not paused`);
    await this.requireCgroup(rec).thaw();
  }

  update(id: string, resources: LinuxResources): void {
    const rec = this.load(id);
    if (this.status(rec) === 'stopped') throw new ContainerStateError(`cannot update container "${id}": it is stopped`);
    this.requireCgroup(rec).apply(resources);
    const linux = (rec.config.linux ??= {});
    linux.resources = mergeResources(linux.resources ?? {}, resources);
    saveRecord(this.root, rec);
  }

  ps(id: string): number[] {
    return this.requireCgroup(this.load(id)).pids();
  }

  stats(id: string): CgroupStats {
    return this.requireCgroup(this.load(id)).stats();
  }

  private requireCgroup(rec: ContainerRecord): Cgroup {
    const cg = this.cgroupOf(rec);
    if (!cg) throw new ContainerStateError(`container "${rec.id}" has no cgroup`);
    return cg;
  }
}

let owner: { uid: number; name: string } | undefined;

/** Our user name for state.json (os.userInfo() reads /etc/passwd each call): cached per uid. */
function ownerName(): string {
  const uid = process.getuid?.() ?? -1;
  if (owner?.uid !== uid) owner = { uid, name: userInfo().username };
  return owner.name;
}

/** Read the init's byte from a non-blocking fd: true when it was there, false when not yet. */
function readStartByte(fd: number): boolean {
  try {
    return readSync(fd, Buffer.alloc(1), 0, 1, null) === 1;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return false;
    throw e;
  }
}

/**
 * Open the exec fifo for reading, which lets the init (blocked opening it for writing) write its
 * byte and exec. The byte usually comes at once; otherwise libuv watches the fifo (no polling
 * sleeps), and a timer notices an init that died without writing it. A byte written just before
 * the init exited still counts: the fifo is read once more before giving up.
 */
async function takeStartSignal(fifo: string, rec: ContainerRecord): Promise<void> {
  const fd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  let fast: boolean;
  try {
    fast = readStartByte(fd);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  if (fast) {
    closeSync(fd);
    return;
  }
  const sock = new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
  const deadline = Date.now() + 10_000;
  let timer: ReturnType<typeof setInterval> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const exited = () => new ContainerStateError(`container "${rec.id}" init exited before it was started`);
      sock.once('data', () => resolve());
      sock.once('end', () => reject(exited()));
      sock.once('error', reject);
      timer = setInterval(() => {
        try {
          if (readStartByte(fd)) resolve();
          else if (!initAlive(rec)) {
            if (readStartByte(fd)) resolve();
            else reject(exited());
          }
          else if (Date.now() > deadline) reject(new ContainerStateError(`container "${rec.id}" init did not take the start signal within 10s`));
        } catch (e) {
          reject(e);
        }
      }, 5);
    });
  } finally {
    clearInterval(timer);
    sock.destroy();
  }
}

function mergeResources(a: LinuxResources, b: LinuxResources): LinuxResources {
  const out: LinuxResources = { ...a };
  for (const [k, v] of Object.entries(b) as [keyof LinuxResources, unknown][]) {
    const prev = out[k];
    (out as Record<string, unknown>)[k] = prev && typeof prev === 'object' && !Array.isArray(prev) && v && typeof v === 'object' && !Array.isArray(v) ? { ...prev, ...v } : v;
  }
  return out;
}
