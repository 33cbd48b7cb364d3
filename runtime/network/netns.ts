/**
 * Persistent network namespace files and the per-container /etc/hosts and /etc/resolv.conf.
 * A netns file is a bind mount of /proc/<pid>/ns/net onto an empty file (what `ip netns add`
 * does), made through mount(2) — no iproute2. The engine passes either that file or
 * /proc/<initpid>/ns/net as CNI_NETNS.
 *
 * createNetns() makes a new namespace before any process lives in it (as `ip netns add` and
 * podman do), so CNI can set it up while the container's init is being created: the calling
 * thread (Node's main thread) unshares a network namespace, brings `lo` up in it (what the CNI
 * loopback plugin does: SIOCSIFFLAGS IFF_UP), binds it to the file and returns to its own
 * namespace with setns(2), all synchronously, so no JavaScript runs in between. Only the calling
 * thread changes namespace (unshare/setns act on the thread); libuv's threads are untouched.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import koffi from 'koffi';
import { MNT_DETACH, MS_BIND, mount, umount } from '../linux/libc.js';
import { addon } from '../linux/addon.js';
import { ConfigError, SyscallError } from '../errors.js';

const CLONE_NEWNET = 0x40000000;
const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const IFF_UP = 0x1;

interface NsFns {
  unshare: (flags: number) => number;
  setns: (fd: number, nstype: number) => number;
  socket: (d: number, t: number, p: number) => number;
  ioctl: (fd: number, req: number, arg: Buffer) => number;
  close: (fd: number) => number;
}
/** The calls createNetns needs, returning 0 or -errno: berth.node's when built, else koffi's. */
interface NsCalls {
  unshare: (flags: number) => number;
  setns: (fd: number, nstype: number) => number;
  loopbackUp: () => number;
}
let nsCalls: NsCalls | null = null;
function calls(): NsCalls {
  if (nsCalls) return nsCalls;
  const a = addon();
  if (a?.unshare && a.setns && a.loopbackUp) {
    nsCalls = { unshare: a.unshare, setns: a.setns, loopbackUp: a.loopbackUp };
    return nsCalls;
  }
  const l = nsLib();
  const neg = (rc: number) => (rc < 0 ? -koffi.errno() : 0);
  nsCalls = {
    unshare: (f) => neg(l.unshare(f)),
    setns: (fd, t) => neg(l.setns(fd, t)),
    loopbackUp: () => {
      try { loopbackUp(l); return 0; } catch (e) { return -((e as SyscallError).errno ?? 5); }
    },
  };
  return nsCalls;
}

let nsFns: NsFns | null = null;
function nsLib(): NsFns {
  if (nsFns) return nsFns;
  const c = koffi.load('libc.so.6');
  nsFns = {
    unshare: c.func('int unshare(int flags)'),
    setns: c.func('int setns(int fd, int nstype)'),
    socket: c.func('int socket(int domain, int type, int protocol)'),
    ioctl: c.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)'),
    close: c.func('int close(int fd)'),
  } as unknown as NsFns;
  return nsFns;
}

/** Bring `lo` up in the calling thread's network namespace. */
function loopbackUp(l: NsFns): void {
  const fd = l.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError('socket', koffi.errno(), 'bring lo up in the new network namespace');
  try {
    const ifr = Buffer.alloc(40);
    ifr.write('lo', 0, 'ascii');
    if (l.ioctl(fd, SIOCGIFFLAGS, ifr) < 0) throw new SyscallError('ioctl(SIOCGIFFLAGS)', koffi.errno(), 'read the flags of lo');
    ifr.writeUInt16LE(ifr.readUInt16LE(16) | IFF_UP, 16);
    if (l.ioctl(fd, SIOCSIFFLAGS, ifr) < 0) throw new SyscallError('ioctl(SIOCSIFFLAGS)', koffi.errno(), 'bring lo up');
  } finally {
    l.close(fd);
  }
}

/**
 * Create a new network namespace with `lo` up and bind it to `file` (created, with its
 * directory). On failure nothing is left: no file, no mount, and the calling thread is back in
 * its own namespace (if even that fails the process aborts: it would go on in the wrong one).
 */
export function createNetns(file: string): void {
  const l = calls();
  mkdirSync(dirname(file), { recursive: true });
  closeSync(openSync(file, 'a', 0o444));
  const home = openSync('/proc/thread-self/ns/net', 'r');
  let err: unknown = null;
  try {
    let rc = l.unshare(CLONE_NEWNET);
    if (rc < 0) throw new SyscallError('unshare(CLONE_NEWNET)', -rc, `create network namespace ${file}`);
    try {
      rc = l.loopbackUp();
      if (rc < 0) throw new SyscallError('ioctl(SIOCSIFFLAGS)', -rc, 'bring lo up in the new network namespace');
      mount('/proc/thread-self/ns/net', file, null, MS_BIND);
    } finally {
      rc = l.setns(home, CLONE_NEWNET);
      if (rc < 0) {
        process.stderr.write(`berth: cannot return to the host network namespace (errno ${-rc}); aborting\n`);
        process.abort();
      }
    }
  } catch (e) {
    err = e;
  } finally {
    closeSync(home);
  }
  if (err) {
    rmSync(file, { force: true });
    throw err;
  }
}

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
