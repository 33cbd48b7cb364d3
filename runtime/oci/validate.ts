/**
 * Loading and validating a bundle's config.json. Every problem names the JSON path of the field
 * at fault (`process.args: must be a non-empty array of strings`), as a ConfigError.
 */
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Spec, NamespaceType } from './spec.js';

const NS_TYPES: readonly NamespaceType[] = ['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time'];

type Json = unknown;

function isObj(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function need(cond: boolean, path: string, msg: string): asserts cond {
  if (!cond) throw new ConfigError(path, msg);
}

function optType(o: Record<string, Json>, key: string, type: 'string' | 'number' | 'boolean', path: string): void {
  if (o[key] !== undefined) need(typeof o[key] === type, `${path}.${key}`, `must be a ${type}`);
}

function isUint(v: Json): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function strArray(v: Json, path: string, nonEmpty = false): void {
  need(Array.isArray(v) && v.every((x) => typeof x === 'string'), path, 'must be an array of strings');
  if (nonEmpty) need((v as string[]).length > 0, path, 'must not be empty');
}

/** Validate a parsed config.json. Returns it typed. Checks structure, not host state. */
export function validateSpec(raw: Json): Spec {
  need(isObj(raw), '$', 'config.json must be a JSON object');
  need(typeof raw.ociVersion === 'string', 'ociVersion', 'is required and must be a string (e.g. "1.2.0")');
  need(/^1\.\d+\.\d+/.test(raw.ociVersion as string), 'ociVersion', `unsupported version ${JSON.stringify(raw.ociVersion)}: this runtime implements 1.x`);
  if (raw.root !== undefined) {
    need(isObj(raw.root), 'root', 'must be an object');
    need(typeof raw.root.path === 'string' && raw.root.path !== '', 'root.path', 'is required');
    optType(raw.root, 'readonly', 'boolean', 'root');
  }
  if (raw.hostname !== undefined) need(typeof raw.hostname === 'string', 'hostname', 'must be a string');
  if (raw.domainname !== undefined) need(typeof raw.domainname === 'string', 'domainname', 'must be a string');
  if (raw.process !== undefined) validateProcess(raw.process, 'process');
  if (raw.mounts !== undefined) {
    need(Array.isArray(raw.mounts), 'mounts', 'must be an array');
    raw.mounts.forEach((m: Json, i: number) => {
      const p = `mounts[${i}]`;
      need(isObj(m), p, 'must be an object');
      need(typeof m.destination === 'string' && m.destination !== '', `${p}.destination`, 'is required');
      need(isAbsolute(m.destination as string), `${p}.destination`, `must be an absolute path, got ${JSON.stringify(m.destination)}`);
      optType(m, 'source', 'string', p);
      optType(m, 'type', 'string', p);
      if (m.options !== undefined) strArray(m.options, `${p}.options`);
    });
  }
  if (raw.hooks !== undefined) {
    need(isObj(raw.hooks), 'hooks', 'must be an object');
    for (const [k, list] of Object.entries(raw.hooks)) {
      need(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'].includes(k), `hooks.${k}`, 'unknown hook kind');
      need(Array.isArray(list), `hooks.${k}`, 'must be an array');
      list.forEach((h: Json, i: number) => {
        const p = `hooks.${k}[${i}]`;
        need(isObj(h), p, 'must be an object');
        need(typeof h.path === 'string' && isAbsolute(h.path), `${p}.path`, 'must be an absolute path');
        if (h.args !== undefined) strArray(h.args, `${p}.args`);
        if (h.env !== undefined) strArray(h.env, `${p}.env`);
        if (h.timeout !== undefined) need(typeof h.timeout === 'number' && h.timeout > 0, `${p}.timeout`, 'must be a positive number of seconds');
      });
    }
  }
  if (raw.annotations !== undefined) {
    need(isObj(raw.annotations) && Object.values(raw.annotations).every((v) => typeof v === 'string'), 'annotations', 'must be an object of strings');
  }
  if (raw.linux !== undefined) validateLinux(raw.linux);
  return raw as unknown as Spec;
}

export function validateProcess(p: Json, path: string): void {
  need(isObj(p), path, 'must be an object');
  need(p.args !== undefined || p.commandLine !== undefined, `${path}.args`, 'is required');
  if (p.args !== undefined) strArray(p.args, `${path}.args`, true);
  need(typeof p.cwd === 'string', `${path}.cwd`, 'is required');
  need(isAbsolute(p.cwd as string), `${path}.cwd`, `must be an absolute path, got ${JSON.stringify(p.cwd)}`);
  need(isObj(p.user), `${path}.user`, 'is required');
  const u = p.user as Record<string, Json>;
  need(isUint(u.uid), `${path}.user.uid`, 'must be a non-negative integer');
  need(isUint(u.gid), `${path}.user.gid`, 'must be a non-negative integer');
  if (u.additionalGids !== undefined) need(Array.isArray(u.additionalGids) && u.additionalGids.every(isUint), `${path}.user.additionalGids`, 'must be an array of non-negative integers');
  if (u.umask !== undefined) need(isUint(u.umask), `${path}.user.umask`, 'must be a non-negative integer');
  if (p.env !== undefined) {
    strArray(p.env, `${path}.env`);
    (p.env as string[]).forEach((e, i) => need(e.includes('=') && !e.startsWith('='), `${path}.env[${i}]`, `must be KEY=value, got ${JSON.stringify(e)}`));
  }
  optType(p, 'terminal', 'boolean', path);
  optType(p, 'noNewPrivileges', 'boolean', path);
  if (p.oomScoreAdj !== undefined) need(Number.isInteger(p.oomScoreAdj) && (p.oomScoreAdj as number) >= -1000 && (p.oomScoreAdj as number) <= 1000, `${path}.oomScoreAdj`, 'must be an integer in [-1000, 1000]');
  if (p.rlimits !== undefined) {
    need(Array.isArray(p.rlimits), `${path}.rlimits`, 'must be an array');
    const seen = new Set<string>();
    (p.rlimits as Json[]).forEach((r, i) => {
      const q = `${path}.rlimits[${i}]`;
      need(isObj(r) && typeof r.type === 'string', `${q}.type`, 'is required');
      need(typeof r.soft === 'number' && r.soft >= 0 && typeof r.hard === 'number' && r.hard >= 0, q, 'soft and hard must be non-negative numbers');
      need((r.soft as number) <= (r.hard as number), q, `soft limit ${r.soft} exceeds hard limit ${r.hard}`);
      need(!seen.has(r.type as string), `${q}.type`, `duplicate rlimit ${r.type}`);
      seen.add(r.type as string);
    });
  }
  if (p.capabilities !== undefined) {
    need(isObj(p.capabilities), `${path}.capabilities`, 'must be an object');
    for (const [k, v] of Object.entries(p.capabilities)) {
      need(['bounding', 'effective', 'inheritable', 'permitted', 'ambient'].includes(k), `${path}.capabilities.${k}`, 'unknown capability set');
      strArray(v, `${path}.capabilities.${k}`);
    }
  }
}

function validateLinux(l: Json): void {
  need(isObj(l), 'linux', 'must be an object');
  if (l.namespaces !== undefined) {
    need(Array.isArray(l.namespaces), 'linux.namespaces', 'must be an array');
    const seen = new Set<string>();
    l.namespaces.forEach((n: Json, i: number) => {
      const p = `linux.namespaces[${i}]`;
      need(isObj(n), p, 'must be an object');
      need(NS_TYPES.includes(n.type as NamespaceType), `${p}.type`, `unknown namespace type ${JSON.stringify(n.type)} (known: ${NS_TYPES.join(', ')})`);
      need(!seen.has(n.type as string), `${p}.type`, `duplicate namespace ${n.type}`);
      seen.add(n.type as string);
      if (n.path !== undefined) need(typeof n.path === 'string' && isAbsolute(n.path), `${p}.path`, 'must be an absolute path');
    });
    const hasUser = seen.has('user');
    const userJoin = (l.namespaces as Record<string, Json>[]).some((n) => n.type === 'user' && n.path);
    if (hasUser && !userJoin) {
      need(Array.isArray(l.uidMappings) && l.uidMappings.length > 0, 'linux.uidMappings', 'is required when creating a user namespace');
      need(Array.isArray(l.gidMappings) && l.gidMappings.length > 0, 'linux.gidMappings', 'is required when creating a user namespace');
    }
  }
  for (const key of ['uidMappings', 'gidMappings'] as const) {
    if (l[key] === undefined) continue;
    need(Array.isArray(l[key]), `linux.${key}`, 'must be an array');
    (l[key] as Json[]).forEach((m, i) => need(isObj(m) && isUint(m.containerID) && isUint(m.hostID) && isUint(m.size) && (m.size as number) > 0, `linux.${key}[${i}]`, 'needs containerID, hostID and a positive size'));
  }
  if (l.devices !== undefined) {
    need(Array.isArray(l.devices), 'linux.devices', 'must be an array');
    l.devices.forEach((d: Json, i: number) => {
      const p = `linux.devices[${i}]`;
      need(isObj(d), p, 'must be an object');
      need(['c', 'b', 'u', 'p'].includes(d.type as string), `${p}.type`, 'must be one of c, b, u, p');
      need(typeof d.path === 'string' && isAbsolute(d.path), `${p}.path`, 'must be an absolute path');
      if (d.type !== 'p') need(isUint(d.major) && isUint(d.minor), p, 'major and minor are required for c/b/u devices');
    });
  }
  if (l.cgroupsPath !== undefined) {
    need(typeof l.cgroupsPath === 'string', 'linux.cgroupsPath', 'must be a string');
    need(!(l.cgroupsPath as string).split('/').includes('..'), 'linux.cgroupsPath', 'must not contain ".."');
  }
  if (l.rootfsPropagation !== undefined) {
    need(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'unbindable', 'runbindable'].includes(l.rootfsPropagation as string), 'linux.rootfsPropagation', `invalid value ${JSON.stringify(l.rootfsPropagation)}`);
  }
  if (l.sysctl !== undefined) {
    need(isObj(l.sysctl) && Object.values(l.sysctl).every((v) => typeof v === 'string'), 'linux.sysctl', 'must be an object of strings');
    for (const k of Object.keys(l.sysctl)) need(/^[a-zA-Z0-9_.-]+$/.test(k) && !k.includes('..'), `linux.sysctl.${k}`, 'invalid sysctl name');
  }
  for (const key of ['maskedPaths', 'readonlyPaths'] as const) {
    if (l[key] === undefined) continue;
    strArray(l[key], `linux.${key}`);
    (l[key] as string[]).forEach((p, i) => need(isAbsolute(p), `linux.${key}[${i}]`, 'must be an absolute path'));
  }
  if (l.resources !== undefined) need(isObj(l.resources), 'linux.resources', 'must be an object');
  if (l.seccomp !== undefined) {
    need(isObj(l.seccomp), 'linux.seccomp', 'must be an object');
    need(typeof l.seccomp.defaultAction === 'string', 'linux.seccomp.defaultAction', 'is required');
  }
}

export interface LoadedBundle { bundle: string; spec: Spec; rootfs: string }

/** Read <bundle>/config.json, validate it and resolve the rootfs (which must exist and be a directory). */
export function loadBundle(bundleDir: string, spec?: Spec): LoadedBundle {
  const bundle = resolve(bundleDir);
  let parsed: Spec;
  if (spec) {
    parsed = validateSpec(spec);
  } else {
    const file = join(bundle, 'config.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError('$', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)} — is --bundle the directory holding config.json?`);
    }
    let raw: Json;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new ConfigError('$', `${file} is not valid JSON: ${(e as Error).message}`);
    }
    parsed = validateSpec(raw);
  }
  need(parsed.root !== undefined, 'root', 'is required');
  need(parsed.process !== undefined, 'process', 'is required to create a container');
  const rootfs = resolve(bundle, parsed.root.path);
  let st;
  try {
    st = statSync(rootfs);
  } catch {
    throw new ConfigError('root.path', `rootfs ${rootfs} does not exist`);
  }
  need(st.isDirectory(), 'root.path', `rootfs ${rootfs} is not a directory`);
  return { bundle, spec: parsed, rootfs };
}
