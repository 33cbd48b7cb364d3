/**
 * berth-oci: the runc-compatible OCI runtime CLI. It parses argv exactly as runc's (global flags
 * before the command, command flags before the container id), calls the in-process Runtime, and
 * prints. Hand-written rather than commander because runc's grammar (Docker and containerd call
 * us with it) has per-command short flags and trailing commands, and because every call pays
 * start-up: this file imports the runtime lazily.
 */
import { appendFileSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { OCI_VERSION, VERSION } from '../version.js';

interface Flag { name: string; short?: string; takes: boolean; multi?: boolean }

const GLOBAL: Flag[] = [
  { name: 'root', takes: true }, { name: 'log', takes: true }, { name: 'log-format', takes: true },
  { name: 'debug', takes: false }, { name: 'systemd-cgroup', takes: false }, { name: 'rootless', takes: true },
  { name: 'criu', takes: true }, { name: 'help', short: 'h', takes: false }, { name: 'version', short: 'v', takes: false },
];

const COMMON_CREATE: Flag[] = [
  { name: 'bundle', short: 'b', takes: true }, { name: 'pid-file', takes: true }, { name: 'console-socket', takes: true },
  { name: 'no-pivot', takes: false }, { name: 'no-new-keyring', takes: false }, { name: 'preserve-fds', takes: true },
  { name: 'pidfd-socket', takes: true },
];

const COMMANDS: Record<string, { flags: Flag[]; usage: string }> = {
  create: { flags: COMMON_CREATE, usage: 'create [--bundle DIR] [--pid-file F] [--console-socket S] [--no-pivot] [--preserve-fds N] ID' },
  run: { flags: [...COMMON_CREATE, { name: 'detach', short: 'd', takes: false }, { name: 'keep', takes: false }, { name: 'no-subreaper', takes: false }], usage: 'run [-d] [--bundle DIR] [--keep] ID' },
  start: { flags: [], usage: 'start ID' },
  state: { flags: [], usage: 'state ID' },
  kill: { flags: [{ name: 'all', short: 'a', takes: false }], usage: 'kill [--all] ID [SIGNAL]' },
  delete: { flags: [{ name: 'force', short: 'f', takes: false }], usage: 'delete [--force] ID' },
  exec: {
    flags: [
      { name: 'process', short: 'p', takes: true }, { name: 'tty', short: 't', takes: false }, { name: 'cwd', takes: true },
      { name: 'env', short: 'e', takes: true, multi: true }, { name: 'user', short: 'u', takes: true }, { name: 'additional-gids', short: 'g', takes: true, multi: true },
      { name: 'cap', short: 'c', takes: true, multi: true }, { name: 'no-new-privs', takes: false }, { name: 'detach', short: 'd', takes: false },
      { name: 'pid-file', takes: true }, { name: 'console-socket', takes: true }, { name: 'preserve-fds', takes: true },
      { name: 'ignore-paused', takes: false }, { name: 'cgroup', takes: true }, { name: 'process-label', takes: true }, { name: 'apparmor', takes: true },
      { name: 'pidfd-socket', takes: true },
    ],
    usage: 'exec [--process F | [--tty] [--cwd D] [--env K=V] [--user UID[:GID]]] [--detach] [--pid-file F] ID [COMMAND...]',
  },
  list: { flags: [{ name: 'format', short: 'f', takes: true }, { name: 'quiet', short: 'q', takes: false }], usage: 'list [--format table|json] [--quiet]' },
  ps: { flags: [{ name: 'format', short: 'f', takes: true }], usage: 'ps [--format table|json] ID' },
  pause: { flags: [], usage: 'pause ID' },
  resume: { flags: [], usage: 'resume ID' },
  update: {
    flags: [
      { name: 'resources', short: 'r', takes: true }, { name: 'memory', takes: true }, { name: 'memory-swap', takes: true },
      { name: 'memory-reservation', takes: true }, { name: 'kernel-memory', takes: true }, { name: 'cpu-shares', takes: true },
      { name: 'cpu-quota', takes: true }, { name: 'cpu-period', takes: true }, { name: 'cpu-rt-runtime', takes: true },
      { name: 'cpu-rt-period', takes: true }, { name: 'cpuset-cpus', takes: true }, { name: 'cpuset-mems', takes: true },
      { name: 'pids-limit', takes: true }, { name: 'blkio-weight', takes: true }, { name: 'l3-cache-schema', takes: true }, { name: 'mem-bw-schema', takes: true },
    ],
    usage: 'update [--resources FILE|-] [--memory N] [--cpu-quota N] ... ID',
  },
  spec: { flags: [{ name: 'bundle', short: 'b', takes: true }, { name: 'rootless', takes: false }], usage: 'spec [--bundle DIR] [--rootless]' },
  features: { flags: [], usage: 'features' },
};

export class UsageError extends Error {}

interface Parsed { opts: Record<string, string | boolean | string[]>; rest: string[] }

function parseFlags(argv: string[], flags: Flag[], stopAtFirstPositional: boolean): Parsed {
  const opts: Record<string, string | boolean | string[]> = {};
  const rest: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') {
      if (stopAtFirstPositional) break;
      rest.push(a);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq > 0 ? a.slice(eq + 1) : undefined;
    } else {
      // Go's flag package accepts -flag too (containerd uses --, some users -).
      const short = a.slice(1);
      const eq = short.indexOf('=');
      const key = eq > 0 ? short.slice(0, eq) : short;
      inline = eq > 0 ? short.slice(eq + 1) : undefined;
      name = flags.find((f) => f.short === key)?.name ?? key;
    }
    const f = flags.find((x) => x.name === name);
    if (!f) throw new UsageError(`unknown flag ${a}`);
    if (f.takes) {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`flag --${f.name} needs a value`);
      if (f.multi) ((opts[f.name] ??= []) as string[]).push(v);
      else opts[f.name] = v;
    } else {
      opts[f.name] = inline === undefined ? true : inline !== 'false';
    }
  }
  rest.push(...argv.slice(i));
  return { opts, rest };
}

class Logger {
  constructor(private file: string | undefined, private json: boolean, private debugOn: boolean) {}
  write(level: 'error' | 'warning' | 'debug', msg: string): void {
    if (level === 'debug' && !this.debugOn) return;
    const time = new Date().toISOString();
    if (this.file) {
      const line = this.json ? JSON.stringify({ level, msg, time }) : `time="${time}" level=${level} msg="${msg.replace(/"/g, '\\"')}"`;
      try { appendFileSync(this.file, `${line}\n`); } catch { /* log dir gone */ }
    }
    if (level !== 'debug' || !this.file) process.stderr.write(`${level === 'error' ? 'ERRO' : level === 'warning' ? 'WARN' : 'DEBU'} ${msg}\n`);
  }
}

function needId(rest: string[], usage: string): string {
  const id = rest[0];
  if (!id) throw new UsageError(`container id is required\nusage: berth-oci ${usage}`);
  return id;
}

function str(v: string | boolean | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export async function main(argv: string[]): Promise<number> {
  let log = new Logger(undefined, false, false);
  try {
    const g = parseFlags(argv, GLOBAL, true);
    log = new Logger(str(g.opts.log), g.opts['log-format'] === 'json', Boolean(g.opts.debug));
    if (g.opts.version) {
      process.stdout.write(`berth-oci version ${VERSION}\nspec: ${OCI_VERSION}\n`);
      return 0;
    }
    const [cmd, ...cmdArgv] = g.rest;
    if (!cmd || g.opts.help || cmd === 'help') {
      process.stdout.write(`usage: berth-oci [--root DIR] [--log FILE] [--log-format text|json] COMMAND\n\ncommands:\n${Object.values(COMMANDS).map((c) => `  ${c.usage}`).join('\n')}\n`);
      return cmd || g.opts.help ? 0 : 1;
    }
    const def = COMMANDS[cmd];
    if (!def) throw new UsageError(`unknown command ${JSON.stringify(cmd)}; run berth-oci --help`);
    if (g.opts['systemd-cgroup']) throw new UsageError('--systemd-cgroup is not supported: berth-oci drives cgroupfs directly (no systemd on this host); drop the flag');
    const c = parseFlags(cmdArgv, def.flags, cmd === 'exec' || cmd === 'ps');
    const root = resolve(str(g.opts.root) ?? '/run/berth-oci');
    return await runCommand(cmd, c, root, log, def.usage);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log.write('error', msg);
    return e instanceof UsageError ? 2 : 1;
  }
}

async function runCommand(cmd: string, c: Parsed, root: string, log: Logger, usage: string): Promise<number> {
  if (cmd === 'spec') {
    const { defaultSpec } = await import('../oci/default-spec.js');
    const file = join(resolve(str(c.opts.bundle) ?? '.'), 'config.json');
    if (existsSync(file)) throw new Error(`File ${file} exists. Remove it first`);
    writeFileSync(file, `${JSON.stringify(defaultSpec({ rootless: Boolean(c.opts.rootless) }), null, '\t')}\n`);
    return 0;
  }
  if (cmd === 'features') {
    const { features } = await import('../oci/features.js');
    process.stdout.write(`${JSON.stringify(features(), null, '    ')}\n`);
    return 0;
  }
  const { Runtime } = await import('../oci/runtime.js');
  // One spawn per invocation: starting the spawn zygote would cost more than it saves.
  const rt = new Runtime({ root, warn: (m) => log.write('warning', m), zygote: false });
  switch (cmd) {
    case 'create': {
      const id = needId(c.rest, usage);
      await rt.create(id, createOpts(c, true));
      return 0;
    }
    case 'run': {
      const id = needId(c.rest, usage);
      const detach = Boolean(c.opts.detach);
      const created = await rt.create(id, createOpts(c, detach));
      const { foreground } = await import('./oci-foreground.js');
      return await foreground(rt, id, created.ptyMaster, detach, Boolean(c.opts.keep));
    }
    case 'start':
      await rt.start(needId(c.rest, usage));
      return 0;
    case 'state': {
      process.stdout.write(`${JSON.stringify(stateWithExtras(rt, needId(c.rest, usage)), null, '  ')}\n`);
      return 0;
    }
    case 'kill':
      rt.kill(needId(c.rest, usage), c.rest[1] ?? 'SIGTERM', Boolean(c.opts.all));
      return 0;
    case 'delete': {
      const id = needId(c.rest, usage);
      try {
        await rt.delete(id, Boolean(c.opts.force));
      } catch (e) {
        // runc: deleting a missing container with --force is not an error.
        if (c.opts.force && (e as { code?: string }).code === 'ENOTFOUND') return 0;
        throw e;
      }
      return 0;
    }
    case 'exec': {
      const { execCommand } = await import('./oci-exec.js');
      return await execCommand(rt, c.opts, c.rest, usage);
    }
    case 'list': {
      const rows = rt.list();
      if (c.opts.quiet) { process.stdout.write(rows.map((r) => `${r.state.id}\n`).join('')); return 0; }
      if (c.opts.format === 'json') {
        process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ociVersion: r.state.ociVersion, id: r.state.id, pid: r.state.pid ?? 0, status: r.state.status, bundle: r.state.bundle, rootfs: r.record.rootfs, created: r.record.created, owner: r.record.owner })))}\n`);
        return 0;
      }
      const table = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'], ...rows.map((r) => [r.state.id, String(r.state.pid ?? 0), r.state.status, r.state.bundle, r.record.created, r.record.owner])];
      const w = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
      process.stdout.write(table.map((row) => row.map((cell, i) => cell.padEnd(w[i])).join('   ').trimEnd()).join('\n') + '\n');
      return 0;
    }
    case 'ps': {
      const id = needId(c.rest, usage);
      const pids = rt.ps(id);
      if (c.opts.format === 'json') { process.stdout.write(`${JSON.stringify(pids)}\n`); return 0; }
      process.stdout.write('PID   CMD\n');
      for (const pid of pids) {
        let cmdline = '';
        try { cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '); } catch { /* exited */ }
        process.stdout.write(`${String(pid).padEnd(5)} ${cmdline}\n`);
      }
      return 0;
    }
    case 'pause':
      await rt.pause(needId(c.rest, usage));
      return 0;
    case 'resume':
      await rt.resume(needId(c.rest, usage));
      return 0;
    case 'update': {
      const { resourcesFromFlags } = await import('./oci-update.js');
      rt.update(needId(c.rest, usage), resourcesFromFlags(c.opts));
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${cmd}`);
  }
}

function createOpts(c: Parsed, detached: boolean) {
  const preserve = str(c.opts['preserve-fds']);
  if (preserve !== undefined && !/^\d+$/.test(preserve)) throw new UsageError(`--preserve-fds must be a number, got ${JSON.stringify(preserve)}`);
  return {
    bundle: resolve(str(c.opts.bundle) ?? '.'),
    pidFile: str(c.opts['pid-file']) ? resolve(str(c.opts['pid-file']) as string) : undefined,
    consoleSocket: str(c.opts['console-socket']),
    noPivot: Boolean(c.opts['no-pivot']),
    preserveFds: preserve ? Number(preserve) : 0,
    detached,
  };
}

function stateWithExtras(rt: import('../oci/runtime.js').Runtime, id: string) {
  const rec = rt.load(id);
  const st = rt.state(id);
  return { ...st, rootfs: rec.rootfs, created: rec.created, owner: rec.owner };
}
