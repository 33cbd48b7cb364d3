/**
 * The container engine behind `berth`: containers from images (create/start/run/stop/kill/
 * restart/rm/ps/logs/exec/inspect/wait/top/stats), with no daemon. Each running container has a
 * berth-monitor (native/monitor.c) driving berth-oci; the engine prepares the overlay rootfs,
 * the bundle (spec.ts), volumes and CNI networking around it, and keeps container records
 * (store.ts). Every Engine.open() reconciles: containers whose monitor is gone get their
 * mounts, network, netns file and cgroup cleaned and show as exited.
 *
 * Layout: <root>/containers/<id>/{container.json, bundle/config.json, rootfs, upper, work,
 * container.log, hosts, hostname, resolv.conf}; <state>/c/<id12>/{exit.json, ctl.sock,
 * attach.sock}; <state>/netns/<id12>; <state>/runtime = berth-oci's --root.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, renameSync, statSync, lstatSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { packTreeTo } from './tree-tar.js';
import { commitUpperDir, type CommitOptions } from './commit.js';
import type { ImageRecord } from '../../images/db.js';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, ConfigError, NotFoundError } from '../errors.js';
import { ImageStore } from '../../images/store.js';
import { parsePlatform } from '../../images/manifest.js';
import { MNT_DETACH, mount, umount } from '../linux/libc.js';
import { removeTree } from '../linux/remove-tree.js';
import { Runtime, parseSignal } from '../oci/runtime.js';
import { setSeccompCacheDir } from '../oci/seccomp.js';
import type { Process, Spec } from '../oci/spec.js';
import { detectCgroupDriver } from '../cgroups/index.js';
import { NetworkStore, parsePortSpec, type Attachment, type PortMapping } from '../network/networks.js';
import { createNetns, removeNetns, writeHostsFile, writeResolvConf, type HostEntry } from '../network/netns.js';
import {
  disableRestart, exitCodeOf, monitorAlive, readExitStatus, startContainer, startMonitor, waitForExit,
  type ExitRecord, type Handoff, type RestartPolicy,
} from './monitor.js';
import {
  buildSpec, mergeEnv, normalizeSignal, parseEnvFile, parseResources, parseTmpfs, parseUlimit, parseVolumeSpec,
  resolveCommand, resolveUser, type ImageRunConfig, type VolumeMount,
} from './spec.js';
import { ContainerStore, type ContainerRecord } from './store.js';
import { VolumeStore } from './volumes.js';
import { keepCgroupMigrationWarm } from '../cgroups/warm.js';

export interface EngineOptions {
  root: string;
  state: string;
  /** Cgroup parent for every container (default $BERTH_CGROUP_PARENT or "berth"). */
  cgroupParent?: string;
  /** OCI runtime the monitor drives (default bin/berth-oci.js, or $BERTH_RUNTIME). */
  runtimePath?: string;
  /** Default network's bridge/subnet (default $BERTH_DEFAULT_BRIDGE/$BERTH_DEFAULT_SUBNET or berth0 10.203.0.0/16). */
  defaultBridge?: string;
  defaultSubnet?: string;
  /** Skip reconcile in open() (tests of reconcile itself). */
  noReconcile?: boolean;
}

/** `berth run`/`create` options as the CLI parsed them (strings as typed). */
export interface CreateOptions {
  image: string;
  args?: string[];
  name?: string;
  interactive?: boolean;
  tty?: boolean;
  rm?: boolean;
  env?: string[];
  envFiles?: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  volumes?: string[];
  tmpfs?: string[];
  readOnly?: boolean;
  network?: string;
  publish?: string[];
  memory?: string;
  memorySwap?: string;
  cpus?: string;
  cpuShares?: string;
  cpusetCpus?: string;
  pidsLimit?: string;
  ulimits?: string[];
  capAdd?: string[];
  capDrop?: string[];
  privileged?: boolean;
  securityOpt?: string[];
  init?: boolean;
  restart?: string;
  stopSignal?: string;
  stopTimeout?: number;
  pull?: 'missing' | 'always' | 'never';
  /**
   * start() follows at once in this process (`berth run`): on a bridge network without published
   * ports the network namespace and the CNI ADD begin here, overlapping the image lookup, the
   * rootfs mount and the bundle. A failed create tears them down; rm/cleanup of a container
   * that was never started does too.
   */
  startSoon?: boolean;
  platform?: string;
  onPullProgress?: (line: string) => void;
}

export interface ExecOptions {
  tty?: boolean;
  interactive?: boolean;
  env?: string[];
  user?: string;
  workdir?: string;
  stdio?: [number, number, number];
}

const RESTART_RE = /^(no|always|unless-stopped|on-failure(:\d+)?)$/;

const TRACE = process.env.BERTH_TRACE === '1';
/** BERTH_TRACE=1: one stderr line per lifecycle stage, ms since the process started (the global performance, loaded on first use). */
export function trace(stage: string): void {
  if (TRACE) process.stderr.write(`[berth] ${performance.now().toFixed(1)} ms ${stage}\n`);
}

function here(): string { return import.meta.dirname ?? dirname(fileURLToPath(import.meta.url)); }

function findUp(rels: string[]): string | null {
  for (const rel of rels) { const p = join(here(), rel); if (existsSync(p)) return p; }
  return null;
}

/** bin/berth-oci.js (needs dist built), or $BERTH_RUNTIME. */
export function defaultRuntimePath(): string {
  if (process.env.BERTH_RUNTIME) return process.env.BERTH_RUNTIME;
  const p = findUp(['../../bin/berth-oci.js', '../../../bin/berth-oci.js']);
  if (!p) throw new BerthError('ENORUNTIME', 'bin/berth-oci.js not found; set BERTH_RUNTIME');
  return p;
}

/** Whether the monitor's runtime is berth-oci, whose state the engine's Runtime shares. */
function isBerthOci(path: string): boolean {
  return /(^|\/)berth-oci(\.c?js)?$/.test(path);
}

/** native/build/berth-init (the --init reaper), or $BERTH_INIT. */
export function initBinary(): string {
  if (process.env.BERTH_INIT) return process.env.BERTH_INIT;
  const p = findUp(['../../native/build/berth-init', '../../../native/build/berth-init']);
  if (!p) throw new BerthError('ENOINIT', '--init needs native/build/berth-init: run `make -C native`');
  return p;
}

export function isMountpoint(path: string): boolean {
  let info = '';
  try { info = readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return false; }
  const esc = path.replace(/\\/g, '\\134').replace(/ /g, '\\040').replace(/\t/g, '\\011').replace(/\n/g, '\\012');
  return info.split('\n').some((l) => l.split(' ')[4] === esc);
}

/** The namespaces with the network one joining `path`. */
function withNetnsPath(namespaces: NonNullable<NonNullable<Spec['linux']>['namespaces']>, path: string): NonNullable<NonNullable<Spec['linux']>['namespaces']> {
  return [...namespaces.filter((n) => n.type !== 'network'), { type: 'network', path }];
}

function atomicWrite(path: string, text: string, mode = 0o644): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
}

/** Rewrite a file in place (same inode), so a bind mount of it sees the new content. */
function writeInPlace(path: string, fill: (tmp: string) => void): void {
  const tmp = `${path}.${process.pid}.new`;
  fill(tmp);
  try { copyFileSync(tmp, path); } finally { rmSync(tmp, { force: true }); }
}


async function portFree(p: PortMapping): Promise<boolean> {
  if (p.protocol !== 'tcp') return true;
  return await new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ port: p.hostPort, host: p.hostIP ?? '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

export class Engine {
  readonly root: string;
  readonly state: string;
  readonly containers: ContainerStore;
  readonly volumes: VolumeStore;
  readonly networks: NetworkStore;
  readonly cgroupParent: string;
  private readonly runtimePath: string | undefined;
  private images_: ImageStore | null = null;
  private runtime_: Runtime | null = null;
  /** Network setups begun by create({ startSoon }) for start() to take over, by container id. */
  private readonly earlyNetworks = new Map<string, { nsFile: string; network: Promise<Attachment> }>();

  private constructor(o: EngineOptions) {
    this.root = o.root;
    this.state = o.state;
    this.cgroupParent = (o.cgroupParent ?? process.env.BERTH_CGROUP_PARENT ?? 'berth').replace(/^\/+|\/+$/g, '');
    this.runtimePath = o.runtimePath;
    mkdirSync(this.root, { recursive: true, mode: 0o711 });
    mkdirSync(this.state, { recursive: true, mode: 0o711 });
    // compiled seccomp programs persist across CLI calls (each `berth run` is a new process)
    setSeccompCacheDir(join(this.root, 'cache', 'seccomp'));
    this.containers = new ContainerStore(this.root);
    this.volumes = new VolumeStore(this.root);
    this.networks = new NetworkStore(this.root, {
      defaultBridge: o.defaultBridge ?? process.env.BERTH_DEFAULT_BRIDGE,
      defaultSubnet: o.defaultSubnet ?? process.env.BERTH_DEFAULT_SUBNET,
      subnetPool: process.env.BERTH_SUBNET_POOL,
    });
  }

  static async open(o: EngineOptions): Promise<Engine> {
    const e = new Engine(o);
    if (!o.noReconcile) await e.reconcile();
    return e;
  }

  close(): void {
    this.images_?.close();
    this.images_ = null;
  }

  get images(): ImageStore {
    if (!this.images_) this.images_ = ImageStore.open(this.root);
    return this.images_;
  }

  get runtime(): Runtime {
    if (!this.runtime_) this.runtime_ = new Runtime({ root: join(this.state, 'runtime'), warn: () => {} });
    return this.runtime_;
  }

  // ------------------------------------------------------------------ paths

  private cdir(id: string): string { return this.containers.containerDir(id); }
  private sdir(id: string): string { return join(this.state, 'c', id.slice(0, 12)); }
  bundleDir(id: string): string { return join(this.cdir(id), 'bundle'); }
  logFile(id: string): string { return join(this.cdir(id), 'container.log'); }
  exitFile(id: string): string { return join(this.sdir(id), 'exit.json'); }
  ctlSocket(id: string): string { return join(this.sdir(id), 'ctl.sock'); }
  attachSocket(id: string): string { return join(this.sdir(id), 'attach.sock'); }
  netnsFile(id: string): string { return join(this.state, 'netns', id.slice(0, 12)); }
  cgroupsPath(id: string): string { return `/${this.cgroupParent}/${id}`; }

  // ------------------------------------------------------------------ lookup

  get(ref: string): ContainerRecord { return this.refresh(this.containers.resolve(ref)); }

  /** Update a record's status from its monitor and exit file (no cleanup). */
  refresh(rec: ContainerRecord): ContainerRecord {
    if (rec.status === 'exited' && !rec.resourcesUp) return rec;
    const ex = readExitStatus(this.exitFile(rec.id));
    const alive = rec.monitorPid > 0 && monitorAlive(rec.monitorPid);
    if (ex) {
      rec.restartCount = ex.restarts;
      if (ex.startedAt) rec.startedAt = ex.startedAt;
      if (!alive || !ex.restarting) {
        if (!alive) this.applyExit(rec, ex);
      }
    }
    if (rec.status === 'running' && !alive) rec.status = 'exited';
    return rec;
  }

  private applyExit(rec: ContainerRecord, ex: ExitRecord): void {
    rec.status = 'exited';
    rec.exitCode = exitCodeOf(ex);
    rec.oomKilled = ex.oomKilled;
    rec.finishedAt = ex.finishedAt;
    if (ex.startedAt) rec.startedAt = ex.startedAt;
    rec.restartCount = ex.restarts;
    rec.error = ex.error;
  }

  list(all = false): ContainerRecord[] {
    const out = this.containers.list().map((r) => this.refresh(r));
    return all ? out : out.filter((r) => r.status === 'running');
  }

  /** Clean up containers whose monitor is gone (crash, kill -9, lost /run), and creates killed before their first save. */
  async reconcile(): Promise<void> {
    for (const rec of this.containers.list()) {
      if (!rec.resourcesUp) continue;
      if (rec.monitorPid > 0 && monitorAlive(rec.monitorPid)) continue;
      if (rec.status === 'created' && rec.monitorPid === 0) continue;
      await this.cleanup(rec).catch(() => { /* best effort; retried next time */ });
    }
    for (const { id, marker } of this.containers.abandoned()) {
      await this.removeAbandoned(id, marker?.network ?? 'none').catch(() => { /* best effort; retried next time */ });
    }
  }

  /**
   * Undo what a create killed before its first save may have made, by the paths derived from its
   * id (there is no record): the network (namespace file first, then the CNI DEL, as cleanup()
   * does), cgroups made ahead, the rootfs mount, the state directory, the image use, its name and
   * the directory itself (last: until then the next reconcile finds it again).
   */
  private async removeAbandoned(id: string, network: string): Promise<void> {
    const nsFile = this.netnsFile(id);
    removeNetns(nsFile);
    if (network !== 'none' && network !== 'host') await this.networks.disconnect(network, { containerId: id, netns: nsFile });
    const cg = detectCgroupDriver().open(this.cgroupsPath(id));
    if (cg.exists()) await cg.destroy();
    this.unmountRootfs(id);
    removeTree(this.sdir(id));
    this.images.removeImageUse(null, id);
    this.containers.releaseNamesOf(id);
    removeTree(this.cdir(id));
  }

  // ------------------------------------------------------------------ create

  private async resolveImage(o: CreateOptions): Promise<string> {
    const policy = o.pull ?? 'missing';
    if (!['missing', 'always', 'never'].includes(policy)) throw new ConfigError('--pull', `"${policy}": want missing, always or never`);
    let img = policy === 'always' ? null : this.images.get(o.image);
    if (!img) {
      if (policy === 'never') throw new NotFoundError(`image "${o.image}" is not present locally and --pull=never was given`);
      try {
        img = await this.images.pull(o.image, { ...(o.platform ? { platform: parsePlatform(o.platform) } : {}) });
      } catch (e) {
        const msg = (e as Error).message.split('\n')[0];
        throw new NotFoundError(`unable to find image "${o.image}": ${msg}`);
      }
    }
    return img.id;
  }

  /** Validate everything that can be validated without side effects. */
  private parseOptions(o: CreateOptions): {
    resources: ReturnType<typeof parseResources>; ulimits: ReturnType<typeof parseUlimit>[]; ports: PortMapping[];
    vols: ReturnType<typeof parseVolumeSpec>[]; tmpfs: ReturnType<typeof parseTmpfs>[]; env: string[]; network: string;
    restart: RestartPolicy; noNewPrivileges: boolean; seccompUnconfined: boolean;
  } {
    const resources = parseResources(o);
    const ulimits = (o.ulimits ?? []).map(parseUlimit);
    const ports = (o.publish ?? []).map(parsePortSpec);
    const vols = (o.volumes ?? []).map(parseVolumeSpec);
    for (const v of vols) {
      if (!v.named && !existsSync(v.source)) throw new ConfigError('--volume', `bind source path "${v.source}" does not exist`);
    }
    const tmpfs = (o.tmpfs ?? []).map(parseTmpfs);
    const env: string[] = [];
    for (const f of o.envFiles ?? []) {
      let text: string;
      try { text = readFileSync(f, 'utf8'); } catch (e) { throw new ConfigError('--env-file', `cannot read "${f}": ${(e as Error).message}`); }
      env.push(...parseEnvFile(text));
    }
    env.push(...(o.env ?? []));
    const network = o.network ?? 'bridge';
    if (network !== 'none' && network !== 'host' && network !== 'bridge' && network !== 'default') this.networks.get(network);
    if (ports.length && (network === 'none' || network === 'host')) throw new ConfigError('--publish', `ports cannot be published with --network ${network}`);
    const restart = o.restart ?? 'no';
    if (!RESTART_RE.test(restart)) throw new ConfigError('--restart', `"${restart}": want no, on-failure[:N], always or unless-stopped`);
    if (restart !== 'no' && o.rm) throw new ConfigError('--restart', 'conflicts with --rm');
    let noNewPrivileges = false, seccompUnconfined = false;
    for (const s of o.securityOpt ?? []) {
      if (s === 'no-new-privileges' || s === 'no-new-privileges:true' || s === 'no-new-privileges=true') noNewPrivileges = true;
      else if (s === 'seccomp=unconfined' || s === 'seccomp:unconfined') seccompUnconfined = true;
      else throw new ConfigError('--security-opt', `"${s}" is not supported (no-new-privileges, seccomp=unconfined)`);
    }
    if (o.stopTimeout !== undefined && (!Number.isInteger(o.stopTimeout) || o.stopTimeout < -1)) throw new ConfigError('--stop-timeout', `"${o.stopTimeout}" is not a number of seconds`);
    if (o.stopSignal) parseSignal(normalizeSignal(o.stopSignal));
    return { resources, ulimits, ports, vols, tmpfs, env, network: network === 'default' ? 'bridge' : network, restart: (restart === 'unless-stopped' ? 'always' : restart) as RestartPolicy, noNewPrivileges, seccompUnconfined };
  }

  /** `berth create`: everything but the process. Nothing is left behind on failure. */
  async create(o: CreateOptions): Promise<ContainerRecord> {
    trace('create: begin');
    const p = this.parseOptions(o);
    if (o.name && this.containers.nameTaken(o.name)) {
      const holder = this.containers.resolve(o.name);
      throw new BerthError('ENAMETAKEN', `the container name "${o.name}" is already in use by container ${holder.id.slice(0, 12)}; remove it or pick another name`);
    }
    const id = ContainerStore.newId();
    const network = p.network === 'bridge' ? this.defaultNetworkName() : p.network;
    // Before anything is made for it: a kill -9 from here on is cleaned up by reconcile().
    this.containers.beginCreate(id, network);
    if (o.startSoon && network !== 'none' && network !== 'host' && p.ports.length === 0) this.beginNetwork(id, network, []);
    // The in-process runtime makes the cgroup directories meanwhile (start follows at once; a
    // container that fails later is torn down by cleanup, which removes its cgroup by path).
    const precreate = !!o.startSoon && this.createsInProcess();
    if (precreate) this.runtime.prepareCgroup(this.cgroupsPath(id));
    // ...and the init's cgroup migration will not wait for a grace period (warm.ts); start() takes over.
    const warmed = precreate ? keepCgroupMigrationWarm() : () => {};
    try {
      const rec = await this.createContainer(o, p, id, network);
      this.containers.endCreate(id);
      return rec;
    } catch (e) {
      await this.dropEarlyNetwork(id, network);
      if (precreate) await this.runtime.abandonCgroup(this.cgroupsPath(id)).catch(() => {});
      try { removeTree(this.cdir(id)); } catch { /* left for reconcile */ }
      throw e;
    } finally {
      warmed();
    }
  }

  /**
   * Make the container's network namespace (lo up) and begin the CNI ADD for `network`; the
   * attachment settles later (start() awaits it with the monitor). Kept in earlyNetworks.
   */
  private beginNetwork(id: string, network: string, ports: PortMapping[]): { nsFile: string; network: Promise<Attachment> } {
    const nsFile = this.netnsFile(id);
    removeNetns(nsFile);
    createNetns(nsFile);
    const att = this.networks.connect(network, { containerId: id, netns: nsFile, ports, loopback: false });
    att.catch(() => { /* awaited by start, cleanup or dropEarlyNetwork */ });
    const early = { nsFile, network: att };
    this.earlyNetworks.set(id, early);
    return early;
  }

  /**
   * Undo beginNetwork for a container whose create failed: the ADD settles first, then DEL runs
   * with the namespace still there (the veth is gone when this returns; failures need no speed).
   */
  private async dropEarlyNetwork(id: string, network: string): Promise<void> {
    const early = this.earlyNetworks.get(id);
    if (!early) return;
    this.earlyNetworks.delete(id);
    await early.network.catch(() => {});
    await this.networks.disconnect(network, { containerId: id, netns: early.nsFile, loopback: false }).catch(() => {});
    removeNetns(early.nsFile);
  }

  private async createContainer(o: CreateOptions, p: ReturnType<Engine['parseOptions']>, id: string, network: string): Promise<ContainerRecord> {
    const imageId = await this.resolveImage(o);
    const rf = await this.images.rootfsFor(imageId);
    trace('create: image resolved');
    const cfg: ImageRunConfig = rf.config.config ?? {};
    const name = o.name ?? this.containers.generateName();
    this.containers.claimName(name, id);
    const dir = this.cdir(id);
    const undo: (() => void)[] = [() => this.containers.releaseName(name, id), () => removeTree(dir)];
    try {
      mkdirSync(dir, { recursive: true, mode: 0o711 });
      this.mountRootfs(id, rf.lowerDirs, !!o.rm);
      undo.push(() => this.unmountRootfs(id));
      const rootfs = join(dir, 'rootfs');
      const readEtc = (f: string): string => { try { return readFileSync(join(rootfs, 'etc', f), 'utf8'); } catch { return ''; } };
      const passwd = readEtc('passwd'), group = readEtc('group');
      const user = resolveUser(o.user ?? cfg.User ?? '', passwd, group);
      const command = resolveCommand(cfg, o.args, o.entrypoint);
      // volumes: named (-v name:/p), anonymous (image Volumes), binds
      const volumes: VolumeMount[] = [];
      const volNames: string[] = [], anon: string[] = [];
      const dests = new Set<string>();
      for (const v of p.vols) {
        if (dests.has(v.destination)) throw new ConfigError('--volume', `duplicate mount point ${v.destination}`);
        dests.add(v.destination);
        if (v.named) {
          const created = !this.volumes.get(v.source);
          const vol = this.volumes.create(v.source, { ifMissing: true });
          if (created) undo.push(() => { try { this.volumes.remove(vol.name); } catch { /* in use */ } });
          this.volumes.initFrom(vol.name, join(rootfs, v.destination));
          volumes.push({ source: vol.mountpoint, destination: v.destination, readonly: v.readonly });
          volNames.push(vol.name);
        } else {
          volumes.push({ source: v.source, destination: v.destination, readonly: v.readonly });
        }
      }
      for (const d of Object.keys(cfg.Volumes ?? {})) {
        if (dests.has(d) || (o.tmpfs ?? []).some((t) => t.split(':')[0] === d)) continue;
        const vol = this.volumes.create(undefined, { anonymous: true });
        undo.push(() => { try { this.volumes.remove(vol.name); } catch { /* in use */ } });
        this.volumes.initFrom(vol.name, join(rootfs, d));
        volumes.push({ source: vol.mountpoint, destination: d, readonly: false });
        volNames.push(vol.name);
        anon.push(vol.name);
      }
      // working dir: created if missing (Docker does)
      const cwd = o.workdir ?? (cfg.WorkingDir || '/');
      if (!cwd.startsWith('/')) throw new ConfigError('--workdir', `"${cwd}" must be an absolute path`);
      const wd = join(rootfs, cwd);
      if (!existsSync(wd)) {
        mkdirSync(wd, { recursive: true, mode: 0o755 });
      }
      const hostname = o.hostname ?? (p.network === 'host' ? readFileSync('/proc/sys/kernel/hostname', 'utf8').trim() : id.slice(0, 12));
      if (o.hostname !== undefined && !/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(o.hostname)) throw new ConfigError('--hostname', `"${o.hostname}" is not a valid hostname`);
      const files = { hosts: join(dir, 'hosts'), hostname: join(dir, 'hostname'), resolv: join(dir, 'resolv.conf') };
      if (p.network === 'host') {
        copyFileSync('/etc/hosts', files.hosts);
      } else {
        writeHostsFile(files.hosts, [{ ip: '127.0.1.1', names: [hostname] }].filter(() => p.network === 'none'));
      }
      atomicWrite(files.hostname, `${hostname}\n`);
      if (p.network === 'host') { try { copyFileSync('/etc/resolv.conf', files.resolv); } catch { writeFileSync(files.resolv, ''); } } else writeResolvConf(files.resolv);
      const spec = buildSpec(cfg, {
        args: o.args, entrypoint: o.entrypoint, env: p.env, workdir: o.workdir, user: o.user, hostname,
        tty: !!o.tty, readOnly: o.readOnly, privileged: o.privileged, capAdd: o.capAdd, capDrop: o.capDrop,
        noNewPrivileges: p.noNewPrivileges, seccompUnconfined: p.seccompUnconfined, resources: p.resources,
        ulimits: p.ulimits, volumes, tmpfs: p.tmpfs, initPath: o.init ? initBinary() : undefined,
      }, {
        rootfs, cgroupsPath: this.cgroupsPath(id), passwd, group, hostsFile: files.hosts, hostnameFile: files.hostname,
        resolvFile: files.resolv, defaultHostname: hostname,
        // the namespace file start() creates (netns.ts createNetns): start need not rewrite the bundle
        network: p.network === 'host' ? 'host' : { path: this.netnsFile(id) },
      });
      void user;
      mkdirSync(this.bundleDir(id), { recursive: true });
      atomicWrite(join(this.bundleDir(id), 'config.json'), JSON.stringify(spec, null, 2));
      const rec: ContainerRecord = {
        id, name, created: new Date().toISOString(), image: o.image, imageId, command,
        options: { ...o, onPullProgress: undefined },
        tty: !!o.tty, stdinOpen: !!o.interactive, autoRemove: !!o.rm, restartPolicy: p.restart,
        stopSignal: normalizeSignal(o.stopSignal ?? cfg.StopSignal), stopTimeout: o.stopTimeout ?? 10,
        network, ip: null, ports: p.ports,
        volumes: volNames, anonVolumes: anon, hostname,
        status: 'created', monitorPid: 0, pid: 0, startedAt: null, finishedAt: null, exitCode: null,
        oomKilled: false, restartCount: 0, error: null, resourcesUp: true,
      };
      this.images.addImageUse(imageId, id);
      undo.push(() => this.images.removeImageUse(imageId, id));
      this.containers.save(rec);
      trace('create: done');
      return rec;
    } catch (e) {
      for (const u of undo.reverse()) { try { u(); } catch { /* keep undoing */ } }
      throw e;
    }
  }

  /** The init is created in this process through Runtime (berth-oci; BERTH_CLI_CREATE=1: by `berth-oci create`). */
  private createsInProcess(): boolean {
    return isBerthOci(this.runtimePath ?? defaultRuntimePath()) && process.env.BERTH_CLI_CREATE !== '1';
  }

  private defaultNetworkName(): string { return this.networks.ensureDefault().name; }

  /**
   * Mount the container's overlay rootfs. `volatile` (--rm containers, whose upper layer is
   * thrown away when they exit; podman does the same for --rm): overlayfs skips syncing the upper
   * filesystem, above all on unmount, which otherwise flushes the whole host filesystem under it
   * (15-50 ms on every `run --rm` here). A volatile mount leaves work/work/incompat/volatile,
   * which makes overlayfs refuse any later mount of the same upper: only such a container has
   * it, and its upper is disposable, so it is removed before mounting again. Kernels without
   * the option (< 5.10) get a plain mount.
   */
  private mountRootfs(id: string, lowers: string[], volatile = false): void {
    const dir = this.cdir(id);
    const target = join(dir, 'rootfs');
    if (isMountpoint(target)) return;
    for (const d of ['upper', 'work', 'rootfs']) mkdirSync(join(dir, d), { recursive: true, mode: 0o755 });
    rmSync(join(dir, 'work', 'work', 'incompat'), { recursive: true, force: true });
    const data = `lowerdir=${[...lowers].reverse().join(':')},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`;
    if (volatile) {
      try { mount('overlay', target, 'overlay', 0, `${data},volatile`); return; } catch { /* no volatile here: plain mount */ }
    }
    mount('overlay', target, 'overlay', 0, data);
  }

  private unmountRootfs(id: string): void {
    const target = join(this.cdir(id), 'rootfs');
    for (let i = 0; i < 8 && isMountpoint(target); i++) umount(target, MNT_DETACH);
  }

  // ------------------------------------------------------------------ start

  /**
   * Start a created or exited container: monitor (created) → network → `beforeStart` (attach)
   * → start. On failure everything started is torn down again.
   */
  async start(ref: string | ContainerRecord, opts: { beforeStart?: (rec: ContainerRecord) => Promise<void>; attached?: boolean } = {}): Promise<ContainerRecord> {
    let rec = typeof ref === 'string' ? this.get(ref) : ref;
    if (rec.status === 'running') return rec;
    if (rec.resourcesUp && rec.monitorPid > 0) { await this.cleanup(rec); rec = this.containers.load(rec.id) ?? rec; }
    const ports = rec.ports;
    for (const p of ports) {
      const other = this.list(false).find((c) => c.id !== rec.id && c.ports.some((q) => q.hostPort === p.hostPort && q.protocol === p.protocol));
      if (other) throw new BerthError('EADDRINUSE', `port ${p.hostPort}/${p.protocol} is already published by container ${other.name}`);
      if (!(await portFree(p))) throw new BerthError('EADDRINUSE', `cannot publish ${p.hostIP ?? '0.0.0.0'}:${p.hostPort}/${p.protocol}: port is already in use on the host`);
    }
    const runtimePath = this.runtimePath ?? defaultRuntimePath();
    const inProcess = isBerthOci(runtimePath);
    const createInProcess = this.createsInProcess();
    // until the monitor reports the init created (at most 2 s if an error comes first)
    const warmed = createInProcess ? keepCgroupMigrationWarm() : () => {};
    // mounted since create (berth run) unless the container ran and stopped: only then the image store
    if (!isMountpoint(join(this.cdir(rec.id), 'rootfs'))) this.mountRootfs(rec.id, (await this.images.rootfsFor(rec.imageId)).lowerDirs, rec.autoRemove);
    const sdir = this.sdir(rec.id);
    rmSync(sdir, { recursive: true, force: true });
    mkdirSync(sdir, { recursive: true, mode: 0o700 });
    const bridged = rec.network !== 'none' && rec.network !== 'host';
    const bundle = this.bundleDir(rec.id);
    const specPath = join(bundle, 'config.json');
    let spec: Spec | null = null;
    // With berth-oci the engine starts the container (and, when it waits for the exit itself, deletes
    // it) in-process through Runtime: no berth-oci process on those steps. Other runtimes
    // (runc in tests) and the monitor's restarts go through the runtime's CLI.
    // The first create in-process as well: the monitor starts a spawn zygote as its child and
    // hands it over, so the init we clone through it is the monitor's child (BERTH_CLI_CREATE=1:
    // the monitor runs `berth-oci create` instead).
    const handoff = createInProcess
      ? async (h: Handoff): Promise<{ pid: number; ptyMaster: number }> => {
        trace('start: monitor handed over');
        const c = await this.runtime.create(rec.id, {
          bundle, spec: spec!, zygoteSocket: h.zygoteSocket, stdio: h.stdio ?? [-1, -1, -1], pidFile: join(sdir, 'init.pid'),
        });
        trace('start: init created');
        return { pid: c.record.pid, ptyMaster: c.ptyMaster };
      }
      : undefined;
    // The network namespace is made first (lo up, bound to a file; netns.ts createNetns) and the
    // bundle joins it by path: restarts (by the monitor, through berth-oci) keep the same
    // namespace, address and ports. The CNI ADD (the slowest part, begun already by
    // create({ startSoon }) for `berth run`) runs while the monitor starts and the init is created.
    const nsFile = this.netnsFile(rec.id);
    let network: Promise<Attachment | null> = Promise.resolve(null);
    const early = this.earlyNetworks.get(rec.id);
    this.earlyNetworks.delete(rec.id);
    if (early) {
      network = early.network;
    } else if (rec.network !== 'host') {
      try {
        if (bridged) network = this.beginNetwork(rec.id, rec.network, rec.ports).network;
        else { removeNetns(nsFile); createNetns(nsFile); }
      } catch (e) {
        await this.cleanup(rec).catch(() => {});
        throw e;
      }
      this.earlyNetworks.delete(rec.id); // start awaits the ADD itself
    }
    trace('start: netns ready');
    // The monitor (and its zygote) come up while the bundle is loaded here; it takes the handoff
    // (or runs `<runtime> create`, which reads the bundle) only once that is done.
    let ready!: () => void, abort!: (e: unknown) => void;
    const prepared = new Promise<void>((res, rej) => { ready = res; abort = rej; });
    prepared.catch(() => { /* reported by the monitor's promise */ });
    const monitor = (async () => {
      if (!handoff) await prepared;
      return await startMonitor({
        externalStart: inProcess, handoff, handoffWhen: prepared, keep: inProcess && !!opts.attached && rec.restartPolicy === 'no',
        runtime: runtimePath, runtimeArgs: ['--root', join(this.state, 'runtime')],
        id: rec.id, bundle, exitFile: this.exitFile(rec.id), pidFile: join(sdir, 'init.pid'), logFile: this.logFile(rec.id),
        logMaxBytes: 10 * 1024 * 1024, ctlSocket: this.ctlSocket(rec.id), attachSocket: this.attachSocket(rec.id),
        consoleSocket: join(sdir, 'console.sock'), terminal: rec.tty, stdin: rec.stdinOpen, start: false,
        restart: rec.restartPolicy,
      });
    })();
    monitor.catch(() => { /* awaited below */ });
    try {
      try {
        spec = JSON.parse(readFileSync(specPath, 'utf8')) as Spec;
      } catch (e) {
        throw new BerthError('EBUNDLE', `cannot load the bundle of container ${rec.name} (${specPath}): ${(e as Error).message}`, { cause: e });
      }
      // create() already names the netns file (bundles of older containers may not)
      if (rec.network !== 'host' && !spec.linux!.namespaces!.some((n) => n.type === 'network' && n.path === nsFile)) {
        spec.linux!.namespaces = withNetnsPath(spec.linux!.namespaces!, nsFile);
        atomicWrite(specPath, JSON.stringify(spec, null, 2));
      }
      if (!rec.resourcesUp || rec.error !== null) {
        rec.resourcesUp = true;
        rec.error = null;
        this.containers.save(rec);
      }
      trace('start: bundle ready');
    } catch (e) {
      abort(e);
      await Promise.allSettled([monitor, network]);
      await this.cleanup(rec).catch(() => {});
      throw e;
    }
    ready();
    // both settle before anything is undone: a DEL must not race its ADD
    const [net, mon] = await Promise.allSettled([network, monitor]);
    warmed();
    if (mon.status === 'rejected') {
      await this.cleanup(rec).catch(() => {});
      throw new BerthError('ESTART', `cannot start container ${rec.name}: ${(mon.reason as Error).message.split('\n')[0]}`, { cause: mon.reason });
    }
    const handle = mon.value;
    trace('start: monitor reports created');
    rec.monitorPid = handle.monitorPid;
    rec.pid = handle.initPid;
    if (net.status === 'fulfilled' && net.value) rec.ip = net.value.ip;
    this.containers.save(rec);
    try {
      if (net.status === 'rejected') throw net.reason;
      if (net.value) this.writeHosts(rec);
      trace('start: network up');
      if (opts.beforeStart) await opts.beforeStart(rec);
      trace('start: attached');
      rec.pid = await startContainer(this.ctlSocket(rec.id));
      if (inProcess) await this.runtime.start(rec.id);
    } catch (e) {
      try { this.runtime.kill(rec.id, 'SIGKILL'); } catch { /* already gone */ }
      await waitForExit(this.exitFile(rec.id), rec.monitorPid, { timeoutMs: 10000 }).catch(() => {});
      await this.cleanup(rec).catch(() => {});
      throw e;
    }
    trace('start: started');
    rec.status = 'running';
    rec.startedAt = new Date().toISOString();
    rec.finishedAt = null;
    rec.exitCode = null;
    rec.oomKilled = false;
    this.containers.save(rec);
    return rec;
  }

  /**
   * /etc/hosts of every running container on rec's network: one entry by name per member, each
   * file's own entry first (hostname, then name). On start rec joins the members; when it leaves
   * (cleanup) the others' files are rewritten without it, so a peer's name never points at an
   * address the network may hand to another container.
   */
  private writeHosts(rec: ContainerRecord, leaving = false): void {
    const others = this.containers.list().filter((c) => c.id !== rec.id && c.network === rec.network && c.ip && c.resourcesUp && c.monitorPid > 0 && monitorAlive(c.monitorPid));
    const members = leaving ? others : [rec, ...others];
    for (const m of members) {
      const entries: HostEntry[] = [
        { ip: m.ip!, names: [m.hostname, m.name] },
        ...members.filter((c) => c !== m).map((c) => ({ ip: c.ip!, names: [c.name, c.hostname] })),
      ];
      const f = join(this.cdir(m.id), 'hosts');
      try { writeInPlace(f, (tmp) => writeHostsFile(tmp, entries)); } catch { /* member going away */ }
    }
  }

  /** Tear down what a started container holds (idempotent); records its exit. */
  async cleanup(rec: ContainerRecord): Promise<void> {
    trace('cleanup: begin');
    // a network setup begun by create({ startSoon }) or start() settles before it is undone
    const early = this.earlyNetworks.get(rec.id);
    if (early) { this.earlyNetworks.delete(rec.id); await early.network.catch(() => {}); }
    const ex = readExitStatus(this.exitFile(rec.id));
    if (ex) this.applyExit(rec, ex);
    else if (rec.status !== 'created' || rec.monitorPid > 0) {
      rec.status = 'exited';
      if (rec.exitCode === null) rec.exitCode = 137;
      rec.finishedAt ??= new Date().toISOString();
      if (!rec.error && rec.monitorPid > 0) rec.error = 'the container monitor died';
    }
    // The netns file goes first: the kernel then destroys the namespace and the veth in it in
    // the background (the init is gone or going), where the bridge plugin's DEL would delete the
    // veth itself and wait for it (~30 ms of RCU grace periods); with the namespace gone, DEL
    // only releases the address and port mappings (plugins accept a missing netns on DEL). So the
    // host end of the veth may outlive this call by a few ms (0-20 ms measured), inert: its peer's
    // namespace has no process left.
    // That CNI DEL (plugin processes, still the slow part) runs while the rest is torn down here.
    const nsFile = this.netnsFile(rec.id);
    removeNetns(nsFile);
    const network = rec.network !== 'none' && rec.network !== 'host'
      ? this.networks.disconnect(rec.network, { containerId: rec.id, netns: nsFile, ports: rec.ports }).catch(() => {})
      : Promise.resolve();
    // runtime state and the init process (the engine deletes in-process; or the monitor could not)
    try { await this.runtime.delete(rec.id, true); } catch { /* not there */ }
    trace('cleanup: runtime deleted');
    await this.runtime.abandonCgroup(this.cgroupsPath(rec.id)).catch(() => {}); // made ahead for a create that never came
    try {
      const cg = detectCgroupDriver().open(this.cgroupsPath(rec.id));
      if (cg.exists()) await cg.destroy();
    } catch { /* nothing there */ }
    this.unmountRootfs(rec.id);
    trace('cleanup: unmounted');
    await network;
    trace('cleanup: network down');
    removeTree(this.sdir(rec.id));
    const hadAddress = rec.ip !== null && rec.ip !== undefined && rec.network !== 'none' && rec.network !== 'host';
    rec.ip = null;
    rec.resourcesUp = false;
    rec.monitorPid = 0;
    rec.pid = 0;
    if (this.containers.load(rec.id)) this.containers.save(rec);
    if (hadAddress) this.writeHosts(rec, true);
  }

  // ------------------------------------------------------------------ stop / kill / wait

  /** Wait for the container to exit for good; returns Docker's exit code. */
  async wait(ref: string | ContainerRecord, timeoutMs = 2 ** 31 - 1): Promise<ContainerRecord> {
    const rec = typeof ref === 'string' ? this.get(ref) : ref;
    if (rec.monitorPid > 0 && monitorAlive(rec.monitorPid)) {
      await waitForExit(this.exitFile(rec.id), rec.monitorPid, { timeoutMs, pollMs: 25 }).catch((e) => {
        if (monitorAlive(rec.monitorPid)) throw e;
      });
    }
    trace('wait: exited');
    if (rec.resourcesUp) await this.cleanup(rec);
    trace('wait: cleaned up');
    return this.refresh(rec);
  }

  /** StopSignal, then SIGKILL after `timeout` seconds. */
  async stop(ref: string | ContainerRecord, timeout?: number): Promise<ContainerRecord> {
    const rec = typeof ref === 'string' ? this.get(ref) : ref;
    if (rec.monitorPid > 0 && monitorAlive(rec.monitorPid)) {
      await disableRestart(this.ctlSocket(rec.id)).catch(() => {});
      const t = timeout ?? rec.stopTimeout;
      try { this.runtime.kill(rec.id, rec.stopSignal); } catch { /* already exiting */ }
      const exited = await waitForExit(this.exitFile(rec.id), rec.monitorPid, { timeoutMs: Math.max(0, t) * 1000, pollMs: 25 }).then(() => true, () => false);
      if (!exited) {
        try { this.runtime.kill(rec.id, 'SIGKILL', true); } catch { /* gone */ }
        await waitForExit(this.exitFile(rec.id), rec.monitorPid, { timeoutMs: 15000, pollMs: 25 }).catch(() => {});
      }
    }
    if (rec.resourcesUp) await this.cleanup(rec);
    return rec;
  }

  kill(ref: string, signal = 'SIGKILL'): ContainerRecord {
    const rec = this.get(ref);
    if (rec.status !== 'running') throw new BerthError('ENOTRUNNING', `container ${rec.name} is not running`);
    const sig = normalizeSignal(signal);
    parseSignal(sig);
    if (sig === 'SIGKILL' || sig === '9') void disableRestart(this.ctlSocket(rec.id)).catch(() => {});
    this.runtime.kill(rec.id, sig);
    return rec;
  }

  async restart(ref: string, timeout?: number): Promise<ContainerRecord> {
    const rec = await this.stop(ref, timeout);
    return await this.start(rec.id);
  }

  /** Remove a container; running ones need force (killed first). */
  async rm(ref: string, o: { force?: boolean; volumes?: boolean } = {}): Promise<ContainerRecord> {
    const rec = this.get(ref);
    if (rec.status === 'running') {
      if (!o.force) throw new BerthError('ERUNNING', `container ${rec.name} is running: stop it first or use rm -f`);
      await disableRestart(this.ctlSocket(rec.id)).catch(() => {});
      try { this.runtime.kill(rec.id, 'SIGKILL', true); } catch { /* gone */ }
      await waitForExit(this.exitFile(rec.id), rec.monitorPid, { timeoutMs: 15000, pollMs: 25 }).catch(() => {});
    }
    if (rec.resourcesUp) await this.cleanup(rec);
    this.unmountRootfs(rec.id);
    try { this.images.removeImageUse(rec.imageId, rec.id); } catch { /* image gone */ }
    this.containers.remove(rec);
    trace('rm: done');
    if (o.volumes || rec.autoRemove) {
      for (const v of rec.anonVolumes) { try { this.volumes.remove(v, this.volumeUsers(v)); } catch { /* in use elsewhere */ } }
    }
    return rec;
  }

  volumeUsers(name: string): string[] {
    return this.containers.list().filter((c) => c.volumes.includes(name)).map((c) => c.name);
  }

  // ------------------------------------------------------------------ exec / top / stats

  /** Run a process in a running container; resolves with its exit code. */
  async exec(ref: string, args: string[], o: ExecOptions = {}): Promise<{ pid: number; ptyMaster: number; wait: () => Promise<number> }> {
    const rec = this.get(ref);
    if (rec.status !== 'running') throw new BerthError('ENOTRUNNING', `container ${rec.name} is not running`);
    if (!args.length) throw new ConfigError('exec', 'no command given');
    const spec = JSON.parse(readFileSync(join(this.bundleDir(rec.id), 'config.json'), 'utf8')) as Spec;
    const base = spec.process!;
    const rootfs = join(this.cdir(rec.id), 'rootfs');
    let user = base.user;
    if (o.user !== undefined) {
      const readEtc = (f: string): string => { try { return readFileSync(join(rootfs, 'etc', f), 'utf8'); } catch { return ''; } };
      const u = resolveUser(o.user, readEtc('passwd'), readEtc('group'));
      user = { uid: u.uid, gid: u.gid, ...(u.additionalGids ? { additionalGids: u.additionalGids } : {}) };
    }
    const proc: Process = {
      terminal: !!o.tty, user, args, env: mergeEnv(base.env ?? [], o.env ?? []), cwd: o.workdir ?? base.cwd,
      capabilities: base.capabilities, rlimits: base.rlimits, noNewPrivileges: base.noNewPrivileges,
    };
    const h = await this.runtime.exec(rec.id, proc, { stdio: o.stdio ?? [0, 1, 2] });
    return { pid: h.pid, ptyMaster: h.ptyMaster, wait: async () => (await h.wait()).exitCode };
  }

  /** Processes in the container: pid and command line (host pids). */
  top(ref: string): { pid: number; user: number; cmd: string }[] {
    const rec = this.get(ref);
    if (rec.status !== 'running') throw new BerthError('ENOTRUNNING', `container ${rec.name} is not running`);
    return this.runtime.ps(rec.id).map((pid) => {
      let cmd = '', user = 0;
      try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '); } catch { /* gone */ }
      try { user = statSync(`/proc/${pid}`).uid; } catch { /* gone */ }
      return { pid, user, cmd };
    });
  }

  /** `berth export`: the container's filesystem (image + changes) as a tar on out. */
  async exportTo(ref: string, out: Writable): Promise<void> {
    const rec = this.get(ref);
    const target = join(this.cdir(rec.id), 'rootfs');
    const wasMounted = isMountpoint(target);
    if (!wasMounted) this.mountRootfs(rec.id, (await this.images.rootfsFor(rec.imageId)).lowerDirs, rec.autoRemove);
    try {
      await packTreeTo(target, out);
    } finally {
      if (!wasMounted) this.unmountRootfs(rec.id);
    }
  }

  /** `berth commit`: the container's changes (its overlay upper dir) as a new image layer. */
  async commit(ref: string, opts: CommitOptions = {}): Promise<ImageRecord> {
    const rec = this.get(ref);
    return commitUpperDir(this.images, rec.imageId, join(this.cdir(rec.id), 'upper'), { createdBy: `berth commit ${rec.name}`, ...opts });
  }

  stats(ref: string): ReturnType<Runtime['stats']> {
    const rec = this.get(ref);
    if (rec.status !== 'running') throw new BerthError('ENOTRUNNING', `container ${rec.name} is not running`);
    return this.runtime.stats(rec.id);
  }

  /** Docker-like inspect document. */
  inspect(ref: string): Record<string, unknown> {
    const r = this.get(ref);
    let spec: Spec | null = null;
    try { spec = JSON.parse(readFileSync(join(this.bundleDir(r.id), 'config.json'), 'utf8')) as Spec; } catch { /* removed */ }
    const restarting = r.status === 'running' && (readExitStatus(this.exitFile(r.id))?.restarting ?? false);
    return {
      Id: r.id, Name: `/${r.name}`, Created: r.created, Path: r.command[0], Args: r.command.slice(1),
      State: {
        Status: restarting ? 'restarting' : r.status, Running: r.status === 'running', Restarting: restarting,
        OOMKilled: r.oomKilled, Dead: false, Pid: r.status === 'running' ? r.pid : 0, ExitCode: r.exitCode ?? 0,
        Error: r.error ?? '', StartedAt: r.startedAt ?? '0001-01-01T00:00:00Z', FinishedAt: r.finishedAt ?? '0001-01-01T00:00:00Z',
      },
      Image: r.imageId, RestartCount: r.restartCount, LogPath: this.logFile(r.id),
      HostConfig: {
        AutoRemove: r.autoRemove, RestartPolicy: { Name: r.restartPolicy.split(':')[0], MaximumRetryCount: Number(r.restartPolicy.split(':')[1] ?? 0) },
        NetworkMode: r.network, Memory: spec?.linux?.resources?.memory?.limit ?? 0, ReadonlyRootfs: spec?.root?.readonly ?? false,
        PortBindings: r.ports,
      },
      Config: {
        Hostname: r.hostname, User: spec?.process?.user ? `${spec.process.user.uid}:${spec.process.user.gid}` : '', Tty: r.tty, OpenStdin: r.stdinOpen,
        Env: spec?.process?.env ?? [], Cmd: r.command, Image: r.image, WorkingDir: spec?.process?.cwd ?? '/', StopSignal: r.stopSignal, StopTimeout: r.stopTimeout,
      },
      Mounts: (spec?.mounts ?? []).filter((m) => m.type === 'bind' && !['/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/dev/init'].includes(m.destination))
        .map((m) => {
          const vol = r.volumes.find((v) => m.source === this.volumes.get(v)?.mountpoint);
          return { Type: vol ? 'volume' : 'bind', Name: vol ?? undefined, Source: m.source, Destination: m.destination, RW: !(m.options ?? []).includes('ro') };
        }),
      NetworkSettings: { IPAddress: r.ip ?? '', Networks: r.network === 'none' || r.network === 'host' ? {} : { [r.network]: { IPAddress: r.ip ?? '' } }, Ports: r.ports },
    };
  }
}

/** Whether a path exists (lstat), for callers that must not follow links. */
export function lexists(p: string): boolean { try { lstatSync(p); return true; } catch { return false; } }
