/**
 * One experiment's sandbox: a temp dir, a private runtime state root, a cgroup parent
 * /berth-bench-<rand>, and a rootfs (busybox or an image overlay). Containers run in-process
 * (detached=false: this process is the init's parent and reaps it). cleanup() removes every
 * container, the cgroup parent in every hierarchy, the overlay mount and the temp dir; it is
 * idempotent and is also what the SIGINT/SIGTERM handlers call (see runner.ts).
 */
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Runtime, type ExitInfo } from '../oci/runtime.js';
import { defaultSpec } from '../oci/default-spec.js';
import type { LinuxResources, Mount } from '../oci/spec.js';
import type { CgroupStats } from '../cgroups/types.js';
import { busyboxRootfs, imageRootfs, type BenchRootfs, BenchError, DEFAULT_STORE_ROOT } from './rootfs.js';

export interface EnvOptions {
  /** Experiment id, used in names. */
  name: string;
  /** Image reference to use instead of the busybox rootfs. */
  image?: string;
  /** Image store root (berth --root). */
  storeRoot?: string;
}

export interface StartOptions {
  resources?: LinuxResources;
  /** fd for the container's stdout (default: a log file in the env dir). */
  stdout?: number;
  mounts?: Mount[];
}

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Every live env, so a signal handler can clean them all. */
export const liveEnvs = new Set<BenchEnv>();

export class BenchEnv {
  readonly dir: string;
  readonly rt: Runtime;
  readonly cgroupParent: string;
  readonly rootfs: BenchRootfs;
  private readonly ids: string[] = [];
  private readonly fds: number[] = [];
  private readonly logs = new Map<string, string>();
  private keepAlive: NodeJS.Timeout | null;
  private cleaned = false;
  private seq = 0;
  private readonly suffix: string;

  private constructor(dir: string, rootfs: BenchRootfs, suffix: string) {
    this.dir = dir;
    this.suffix = suffix;
    this.cgroupParent = `/berth-bench-${suffix}`;
    this.rt = new Runtime({ root: join(dir, 'state'), warn: () => {} });
    this.rootfs = rootfs;
    // A SIGCHLD listener does not keep Node alive: hold a handle while containers may run.
    this.keepAlive = setInterval(() => {}, 1 << 30);
    liveEnvs.add(this);
  }

  static async create(opts: EnvOptions): Promise<BenchEnv> {
    const suffix = randomBytes(4).toString('hex');
    const dir = mkdtempSync(join(tmpdir(), `berth-bench-${opts.name}-`));
    try {
      const rootfs = opts.image ? await imageRootfs(opts.storeRoot ?? DEFAULT_STORE_ROOT, opts.image, dir) : busyboxRootfs(dir);
      return new BenchEnv(dir, rootfs, suffix);
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  get cgroupVersion(): 1 | 2 {
    return this.rt.cgroups.version;
  }

  /** Start a container running args with the given resources; returns its id. */
  async start(name: string, args: string[], opts: StartOptions = {}): Promise<string> {
    if (this.cleaned) throw new BenchError('bench environment already cleaned up');
    const id = `berth-bench-${this.suffix}-${name}-${this.seq++}`;
    const spec = defaultSpec({ args, terminal: false, cgroupns: false });
    spec.root = { path: this.rootfs.path, readonly: true };
    spec.hostname = 'berth-bench';
    spec.process!.env = ['PATH=/bin:/usr/bin:/sbin:/usr/sbin'];
    spec.mounts = [...(spec.mounts ?? []), { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=16m'] }, ...(opts.mounts ?? [])];
    spec.linux!.cgroupsPath = `${this.cgroupParent}/${name}-${this.seq}`;
    spec.linux!.resources = { ...spec.linux!.resources, ...(opts.resources ?? {}) };
    const log = join(this.dir, `${id}.log`);
    const logFd = openSync(log, 'a');
    this.fds.push(logFd);
    this.logs.set(id, log);
    this.ids.push(id);
    await this.rt.run(id, { bundle: this.dir, spec, stdio: [-1, opts.stdout ?? logFd, logFd], detached: false });
    return id;
  }

  stats(id: string): CgroupStats {
    return this.rt.stats(id);
  }

  /** A cgroup interface file of this container (v1: in the controller's hierarchy), or null. */
  cgroupFile(id: string, controller: string, file: string): string | null {
    const rec = this.rt.load(id);
    const dir = rec.cgroupVersion === 2 ? rec.cgroupPaths[''] : Object.entries(rec.cgroupPaths).find(([k]) => k.split(',').includes(controller))?.[1];
    if (!dir) return null;
    try { return readFileSync(join(dir, file), 'utf8').trim(); } catch { return null; }
  }

  /** Wait for the container's init to exit, killing it after timeoutMs. */
  async wait(id: string, timeoutMs: number): Promise<ExitInfo & { timedOut: boolean }> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { this.rt.kill(id, 'KILL', true); } catch { /* already gone */ }
    }, timeoutMs);
    try {
      const r = await this.rt.wait(id);
      return { ...r, timedOut };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Container output so far (its log file). */
  output(id: string): string {
    const p = this.logs.get(id);
    try { return p ? readFileSync(p, 'utf8') : ''; } catch { return ''; }
  }

  /**
   * Kill and delete one container (idempotent). The init is killed and reaped through wait()
   * before delete: Runtime.delete forgets the pid in the reaper, and an init that had not been
   * reaped by then would stay a zombie child of this process.
   */
  async remove(id: string): Promise<void> {
    try {
      if (this.rt.state(id).status !== 'stopped') this.rt.kill(id, 'KILL', true);
    } catch { /* already stopped or deleted */ }
    try {
      await Promise.race([this.rt.wait(id), new Promise((r) => setTimeout(r, 5000))]);
    } catch { /* deleted */ }
    try { await this.rt.delete(id, true); } catch { /* already deleted */ }
  }

  /** Remove everything this env made. Safe to call more than once and after a failure. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const id of this.ids) await this.remove(id);
    for (const fd of this.fds) { try { closeSync(fd); } catch { /* closed */ } }
    removeCgroupParent(this.cgroupParent);
    try { this.rootfs.release(); } catch { /* best effort; the rm below reports nothing */ }
    rmSync(this.dir, { recursive: true, force: true });
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    liveEnvs.delete(this);
  }

  /** Synchronous best-effort cleanup for a signal handler that must exit now. */
  cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const dir of cgroupDirs(this.cgroupParent)) killTree(dir);
    // Give the kernel a moment to reap the killed processes before rmdir.
    const until = Date.now() + 1000;
    while (Date.now() < until && cgroupDirs(this.cgroupParent).some(hasProcs)) { /* spin briefly */ }
    removeCgroupParent(this.cgroupParent);
    try { this.rootfs.release(); } catch { /* best effort */ }
    rmSync(this.dir, { recursive: true, force: true });
    if (this.keepAlive) clearInterval(this.keepAlive);
    liveEnvs.delete(this);
  }
}

/** Every existing directory of cgroupParent: v2 root and each v1 hierarchy. */
export function cgroupDirs(cgroupParent: string): string[] {
  const out = new Set<string>();
  const add = (d: string) => { try { if (statSync(d).isDirectory()) out.add(d); } catch { /* absent */ } };
  add(join(CGROUP_ROOT, cgroupParent));
  let hierarchies: string[] = [];
  try { hierarchies = readdirSync(CGROUP_ROOT); } catch { /* no cgroupfs */ }
  for (const h of hierarchies) add(join(CGROUP_ROOT, h, cgroupParent));
  return [...out];
}

function hasProcs(dir: string): boolean {
  return listProcs(dir).length > 0;
}

function listProcs(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string) => {
    try { for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) pids.push(Number(l)); } catch { /* gone */ }
    try { for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name)); } catch { /* gone */ }
  };
  walk(dir);
  return pids;
}

function killTree(dir: string): void {
  for (const pid of listProcs(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

function rmdirTree(dir: string): void {
  if (!existsSync(dir)) return;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmdirTree(join(dir, e.name));
  } catch { /* gone */ }
  try { rmdirSync(dir); } catch { /* busy: reported by the leak check */ }
}

/** rmdir cgroupParent (deepest first) in every hierarchy, killing stragglers first. */
export function removeCgroupParent(cgroupParent: string): void {
  for (const d of cgroupDirs(cgroupParent)) {
    killTree(d);
    rmdirTree(d);
  }
}
