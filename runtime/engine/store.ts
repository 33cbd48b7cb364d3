/**
 * Container records under <root>/containers/<id>/container.json: one directory per container,
 * the JSON replaced atomically (temp + rename; never rewritten in place). Names are claimed with
 * O_EXCL files under <root>/containers/.names/<name> (holding the id), so two concurrent
 * creates of one name cannot both win. Ids are 64 hex; any unique prefix resolves.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { removeTree } from '../linux/remove-tree.js';
import { readProcStat } from '../oci/state.js';
import { join } from 'node:path';
import { BerthError, ConfigError, NotFoundError } from '../errors.js';
import { randomBytes, randomHex } from '../linux/random.js';
import type { RestartPolicy } from './monitor.js';

export type ContainerStatus = 'created' | 'running' | 'exited';

export interface PortBinding { hostIP?: string; hostPort: number; containerPort: number; protocol: 'tcp' | 'udp' | 'sctp' }

export interface ContainerRecord {
  id: string;
  name: string;
  created: string;
  image: string;
  imageId: string;
  /** argv as run (after Entrypoint/Cmd resolution). */
  command: string[];
  /** What `berth run` was asked for, kept to recreate the spec at restart. */
  options: Record<string, unknown>;
  tty: boolean;
  stdinOpen: boolean;
  autoRemove: boolean;
  restartPolicy: RestartPolicy;
  stopSignal: string;
  stopTimeout: number;
  /** 'none' | 'host' | network name. */
  network: string;
  ip: string | null;
  ports: PortBinding[];
  /** Volume names this container mounts (named and anonymous). */
  volumes: string[];
  anonVolumes: string[];
  hostname: string;
  // ---- state ----
  status: ContainerStatus;
  monitorPid: number;
  pid: number;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
  oomKilled: boolean;
  restartCount: number;
  error: string | null;
  /** Whether rootfs/network are currently set up (cleared by cleanup/reconcile). */
  resourcesUp: boolean;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const ADJ = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'quiet', 'sharp', 'tender', 'vivid', 'witty'];
const NOUN = ['albatross', 'bollard', 'capstan', 'dinghy', 'ensign', 'ferry', 'galley', 'harbour', 'jetty', 'keel', 'lighthouse', 'mooring', 'pier', 'quay', 'rudder', 'schooner'];

const CREATING = 'creating.json';
const ID_RE = /^[0-9a-f]{64}$/;
const CREATING_TMP_RE = /^\.[0-9a-f]{64}\.creating$/;

/** What beginCreate() leaves in a container's directory until the first save. */
export interface CreatingMarker { pid: number; startTime: string; network: string }

export class ContainerStore {
  readonly dir: string;
  private readonly namesDir: string;

  constructor(root: string) {
    this.dir = join(root, 'containers');
    this.namesDir = join(this.dir, '.names');
    mkdirSync(this.namesDir, { recursive: true, mode: 0o711 });
  }

  containerDir(id: string): string { return join(this.dir, id); }

  static newId(): string { return randomHex(32); }

  generateName(): string {
    for (let i = 0; i < 50; i++) {
      const r = randomBytes(4);
      const n = `${ADJ[r[0] % ADJ.length]}_${NOUN[r[1] % NOUN.length]}${i > 10 ? r.subarray(2).toString('hex') : ''}`;
      if (!this.nameTaken(n)) return n;
    }
    return `berth_${randomHex(4)}`;
  }

  nameTaken(name: string): boolean {
    try { readFileSync(join(this.namesDir, name)); return true; } catch { return false; }
  }

  /** Claim `name` for `id`; throws EEXIST (naming the holder) when taken. */
  claimName(name: string, id: string): void {
    if (!NAME_RE.test(name) || name.length > 128) throw new ConfigError('--name', `"${name}": names are letters, digits, _ . - and start with a letter or digit`);
    let fd: number;
    try { fd = openSync(join(this.namesDir, name), 'wx', 0o644); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        let holder = '';
        try { holder = readFileSync(join(this.namesDir, name), 'utf8').slice(0, 12); } catch { /* racing remove */ }
        throw new BerthError('ENAMETAKEN', `the container name "${name}" is already in use by container ${holder}; remove it or pick another name`);
      }
      throw e;
    }
    try { writeSync(fd, id); } finally { closeSync(fd); }
  }

  releaseName(name: string, id: string): void {
    try { if (readFileSync(join(this.namesDir, name), 'utf8') === id) rmSync(join(this.namesDir, name), { force: true }); } catch { /* gone */ }
  }

  save(rec: ContainerRecord): void {
    const d = this.containerDir(rec.id);
    mkdirSync(d, { recursive: true, mode: 0o711 });
    const final = join(d, 'container.json');
    const tmp = `${final}.${process.pid}.${randomHex(3)}.tmp`;
    writeFileSync(tmp, JSON.stringify(rec, null, 2));
    renameSync(tmp, final);
  }

  load(id: string): ContainerRecord | null {
    try { return JSON.parse(readFileSync(join(this.containerDir(id), 'container.json'), 'utf8')) as ContainerRecord; } catch { return null; }
  }

  ids(): string[] {
    return readdirSync(this.dir).filter((f) => ID_RE.test(f));
  }

  list(): ContainerRecord[] {
    const out: ContainerRecord[] = [];
    for (const id of this.ids()) { const r = this.load(id); if (r) out.push(r); }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  /**
   * A create begins: the container's directory appears (renamed into place, so never without it)
   * holding creating.json: who creates it and which network it joins. Until endCreate() (after
   * the first save) a kill -9 of that process leaves a directory, maybe a mounted rootfs,
   * cgroups, a network namespace and a CNI attachment, and no record: abandoned() finds them.
   */
  beginCreate(id: string, network: string): void {
    const tmp = join(this.dir, `.${id}.creating`);
    mkdirSync(tmp, { mode: 0o711 });
    const marker: CreatingMarker = { pid: process.pid, startTime: readProcStat(process.pid)?.startTime ?? '0', network };
    writeFileSync(join(tmp, CREATING), JSON.stringify(marker));
    renameSync(tmp, this.containerDir(id));
  }

  endCreate(id: string): void {
    rmSync(join(this.containerDir(id), CREATING), { force: true });
  }

  /**
   * Directories of creates whose process died before the first save (see beginCreate). Runs on
   * every Engine.open: one readdir, one stat per container; a marker is read only where there is
   * no record.
   */
  abandoned(): { id: string; marker: CreatingMarker | null }[] {
    const out: { id: string; marker: CreatingMarker | null }[] = [];
    const creatorOf = (dir: string): { marker: CreatingMarker | null; alive: boolean } => {
      let marker: CreatingMarker | null = null;
      try { marker = JSON.parse(readFileSync(join(dir, CREATING), 'utf8')) as CreatingMarker; } catch { /* none, or torn */ }
      return { marker, alive: marker !== null && readProcStat(marker.pid)?.startTime === marker.startTime };
    };
    for (const f of readdirSync(this.dir)) {
      if (ID_RE.test(f)) {
        const dir = this.containerDir(f);
        if (existsSync(join(dir, 'container.json'))) continue; // recorded: reconcile's other half
        const { marker, alive } = creatorOf(dir);
        if (!alive) out.push({ id: f, marker }); // else being created now
      } else if (CREATING_TMP_RE.test(f)) {
        // killed between beginCreate's mkdir and its rename: a hidden directory with the marker at most
        const dir = join(this.dir, f);
        const { marker, alive } = creatorOf(dir);
        if (alive || (!marker && Date.now() - statSync(dir).mtimeMs < 10_000)) continue; // its marker may be on its way
        removeTree(dir);
      }
    }
    return out;
  }

  /** Free every name held by `id`. */
  releaseNamesOf(id: string): void {
    for (const n of readdirSync(this.namesDir)) this.releaseName(n, id);
  }

  /** Name, full id or unique id prefix → record. */
  resolve(ref: string): ContainerRecord {
    if (!ref) throw new NotFoundError('no container given');
    if (NAME_RE.test(ref)) {
      try {
        const id = readFileSync(join(this.namesDir, ref), 'utf8');
        const r = this.load(id);
        if (r) return r;
      } catch { /* not a name */ }
    }
    if (/^[0-9a-f]+$/.test(ref)) {
      const hits = this.ids().filter((i) => i.startsWith(ref));
      if (hits.length > 1) throw new BerthError('EAMBIGUOUS', `container id prefix "${ref}" is ambiguous: ${hits.length} containers match; give more characters`);
      if (hits.length === 1) { const r = this.load(hits[0]); if (r) return r; }
    }
    throw new NotFoundError(`no such container: ${ref}`);
  }

  /** Remove the container's directory (never through a mount left in it), then free its name. */
  remove(rec: ContainerRecord): void {
    removeTree(this.containerDir(rec.id));
    this.releaseName(rec.name, rec.id);
  }
}
