/**
 * Network definitions and container attachment. Networks are JSON records under
 * `<root>/networks/` (created atomically with link(), so two concurrent creates of one name
 * cannot both win); each becomes a CNI conflist: bridge (host-local IPAM, dataDir under the
 * root, isGateway, no ipMasq) + portmap (portMappings capability) when ports are published; the
 * portmap plugin is left out of an attachment without ports (it would do nothing but cost an exec),
 * and DEL runs it whenever the stored ADD had ports, or when nothing was stored. The default
 * network "berth" uses bridge berth0 on 10.203.0.0/16. `lo` is brought up by the loopback plugin
 * (in parallel with the bridge) unless the caller did it (the engine: netns.ts createNetns).
 */
import { linkSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BerthError, ConfigError, NotFoundError } from '../errors.js';
import { addNetworkList, delNetworkList, checkNetworkList, loadAttachment, CNI_VERSION, type CniResult, type NetworkConfList, type RuntimeConf } from './cni.js';
import { deleteBridge } from './bridge-ioctl.js';

export const DEFAULT_NETWORK = 'berth';
export const DEFAULT_BRIDGE = 'berth0';
export const DEFAULT_SUBNET = '10.203.0.0/16';
/** User networks without --subnet get a /24 out of this range. */
export const USER_SUBNET_POOL = '10.204.0.0/16';

export interface NetworkDef {
  name: string;
  id: string;
  driver: 'bridge';
  bridge: string;
  subnet: string;
  gateway: string;
  created: string;
}

export interface PortMapping {
  hostIP?: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
}

export interface NetworkStoreOptions {
  /** Overrides for the default network (tests use their own bridge/subnet). */
  defaultName?: string;
  defaultBridge?: string;
  defaultSubnet?: string;
  subnetPool?: string;
  pluginPath?: string;
}

export interface Attachment {
  network: string;
  ifname: string;
  result: CniResult;
  /** The container's address on this network (without prefix length). */
  ip: string | null;
}

// ---------- IPv4 CIDR helpers ----------

function ipToInt(ip: string): number {
  const p = ip.split('.');
  if (p.length !== 4 || p.some((x) => !/^\d{1,3}$/.test(x) || Number(x) > 255)) throw new ConfigError('subnet', `"${ip}" is not an IPv4 address`);
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}
function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr { base: number; bits: number }

export function parseCidr(s: string): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(s);
  if (!m || Number(m[2]) > 32) throw new ConfigError('subnet', `"${s}" is not an IPv4 subnet like 10.204.1.0/24`);
  const bits = Number(m[2]);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const ip = ipToInt(m[1]);
  if ((ip & mask) >>> 0 !== ip) throw new ConfigError('subnet', `"${s}" has host bits set; did you mean ${intToIp((ip & mask) >>> 0)}/${bits}?`);
  return { base: ip, bits };
}

function cidrEnd(c: Cidr): number { return c.base + 2 ** (32 - c.bits) - 1; }

export function cidrOverlap(a: string, b: string): boolean {
  const x = parseCidr(a), y = parseCidr(b);
  return x.base <= cidrEnd(y) && y.base <= cidrEnd(x);
}

function firstHost(c: Cidr): string { return intToIp(c.base + 1); }

// ---------- -p parsing ----------

/** Parse a docker `-p [ip:]hostPort:containerPort[/proto]` value. */
export function parsePortSpec(spec: string): PortMapping {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)(?:\/(tcp|udp|sctp))?$/.exec(spec);
  if (!m) throw new ConfigError('publish', `"${spec}": want [ip:]hostPort:containerPort[/tcp|udp|sctp]`);
  const hostPort = Number(m[2]), containerPort = Number(m[3]);
  for (const [what, v] of [['host port', hostPort], ['container port', containerPort]] as const) {
    if (v < 1 || v > 65535) throw new ConfigError('publish', `"${spec}": ${what} ${v} is not in 1..65535`);
  }
  if (m[1]) ipToInt(m[1]);
  const pm: PortMapping = { hostPort, containerPort, protocol: (m[4] ?? 'tcp') as PortMapping['protocol'] };
  if (m[1]) pm.hostIP = m[1];
  return pm;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export class NetworkStore {
  readonly root: string;
  private readonly o: Required<NetworkStoreOptions>;

  constructor(root: string, opts: NetworkStoreOptions = {}) {
    this.root = root;
    this.o = {
      defaultName: opts.defaultName ?? DEFAULT_NETWORK,
      defaultBridge: opts.defaultBridge ?? DEFAULT_BRIDGE,
      defaultSubnet: opts.defaultSubnet ?? DEFAULT_SUBNET,
      subnetPool: opts.subnetPool ?? USER_SUBNET_POOL,
      pluginPath: opts.pluginPath ?? '/usr/lib/cni',
    };
    mkdirSync(this.netDir, { recursive: true });
  }

  private get netDir(): string { return join(this.root, 'networks'); }
  get ipamDir(): string { return join(this.root, 'ipam'); }
  get stateDir(): string { return join(this.root, 'cni-results'); }

  /** Create the default network's record if missing; returns it. */
  ensureDefault(): NetworkDef {
    try { return this.get(this.o.defaultName); } catch (e) { if (!(e instanceof NotFoundError)) throw e; }
    try {
      return this.write({ name: this.o.defaultName, bridge: this.o.defaultBridge, subnet: this.o.defaultSubnet });
    } catch (e) {
      if (e instanceof BerthError && e.code === 'EEXIST') return this.get(this.o.defaultName);
      throw e;
    }
  }

  list(): NetworkDef[] {
    return readdirSync(this.netDir).filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(this.netDir, f), 'utf8')) as NetworkDef)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): NetworkDef {
    if (!NAME_RE.test(name)) throw new NotFoundError(`network "${name}" not found`);
    try {
      return JSON.parse(readFileSync(join(this.netDir, `${name}.json`), 'utf8')) as NetworkDef;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`network "${name}" not found (see berth network ls)`);
      throw e;
    }
  }

  /** Create a user-defined bridge network; subnet defaults to a free /24 of the pool. */
  create(req: { name: string; subnet?: string; bridge?: string }): NetworkDef {
    if (!NAME_RE.test(req.name)) throw new ConfigError('name', `"${req.name}": network names are letters, digits, _ . - (max 64)`);
    if (['host', 'none', 'bridge', 'default'].includes(req.name)) throw new ConfigError('name', `"${req.name}" is a reserved network name`);
    if (req.bridge !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(req.bridge)) throw new ConfigError('bridge', `"${req.bridge}" is not a valid interface name (max 15 chars)`);
    this.ensureDefault();
    return this.write({ name: req.name, subnet: req.subnet ?? this.freeSubnet(), bridge: req.bridge });
  }

  private freeSubnet(): string {
    const pool = parseCidr(this.o.subnetPool);
    const used = this.list().map((n) => n.subnet);
    for (let b = pool.base; b + 255 <= cidrEnd(pool); b += 256) {
      const cand = `${intToIp(b)}/24`;
      if (!used.some((u) => cidrOverlap(u, cand))) return cand;
    }
    throw new BerthError('ENOSPC', `no free /24 left in ${this.o.subnetPool}; pass --subnet`);
  }

  private write(req: { name: string; subnet: string; bridge?: string }): NetworkDef {
    const c = parseCidr(req.subnet);
    if (c.bits < 8 || c.bits > 30) throw new ConfigError('subnet', `"${req.subnet}": a network's prefix length must be 8..30`);
    const existing = this.list();
    if (existing.some((n) => n.name === req.name)) throw new BerthError('EEXIST', `network "${req.name}" already exists`);
    const clash = existing.find((n) => cidrOverlap(n.subnet, req.subnet));
    if (clash) throw new BerthError('EOVERLAP', `subnet ${req.subnet} overlaps network "${clash.name}" (${clash.subnet})`);
    const id = randomBytes(16).toString('hex');
    const bridge = req.bridge ?? `berth-${id.slice(0, 8)}`;
    const clashBr = existing.find((n) => n.bridge === bridge);
    if (clashBr) throw new BerthError('EEXIST', `bridge ${bridge} is already used by network "${clashBr.name}"`);
    const def: NetworkDef = { name: req.name, id, driver: 'bridge', bridge, subnet: req.subnet, gateway: firstHost(c), created: new Date().toISOString() };
    const final = join(this.netDir, `${req.name}.json`);
    const tmp = `${final}.${process.pid}.${id.slice(0, 6)}.tmp`;
    writeFileSync(tmp, JSON.stringify(def, null, 2));
    try {
      linkSync(tmp, final);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new BerthError('EEXIST', `network "${req.name}" already exists`);
      throw e;
    } finally {
      rmSync(tmp, { force: true });
    }
    return def;
  }

  /** Names of containers with a stored attachment on this network. */
  attachedContainers(name: string): string[] {
    let files: string[];
    try { files = readdirSync(this.stateDir); } catch { return []; }
    const prefix = `${name}-`;
    return files.filter((f) => f.startsWith(prefix) && f.endsWith('.json'))
      .map((f) => f.slice(prefix.length, -'.json'.length).replace(/-[^-]+$/, ''));
  }

  /** Remove a user network: refuses the default and networks with containers; deletes its bridge. */
  remove(name: string): void {
    const def = this.get(name);
    if (name === this.o.defaultName) throw new BerthError('EBUSY', `"${name}" is the default network and cannot be removed`);
    const users = this.attachedContainers(name);
    if (users.length) throw new BerthError('EBUSY', `network "${name}" has containers attached: ${users.join(', ')}`);
    deleteBridge(def.bridge);
    rmSync(join(this.ipamDir, name), { recursive: true, force: true });
    rmSync(join(this.netDir, `${name}.json`), { force: true });
  }

  /** Delete the default network's bridge too (tests, `berth system reset`). */
  removeDefaultBridge(): void {
    try { deleteBridge(this.get(this.o.defaultName).bridge); } catch (e) { if (!(e instanceof NotFoundError)) throw e; }
  }

  /** The CNI conflist for a network; without portmap when `portmap` is false. */
  confList(def: NetworkDef, opts: { portmap?: boolean } = {}): NetworkConfList {
    const c = parseCidr(def.subnet);
    return {
      cniVersion: CNI_VERSION,
      name: def.name,
      plugins: [
        {
          type: 'bridge', bridge: def.bridge, isGateway: true, ipMasq: false, hairpinMode: true,
          ipam: {
            type: 'host-local', dataDir: this.ipamDir,
            ranges: [[{ subnet: def.subnet, gateway: def.gateway, rangeStart: intToIp(c.base + 2) }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        ...(opts.portmap === false ? [] : [{ type: 'portmap', capabilities: { portMappings: true }, snat: true }]),
      ],
    };
  }

  private loopbackList(): NetworkConfList {
    return { cniVersion: CNI_VERSION, name: 'loopback', plugins: [{ type: 'loopback' }] };
  }

  private cniOpts(): { stateDir: string; pluginPath: string } {
    return { stateDir: this.stateDir, pluginPath: this.o.pluginPath };
  }

  /**
   * Attach the container's netns to a network (ADD; result stored), and bring lo up through the
   * loopback plugin (in parallel) unless `loopback` is false. portmap runs only with ports.
   */
  async connect(network: string, c: { containerId: string; netns: string; ifname?: string; ports?: PortMapping[]; loopback?: boolean }): Promise<Attachment> {
    const def = network === this.o.defaultName ? this.ensureDefault() : this.get(network);
    const ifname = c.ifname ?? 'eth0';
    const ports = c.ports?.length ? c.ports : null;
    const rt: RuntimeConf = { containerId: c.containerId, netns: c.netns, ifname, capabilityArgs: ports ? { portMappings: ports } : undefined };
    const lo: RuntimeConf = { containerId: c.containerId, netns: c.netns, ifname: 'lo' };
    const [loR, brR] = await Promise.allSettled([
      c.loopback !== false ? addNetworkList(this.loopbackList(), lo, this.cniOpts()) : Promise.resolve(null),
      addNetworkList(this.confList(def, { portmap: !!ports }), rt, this.cniOpts()),
    ]);
    if (loR.status === 'rejected' || brR.status === 'rejected') {
      // each addNetworkList undid itself; undo the one that worked
      if (loR.status === 'fulfilled' && loR.value) await delNetworkList(this.loopbackList(), lo, this.cniOpts()).catch(() => {});
      if (brR.status === 'fulfilled') await this.disconnect(network, { ...c, loopback: false }).catch(() => {});
      throw brR.status === 'rejected' ? brR.reason : (loR as PromiseRejectedResult).reason;
    }
    const result = brR.value;
    const ip = result.ips?.find((x) => x.address.includes('.'))?.address.split('/')[0] ?? null;
    return { network: def.name, ifname, result, ip };
  }

  /**
   * DEL the attachment (idempotent; works after the netns is gone). portmap runs when ports are
   * given, when the stored ADD had port mappings, or when no ADD is stored (to be safe); the
   * loopback plugin's DEL only when its ADD is stored (and not `loopback: false`), in parallel.
   */
  async disconnect(network: string, c: { containerId: string; netns: string; ifname?: string; ports?: PortMapping[]; loopback?: boolean }): Promise<void> {
    let def: NetworkDef | null = null;
    try { def = this.get(network); } catch (e) { if (!(e instanceof NotFoundError)) throw e; }
    const ifname = c.ifname ?? 'eth0';
    const lo: RuntimeConf = { containerId: c.containerId, netns: c.netns, ifname: 'lo' };
    const delBridge = async (): Promise<void> => {
      if (!def) return;
      const rt: RuntimeConf = { containerId: c.containerId, netns: c.netns, ifname, capabilityArgs: c.ports?.length ? { portMappings: c.ports } : undefined };
      const stored = loadAttachment({ name: def.name }, rt, this.cniOpts());
      const storedPorts = stored?.rt.capabilityArgs?.portMappings;
      const portmap = !!c.ports?.length || !stored || (Array.isArray(storedPorts) && storedPorts.length > 0) || stored.list.plugins.some((p) => p.type === 'portmap');
      await delNetworkList(this.confList(def, { portmap }), rt, this.cniOpts());
    };
    const delLo = async (): Promise<void> => {
      if (c.loopback === false || !loadAttachment(this.loopbackList(), lo, this.cniOpts())) return;
      await delNetworkList(this.loopbackList(), lo, this.cniOpts());
    };
    const [a, b] = await Promise.allSettled([delBridge(), delLo()]);
    if (a.status === 'rejected') throw a.reason;
    if (b.status === 'rejected') throw b.reason;
  }

  /** CHECK a stored attachment. */
  async check(network: string, c: { containerId: string; netns: string; ifname?: string }): Promise<void> {
    const def = this.get(network);
    const rt: RuntimeConf = { containerId: c.containerId, netns: c.netns, ifname: c.ifname ?? 'eth0' };
    // the plugins the ADD ran (portmap only with ports)
    const stored = loadAttachment({ name: def.name }, rt, this.cniOpts());
    const portmap = stored ? stored.list.plugins.some((p) => p.type === 'portmap') : true;
    await checkNetworkList(this.confList(def, { portmap }), { ...rt, capabilityArgs: stored?.rt.capabilityArgs }, this.cniOpts());
  }
}
