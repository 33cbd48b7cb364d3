/** `berth-oci exec`: a process from --process FILE or from flags over the container's own process. */
import { readFileSync } from 'node:fs';
import type { Runtime } from '../oci/runtime.js';
import type { Process } from '../oci/spec.js';
import { UsageError } from './berth-oci.js';
import { relayPty } from './oci-foreground.js';

type Opts = Record<string, string | boolean | string[]>;

export function processFromFlags(rt: Runtime, id: string, opts: Opts, args: string[]): Process {
  if (typeof opts.process === 'string') {
    try {
      return JSON.parse(readFileSync(opts.process, 'utf8')) as Process;
    } catch (e) {
      throw new UsageError(`--process ${opts.process}: ${(e as Error).message}`);
    }
  }
  if (args.length === 0) throw new UsageError('exec needs a command or --process');
  const base = rt.load(id).config.process;
  const p: Process = {
    args,
    cwd: typeof opts.cwd === 'string' ? opts.cwd : base?.cwd ?? '/',
    env: [...(base?.env ?? []), ...((opts.env as string[] | undefined) ?? [])],
    user: { ...(base?.user ?? { uid: 0, gid: 0 }) },
    terminal: Boolean(opts.tty),
    capabilities: base?.capabilities ? JSON.parse(JSON.stringify(base.capabilities)) : undefined,
    noNewPrivileges: Boolean(opts['no-new-privs']) || base?.noNewPrivileges,
    rlimits: base?.rlimits,
  };
  if (typeof opts.user === 'string') {
    const m = /^(\d+)(?::(\d+))?$/.exec(opts.user);
    if (!m) throw new UsageError(`--user must be UID[:GID], got ${JSON.stringify(opts.user)}`);
    p.user = { uid: Number(m[1]), gid: m[2] !== undefined ? Number(m[2]) : 0 };
  }
  if (opts['additional-gids']) p.user.additionalGids = (opts['additional-gids'] as string[]).map(Number);
  const caps = opts.cap as string[] | undefined;
  if (caps?.length) {
    const c = (p.capabilities ??= {});
    for (const set of ['bounding', 'effective', 'permitted', 'ambient'] as const) c[set] = [...new Set([...(c[set] ?? []), ...caps])];
  }
  return p;
}

export async function execCommand(rt: Runtime, opts: Opts, rest: string[], usage: string): Promise<number> {
  const id = rest[0];
  if (!id) throw new UsageError(`container id is required\nusage: berth-oci ${usage}`);
  const proc = processFromFlags(rt, id, opts, rest.slice(1));
  const detached = Boolean(opts.detach);
  const preserve = typeof opts['preserve-fds'] === 'string' ? Number(opts['preserve-fds']) : 0;
  const h = await rt.exec(id, proc, {
    detached,
    pidFile: typeof opts['pid-file'] === 'string' ? opts['pid-file'] : undefined,
    consoleSocket: typeof opts['console-socket'] === 'string' ? opts['console-socket'] : undefined,
    preserveFds: preserve,
  });
  if (detached) return 0;
  const stop = h.ptyMaster >= 0 ? await relayPty(h.ptyMaster) : null;
  try {
    return (await h.wait()).exitCode;
  } finally {
    stop?.();
  }
}
