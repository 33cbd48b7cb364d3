/**
 * Removing a Linux bridge without iproute2: bring it down (SIOCSIFFLAGS) and delete it
 * (SIOCBRDELBR) through ioctls on an AF_INET datagram socket, via koffi. Used when a network
 * is removed; the bridge CNI plugin creates bridges but never deletes them.
 */
import koffi from 'koffi';
import { existsSync } from 'node:fs';
import { SyscallError } from '../errors.js';

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCBRDELBR = 0x89a1;
const IFF_UP = 0x1;
const IFNAMSIZ = 16;

interface Fns {
  socket: (d: number, t: number, p: number) => number;
  ioctl: (fd: number, req: number, arg: Buffer) => number;
  close: (fd: number) => number;
}
let fns: Fns | null = null;
function lib(): Fns {
  if (fns) return fns;
  const c = koffi.load('libc.so.6');
  fns = {
    socket: c.func('int socket(int domain, int type, int protocol)'),
    ioctl: c.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)'),
    close: c.func('int close(int fd)'),
  } as unknown as Fns;
  return fns;
}

export function linkExists(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name) && existsSync(`/sys/class/net/${name}`);
}

/** Delete bridge `name` if it exists; returns whether it existed. */
export function deleteBridge(name: string): boolean {
  if (!linkExists(name)) return false;
  const l = lib();
  const fd = l.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError('socket', koffi.errno(), `delete bridge ${name}`);
  try {
    const ifr = Buffer.alloc(40);
    ifr.write(name, 0, IFNAMSIZ - 1, 'ascii');
    if (l.ioctl(fd, SIOCGIFFLAGS, ifr) < 0) {
      const e = koffi.errno();
      if (e === 19) return false; // ENODEV: raced with another remover
      throw new SyscallError('ioctl(SIOCGIFFLAGS)', e, `read flags of bridge ${name}`);
    }
    const flags = ifr.readUInt16LE(IFNAMSIZ);
    if (flags & IFF_UP) {
      ifr.writeUInt16LE(flags & ~IFF_UP, IFNAMSIZ);
      if (l.ioctl(fd, SIOCSIFFLAGS, ifr) < 0) throw new SyscallError('ioctl(SIOCSIFFLAGS)', koffi.errno(), `bring bridge ${name} down`);
    }
    const nm = Buffer.alloc(IFNAMSIZ);
    nm.write(name, 0, IFNAMSIZ - 1, 'ascii');
    if (l.ioctl(fd, SIOCBRDELBR, nm) < 0) {
      const e = koffi.errno();
      if (e === 6 || e === 19) return false; // ENXIO/ENODEV: gone already
      throw new SyscallError('ioctl(SIOCBRDELBR)', e, `delete bridge ${name}`);
    }
    return true;
  } finally {
    l.close(fd);
  }
}
