/**
 * Random bytes from /dev/urandom, for container ids, generated names and temp-file suffixes on
 * the `berth run` path: the same kernel source crypto.randomBytes draws from, without loading
 * node:crypto (~2 ms of every call that needs nothing else from it).
 */
import { closeSync, openSync, readSync } from 'node:fs';

/** n random bytes. */
export function randomBytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  const fd = openSync('/dev/urandom', 'r');
  try {
    let off = 0;
    while (off < n) {
      const got = readSync(fd, b, off, n - off, null);
      if (got <= 0) throw new Error('/dev/urandom returned no data');
      off += got;
    }
  } finally {
    closeSync(fd);
  }
  return b;
}

/** 2n random hex digits. */
export function randomHex(n: number): string {
  return randomBytes(n).toString('hex');
}
