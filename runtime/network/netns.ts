/**
 * Persistent network namespace files and the per-container /etc/hosts and /etc/resolv.conf.
 * A netns file is a bind mount of /proc/<pid>/ns/net onto an empty file (what `ip netns add`
 * does), made through mount(2) — no iproute2. The engine passes either that file or
 * /proc/<initpid>/ns/net as CNI_NETNS.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { MNT_DETACH, MS_BIND, mount, umount } from '../linux/libc.js';
import { ConfigError } from '../errors.js';

/** Bind-mount pid's network namespace onto `file` (created, with its directory). */
export function bindNetns(pid: number, file: string): void {
  if (!Number.isInteger(pid) || pid <= 0) throw new ConfigError('pid', `bad pid ${pid}`);
  mkdirSync(dirname(file), { recursive: true });
  closeSync(openSync(file, 'a', 0o444));
  try {
    mount(`/proc/${pid}/ns/net`, file, null, MS_BIND);
  } catch (e) {
    rmSync(file, { force: true });
    throw e;
  }
}

/** Unmount (lazily) and remove a netns file; fine when it is already gone. */
export function removeNetns(file: string): void {
  // A file can be mounted more than once (repeated binds); unmount until nothing is left.
  for (let i = 0; i < 8 && umount(file, MNT_DETACH); i++) { /* again */ }
  rmSync(file, { force: true });
}

export interface HostEntry { ip: string; names: string[] }

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, path);
}

/** Write an /etc/hosts: localhost lines, then the given entries (container itself, peers). */
export function writeHostsFile(path: string, entries: HostEntry[]): void {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const e of entries) {
    const names = e.names.filter((n) => /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(n));
    if (!names.length) continue;
    if (!/^[0-9a-fA-F.:]+$/.test(e.ip)) throw new ConfigError('hosts', `"${e.ip}" is not an IP address`);
    lines.push(`${e.ip}\t${names.join(' ')}`);
  }
  atomicWrite(path, `${lines.join('\n')}\n`);
}

const FALLBACK_DNS = ['8.8.8.8', '8.8.4.4'];

/**
 * Write a resolv.conf derived from the host's: loopback nameservers (127.x, ::1 — e.g.
 * systemd-resolved's 127.0.0.53) cannot work inside a netns and are dropped; when none are
 * left, Docker's fallback (8.8.8.8, 8.8.4.4) is used. Returns the nameservers written.
 */
export function writeResolvConf(path: string, hostResolvConf = '/etc/resolv.conf', extra: { nameservers?: string[]; search?: string[]; options?: string[] } = {}): string[] {
  let host = '';
  try { host = readFileSync(hostResolvConf, 'utf8'); } catch { host = ''; }
  const out: string[] = [];
  const servers: string[] = [];
  for (const raw of host.split('\n')) {
    const line = raw.trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (m) {
      if (/^127\./.test(m[1]) || m[1] === '::1' || m[1] === '0.0.0.0') continue;
      servers.push(m[1]);
      continue;
    }
    if (extra.search && /^(search|domain)\s/.test(line)) continue;
    if (extra.options && /^options\s/.test(line)) continue;
    if (line && !line.startsWith('#') && !line.startsWith(';')) out.push(line);
  }
  const ns = extra.nameservers?.length ? extra.nameservers : servers.length ? servers : FALLBACK_DNS;
  const lines = [...ns.map((s) => `nameserver ${s}`), ...out];
  if (extra.search?.length) lines.push(`search ${extra.search.join(' ')}`);
  if (extra.options?.length) lines.push(`options ${extra.options.join(' ')}`);
  atomicWrite(path, `${lines.join('\n')}\n`);
  return ns;
}
