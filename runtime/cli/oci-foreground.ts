/**
 * `berth-oci run` without --detach: start the container, relay a pty if there is one, forward
 * signals to the init, wait for it, delete it (unless --keep) and return its exit status.
 */
import tty from 'node:tty';
import type { Runtime } from '../oci/runtime.js';
import { closeFd } from '../linux/libc.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

export async function relayPty(master: number): Promise<() => void> {
  const input = process.stdin;
  const wasRaw = input.isTTY ? input.isRaw : false;
  if (input.isTTY) input.setRawMode(true);
  const out = new tty.ReadStream(master);
  const into = new tty.WriteStream(master);
  out.on('data', (d: Buffer) => process.stdout.write(d));
  out.on('error', () => { /* EIO when the slave side closes */ });
  into.on('error', () => {});
  const onIn = (d: Buffer) => into.write(d);
  input.on('data', onIn);
  const resize = () => {
    if (process.stdout.isTTY) {
      try { (into as unknown as { _handle?: { setWindowSize?: (c: number, r: number) => void } })._handle?.setWindowSize?.(process.stdout.columns, process.stdout.rows); } catch { /* best effort */ }
    }
  };
  process.on('SIGWINCH', resize);
  return () => {
    input.off('data', onIn);
    input.pause();
    if (input.isTTY) input.setRawMode(wasRaw);
    process.off('SIGWINCH', resize);
    out.destroy();
    into.destroy();
  };
}

export async function foreground(rt: Runtime, id: string, ptyMaster: number, detach: boolean, keep: boolean): Promise<number> {
  try {
    await rt.start(id);
  } catch (e) {
    await rt.delete(id, true).catch(() => {});
    throw e;
  }
  if (detach) {
    if (ptyMaster >= 0) closeFd(ptyMaster);
    return 0;
  }
  const handlers = FORWARDED.map((sig) => {
    const h = () => { try { rt.kill(id, sig); } catch { /* already exited */ } };
    process.on(sig, h);
    return [sig, h] as const;
  });
  const stopRelay = ptyMaster >= 0 ? await relayPty(ptyMaster) : null;
  try {
    const exit = await rt.wait(id);
    return exit.exitCode;
  } finally {
    stopRelay?.();
    for (const [sig, h] of handlers) process.off(sig, h);
    if (!keep) await rt.delete(id, true).catch(() => {});
  }
}
