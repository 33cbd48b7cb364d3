/**
 * CNI invocation: run the plugins in /usr/lib/cni the way the CNI spec (1.0.0) says — env
 * CNI_COMMAND/CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/CNI_PATH/CNI_ARGS, the network config on
 * stdin, the result (or an error {code,msg,details}) on stdout. Conflists run in order passing
 * prevResult; DEL runs in reverse. Each ADD result is stored (atomically) under a state dir so
 * DEL and CHECK get their prevResult, and DEL stays idempotent after the netns is gone.
 * Executing the plugins is the one sanctioned exec (ARCHITECTURE.md, Process model).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, ConfigError } from '../errors.js';

export const CNI_PATH = '/usr/lib/cni';
export const CNI_VERSION = '1.0.0';

/** A CNI plugin failed; cniCode is the spec's error code (0 when the plugin output no JSON). */
export class CniError extends BerthError {
  readonly cniCode: number;
  readonly details: string;
  readonly plugin: string;
  constructor(plugin: string, command: string, cniCode: number, msg: string, details = '') {
    super('ECNI', `CNI ${plugin} ${command} failed: ${msg}${details ? ` (${details})` : ''}${cniCode ? ` [CNI error ${cniCode}]` : ''}`);
    this.cniCode = cniCode;
    this.details = details;
    this.plugin = plugin;
  }
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

/** One plugin's network configuration (the `plugins[]` entry of a conflist). */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface NetworkConfList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: PluginConf[];
}

export interface CniIp { address: string; gateway?: string; interface?: number }
export interface CniInterface { name: string; mac?: string; sandbox?: string }
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIp[];
  routes?: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  [key: string]: unknown;
}

/** Per-attachment runtime parameters. */
export interface RuntimeConf {
  containerId: string;
  /** Netns path (/proc/<pid>/ns/net or a bind-mounted file); may be gone for DEL. */
  netns: string;
  ifname: string;
  /** CNI_ARGS key=value pairs. */
  args?: Record<string, string>;
  /** Values for plugins' declared capabilities, e.g. { portMappings: [...] }. */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniOptions {
  /** Directory where ADD results are stored (created if missing). */
  stateDir: string;
  /** Plugin search path (default /usr/lib/cni). */
  pluginPath?: string;
  /** Per-plugin timeout (default 30 s). */
  timeoutMs?: number;
}

/** Run one plugin binary with one command. Returns the parsed stdout (null when empty). */
export function execPlugin(conf: PluginConf & { cniVersion: string; name: string }, command: CniCommand, rt: RuntimeConf, opts: { pluginPath?: string; timeoutMs?: number } = {}): Promise<CniResult | null> {
  if (!/^[A-Za-z0-9._-]+$/.test(conf.type)) return Promise.reject(new ConfigError('type', `bad CNI plugin type "${conf.type}"`));
  const path = opts.pluginPath ?? CNI_PATH;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifname,
    CNI_PATH: path,
  };
  if (rt.args && Object.keys(rt.args).length) env.CNI_ARGS = Object.entries(rt.args).map(([k, v]) => `${k}=${v}`).join(';');
  const bin = join(path, conf.type);
  return new Promise((resolve, reject) => {
    const child = execFile(bin, [], { env, timeout: opts.timeoutMs ?? 30000, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      let parsed: Record<string, unknown> | null = null;
      if (stdout.trim()) {
        try { parsed = JSON.parse(stdout) as Record<string, unknown>; } catch { parsed = null; }
      }
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        if (e.code === 'ENOENT') { reject(new CniError(conf.type, command, 0, `plugin ${bin} not found`)); return; }
        if (parsed && typeof parsed.msg === 'string') {
          reject(new CniError(conf.type, command, Number(parsed.code ?? 0), parsed.msg, typeof parsed.details === 'string' ? parsed.details : ''));
          return;
        }
        reject(new CniError(conf.type, command, 0, e.killed ? `timed out after ${opts.timeoutMs ?? 30000} ms` : (stderr.trim() || stdout.trim() || err.message)));
        return;
      }
      resolve(parsed as CniResult | null);
    });
    child.stdin?.end(JSON.stringify(conf));
  });
}

/** The config one plugin of a list sees: name/cniVersion, runtimeConfig for its capabilities, prevResult. */
function pluginInput(list: NetworkConfList, p: PluginConf, rt: RuntimeConf, prev: CniResult | null): PluginConf & { cniVersion: string; name: string } {
  const conf: PluginConf & { cniVersion: string; name: string } = { ...p, cniVersion: list.cniVersion, name: list.name };
  if (p.capabilities && rt.capabilityArgs) {
    const runtimeConfig: Record<string, unknown> = {};
    for (const [cap, on] of Object.entries(p.capabilities)) {
      if (on && rt.capabilityArgs[cap] !== undefined) runtimeConfig[cap] = rt.capabilityArgs[cap];
    }
    if (Object.keys(runtimeConfig).length) conf.runtimeConfig = runtimeConfig;
  }
  delete conf.capabilities;
  if (prev) conf.prevResult = prev;
  return conf;
}

function resultFile(stateDir: string, list: NetworkConfList, rt: RuntimeConf): string {
  for (const [what, v] of [['network name', list.name], ['container id', rt.containerId], ['interface name', rt.ifname]]) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(v)) throw new ConfigError(what, `"${v}" is not a safe name`);
  }
  return join(stateDir, `${list.name}-${rt.containerId}-${rt.ifname}.json`);
}

/** What an ADD stored: the conflist and runtime parameters it ran with, and its result. */
export interface StoredAttachment { list: NetworkConfList; rt: RuntimeConf; result: CniResult }

function store(file: string, data: StoredAttachment): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data));
  renameSync(tmp, file);
}

/** The stored ADD result for this attachment, or null. */
export function loadResult(list: NetworkConfList, rt: RuntimeConf, opts: CniOptions): CniResult | null {
  try {
    return (JSON.parse(readFileSync(resultFile(opts.stateDir, list, rt), 'utf8')) as StoredAttachment).result;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** The stored ADD (list, runtime parameters, result) for this attachment, or null. */
export function loadAttachment(list: Pick<NetworkConfList, 'name'>, rt: RuntimeConf, opts: CniOptions): StoredAttachment | null {
  try {
    return JSON.parse(readFileSync(resultFile(opts.stateDir, list as NetworkConfList, rt), 'utf8')) as StoredAttachment;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** ADD every plugin of the list in order; on failure DELs what was added and rethrows. */
export async function addNetworkList(list: NetworkConfList, rt: RuntimeConf, opts: CniOptions): Promise<CniResult> {
  const file = resultFile(opts.stateDir, list, rt);
  mkdirSync(opts.stateDir, { recursive: true });
  let prev: CniResult | null = null;
  try {
    for (const p of list.plugins) {
      const r = await execPlugin(pluginInput(list, p, rt, prev), 'ADD', rt, opts);
      if (r) prev = r;
    }
  } catch (err) {
    await runDel(list, rt, prev, opts).catch(() => { /* best effort; the ADD error matters */ });
    throw err;
  }
  const result = prev ?? { cniVersion: list.cniVersion };
  store(file, { list, rt, result });
  return result;
}

async function runDel(list: NetworkConfList, rt: RuntimeConf, prev: CniResult | null, opts: CniOptions): Promise<void> {
  let first: unknown = null;
  for (const p of [...list.plugins].reverse()) {
    try {
      await execPlugin(pluginInput(list, p, rt, prev), 'DEL', rt, opts);
    } catch (e) {
      first ??= e;
    }
  }
  if (first) throw first;
}

/** DEL in reverse order with the stored prevResult; removes the stored result. Idempotent. */
export async function delNetworkList(list: NetworkConfList, rt: RuntimeConf, opts: CniOptions): Promise<void> {
  const file = resultFile(opts.stateDir, list, rt);
  let stored: StoredAttachment | null = null;
  try { stored = JSON.parse(readFileSync(file, 'utf8')) as StoredAttachment; } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  // The ADD's capability args (port mappings) let portmap find what to remove.
  const delRt: RuntimeConf = { ...rt, capabilityArgs: rt.capabilityArgs ?? stored?.rt.capabilityArgs };
  await runDel(list, delRt, stored?.result ?? null, opts);
  rmSync(file, { force: true });
}

/** CHECK every plugin with the stored prevResult; throws CniError when the attachment is broken. */
export async function checkNetworkList(list: NetworkConfList, rt: RuntimeConf, opts: CniOptions): Promise<void> {
  if (list.disableCheck) return;
  const prev = loadResult(list, rt, opts);
  if (!prev) throw new BerthError('ENOTFOUND', `no stored CNI result for ${rt.containerId} on network ${list.name} (${rt.ifname})`);
  for (const p of list.plugins) await execPlugin(pluginInput(list, p, rt, prev), 'CHECK', rt, opts);
}
