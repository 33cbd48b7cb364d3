/**
 * berth container commands: run, create, start, stop, kill, restart, rm, ps, logs, exec, wait,
 * top, stats, plus `berth volume …` and `berth network …`. Parsing and printing only; the work is
 * runtime/engine/engine.ts.
 */
import type { Command } from 'commander';
import { openSync, closeSync, createWriteStream } from 'node:fs';
import tty from 'node:tty';
import { BerthError } from '../errors.js';
import { Engine, trace, type CreateOptions } from '../engine/engine.js';
import { attach, monitorAlive, type AttachSession } from '../engine/monitor.js';
import type { ContainerRecord } from '../engine/store.js';
import { inspectFallbacks } from './images-cmd.js';

interface Globals { root: string; state: string }

function globals(cmd: Command): Globals {
  return cmd.optsWithGlobals() as Globals;
}

async function withEngine<T>(cmd: Command, fn: (e: Engine) => Promise<T>): Promise<T> {
  const g = globals(cmd);
  const e = await Engine.open({ root: g.root, state: g.state });
  try { return await fn(e); } finally { e.close(); }
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

function ago(iso: string | null): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} seconds`;
  if (s < 3600) return `${Math.round(s / 60)} minutes`;
  if (s < 86400) return `${Math.round(s / 3600)} hours`;
  return `${Math.round(s / 86400)} days`;
}

function statusText(r: ContainerRecord): string {
  if (r.status === 'running') return `Up ${ago(r.startedAt)}`;
  if (r.status === 'created') return 'Created';
  return `Exited (${r.exitCode ?? 0}) ${ago(r.finishedAt)} ago`;
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i] + 3))).join('').trimEnd()).join('\n') + '\n';
}

interface RunFlags {
  name?: string; detach?: boolean; interactive?: boolean; tty?: boolean; rm?: boolean; env?: string[]; envFile?: string[];
  workdir?: string; user?: string; entrypoint?: string; hostname?: string; volume?: string[]; tmpfs?: string[];
  readOnly?: boolean; network?: string; publish?: string[]; memory?: string; memorySwap?: string; cpus?: string;
  cpuShares?: string; cpusetCpus?: string; pidsLimit?: string; ulimit?: string[]; capAdd?: string[]; capDrop?: string[];
  privileged?: boolean; securityOpt?: string[]; init?: boolean; restart?: string; stopSignal?: string; stopTimeout?: string;
  pull?: string; platform?: string;
}

function runFlags(c: Command): Command {
  return c
    .option('--name <name>', 'container name')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('--rm', 'remove the container when it exits')
    .option('-e, --env <KEY=VAL>', 'set an environment variable (repeatable)', collect)
    .option('--env-file <file>', 'read environment variables from a file (repeatable)', collect)
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user[:group]>', 'user name or uid, optionally with group')
    .option('--entrypoint <cmd>', 'override the image entrypoint')
    .option('-h, --hostname <name>', 'container hostname')
    .option('-v, --volume <src:dst[:ro]>', 'bind mount or named volume (repeatable)', collect)
    .option('--tmpfs <path[:opts]>', 'mount a tmpfs (repeatable)', collect)
    .option('--read-only', 'mount the root filesystem read-only')
    .option('--network <mode>', 'none, host, bridge or a network name', 'bridge')
    .option('--net <mode>', 'alias of --network')
    .option('-p, --publish <[ip:]host:ctr[/proto]>', 'publish a port (repeatable)', collect)
    .option('-m, --memory <bytes>', 'memory limit (e.g. 64m)')
    .option('--memory-swap <bytes>', 'memory + swap limit (-1 = unlimited)')
    .option('--cpus <n>', 'number of CPUs')
    .option('-c, --cpu-shares <n>', 'CPU shares (relative weight)')
    .option('--cpuset-cpus <list>', 'CPUs allowed (0-1,3)')
    .option('--pids-limit <n>', 'max number of processes (-1 = unlimited)')
    .option('--ulimit <name=soft[:hard]>', 'resource limit (repeatable)', collect)
    .option('--cap-add <cap>', 'add a capability (repeatable)', collect)
    .option('--cap-drop <cap>', 'drop a capability (repeatable)', collect)
    .option('--privileged', 'all capabilities, no seccomp, no masked paths')
    .option('--security-opt <opt>', 'no-new-privileges, seccomp=unconfined (repeatable)', collect)
    .option('--init', 'run a tiny init as pid 1 that reaps zombies and forwards signals')
    .option('--restart <policy>', 'no, on-failure[:N], always', 'no')
    .option('--stop-signal <sig>', 'signal to stop the container')
    .option('--stop-timeout <s>', 'seconds to wait before SIGKILL at stop')
    .option('--pull <policy>', 'missing, always or never', 'missing')
    .option('--platform <os/arch>', 'platform to pull');
}

function toCreate(image: string, args: string[], f: RunFlags): CreateOptions {
  const st = f.stopTimeout !== undefined ? Number(f.stopTimeout) : undefined;
  if (f.stopTimeout !== undefined && !Number.isInteger(st)) throw new BerthError('EINVALIDCONFIG', `--stop-timeout: "${f.stopTimeout}" is not a whole number of seconds`);
  return {
    image, args, name: f.name, interactive: f.interactive, tty: f.tty, rm: f.rm, env: f.env, envFiles: f.envFile,
    workdir: f.workdir, user: f.user, entrypoint: f.entrypoint, hostname: f.hostname, volumes: f.volume, tmpfs: f.tmpfs,
    readOnly: f.readOnly, network: (f as { net?: string }).net ?? f.network, publish: f.publish, memory: f.memory, memorySwap: f.memorySwap,
    cpus: f.cpus, cpuShares: f.cpuShares, cpusetCpus: f.cpusetCpus, pidsLimit: f.pidsLimit, ulimits: f.ulimit,
    capAdd: f.capAdd, capDrop: f.capDrop, privileged: f.privileged, securityOpt: f.securityOpt, init: f.init,
    restart: f.restart, stopSignal: f.stopSignal, stopTimeout: st, pull: f.pull as CreateOptions['pull'], platform: f.platform,
  };
}

/** Attach to a starting container, relay until it exits; returns its exit code. */
async function runAttached(e: Engine, rec: ContainerRecord): Promise<number> {
  let session: AttachSession | null = null;
  const stdinTty = rec.tty && process.stdin.isTTY;
  let stopping = false;
  const onSignal = (): void => {
    if (stopping) return;
    stopping = true;
    void e.stop(rec.id).catch(() => {});
  };
  await e.start(rec, {
    beforeStart: async (r) => {
      session = await attach(e.attachSocket(r.id), {
        stdin: rec.stdinOpen ? process.stdin : undefined, stdout: process.stdout, stderr: process.stderr, tty: rec.tty,
      });
      if (rec.tty && process.stdout.isTTY) session.resize(process.stdout.rows, process.stdout.columns);
    },
    attached: true,
  });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (stdinTty) (process.stdin as tty.ReadStream).setRawMode(true);
  const onResize = (): void => { session?.resize(process.stdout.rows, process.stdout.columns); };
  if (rec.tty && process.stdout.isTTY) process.stdout.on('resize', onResize);
  try {
    await (session as AttachSession | null)?.done;
    trace('attach: exit frame');
    const done = await e.wait(rec.id);
    return done.exitCode ?? 0;
  } finally {
    if (stdinTty) (process.stdin as tty.ReadStream).setRawMode(false);
    process.stdout.removeListener('resize', onResize);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (rec.stdinOpen) process.stdin.destroy();
  }
}

export function registerContainerCommands(program: Command): void {
  // `berth run IMAGE sh -c …`: options after the image belong to the command (docker's rule)
  program.enablePositionalOptions();
  inspectFallbacks.push(async (name, root) => {
    const state = (program.opts() as Globals).state;
    const e = await Engine.open({ root, state, noReconcile: true });
    try { return e.inspect(name); } catch { return null; } finally { e.close(); }
  });

  runFlags(program.command('run').description('create and start a container'))
    .option('-d, --detach', 'run in the background and print the container id')
    .argument('<image>').argument('[command...]')
    .passThroughOptions()
    .action(async (image: string, args: string[], f: RunFlags, cmd: Command) => {
      trace('cli: run action');
      await withEngine(cmd, async (e) => {
        trace('cli: engine open');
        if (f.detach && f.rm === undefined) { /* docker allows -d --rm: removed when it exits (on the next berth call) */ }
        // start follows at once: the engine may begin the network while it mounts the rootfs.
        const rec = await e.create({ ...toCreate(image, args, f), startSoon: true });
        if (f.detach) {
          try { await e.start(rec); } catch (err) { await e.rm(rec.id, { force: true }).catch(() => {}); throw err; }
          process.stdout.write(`${rec.id}\n`);
          return;
        }
        let code: number;
        try { code = await runAttached(e, rec); } catch (err) {
          await e.rm(rec.id, { force: true }).catch(() => {});
          throw err;
        }
        if (f.rm) await e.rm(rec.id, { force: true, volumes: true });
        process.exitCode = code;
      });
    });

  runFlags(program.command('create').description('create a container without starting it'))
    .argument('<image>').argument('[command...]')
    .passThroughOptions()
    .action(async (image: string, args: string[], f: RunFlags, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        const rec = await e.create(toCreate(image, args, f));
        process.stdout.write(`${rec.id}\n`);
      });
    });

  program.command('start').description('start containers').argument('<containers...>')
    .option('-a, --attach', 'attach to output and wait')
    .action(async (names: string[], o: { attach?: boolean }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        for (const n of names) {
          const rec = e.get(n);
          if (o.attach) { process.exitCode = await runAttached(e, rec); return; }
          await e.start(rec);
          process.stdout.write(`${n}\n`);
        }
      });
    });

  program.command('stop').description('stop containers (StopSignal, then SIGKILL after -t)').argument('<containers...>')
    .option('-t, --time <s>', 'seconds to wait before SIGKILL')
    .action(async (names: string[], o: { time?: string }, cmd: Command) => {
      const t = o.time !== undefined ? Number(o.time) : undefined;
      if (o.time !== undefined && !Number.isInteger(t)) throw new BerthError('EINVALIDCONFIG', `-t: "${o.time}" is not a whole number of seconds`);
      await withEngine(cmd, async (e) => {
        for (const n of names) { await e.stop(n, t); process.stdout.write(`${n}\n`); }
      });
    });

  program.command('kill').description('send a signal to containers').argument('<containers...>')
    .option('-s, --signal <sig>', 'signal', 'SIGKILL')
    .action(async (names: string[], o: { signal: string }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        for (const n of names) { e.kill(n, o.signal); process.stdout.write(`${n}\n`); }
      });
    });

  program.command('restart').description('stop and start containers').argument('<containers...>')
    .option('-t, --time <s>', 'seconds to wait before SIGKILL')
    .action(async (names: string[], o: { time?: string }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        for (const n of names) { await e.restart(n, o.time !== undefined ? Number(o.time) : undefined); process.stdout.write(`${n}\n`); }
      });
    });

  program.command('rm').description('remove containers').argument('<containers...>')
    .option('-f, --force', 'kill running containers first')
    .option('-v, --volumes', 'remove anonymous volumes too')
    .action(async (names: string[], o: { force?: boolean; volumes?: boolean }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        for (const n of names) { await e.rm(n, o); process.stdout.write(`${n}\n`); }
      });
    });

  program.command('ps').description('list containers')
    .option('-a, --all', 'show all containers (default: running)')
    .option('-q, --quiet', 'ids only')
    .option('--json', 'print JSON')
    .option('--no-trunc', 'do not truncate ids')
    .action(async (o: { all?: boolean; quiet?: boolean; json?: boolean; trunc?: boolean }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        const list = e.list(!!o.all);
        if (o.json) { process.stdout.write(JSON.stringify(list.map((r) => ({ ...r, options: undefined })), null, 2) + '\n'); return; }
        const id = (r: ContainerRecord): string => (o.trunc === false ? r.id : r.id.slice(0, 12));
        if (o.quiet) { process.stdout.write(list.map((r) => `${id(r)}\n`).join('')); return; }
        const rows = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES']];
        for (const r of list) {
          let c = JSON.stringify(r.command.join(' '));
          if (c.length > 22 && o.trunc !== false) c = `${c.slice(0, 19)}…"`;
          const ports = r.ports.map((p) => `${p.hostIP ?? '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`).join(', ');
          rows.push([id(r), r.image, c, `${ago(r.created)} ago`, statusText(r), ports, r.name]);
        }
        process.stdout.write(table(rows));
      });
    });

  program.command('logs').description("print a container's output").argument('<container>')
    .option('-f, --follow', 'keep printing new output')
    .option('-t, --timestamps', 'show timestamps')
    .option('-n, --tail <n>', 'only the last n lines')
    .action(async (name: string, o: { follow?: boolean; timestamps?: boolean; tail?: string }, cmd: Command) => {
      const tail = o.tail === undefined || o.tail === 'all' ? undefined : Number(o.tail);
      if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new BerthError('EINVALIDCONFIG', `--tail: "${o.tail}" is not a number of lines`);
      await withEngine(cmd, async (e) => {
        const rec = e.get(name);
        const file = e.logFile(rec.id);
        // loaded here: `berth run` and the other verbs do not need the log reader
        const { followLogs, readLogs, formatLine } = await import('../engine/logs.js');
        const opts = { tail, timestamps: !!o.timestamps };
        if (!o.follow) {
          for (const l of readLogs(file, opts)) (l.stream === 'stderr' ? process.stderr : process.stdout).write(formatLine(l, opts));
          return;
        }
        const ac = new AbortController();
        const stop = (): void => ac.abort();
        process.once('SIGINT', stop);
        try {
          await followLogs(file, { stdout: process.stdout, stderr: process.stderr }, {
            ...opts, signal: ac.signal, until: () => !(rec.monitorPid > 0 && monitorAlive(rec.monitorPid)),
          });
        } finally { process.removeListener('SIGINT', stop); }
      });
    });

  program.command('exec').description('run a command in a running container').argument('<container>').argument('<command...>')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('-e, --env <KEY=VAL>', 'environment variable (repeatable)', collect)
    .option('-u, --user <user[:group]>', 'user')
    .option('-w, --workdir <dir>', 'working directory')
    .option('-d, --detach', 'do not wait')
    .passThroughOptions()
    .action(async (name: string, args: string[], o: { interactive?: boolean; tty?: boolean; env?: string[]; user?: string; workdir?: string; detach?: boolean }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        const nul = o.interactive ? -1 : openSync('/dev/null', 'r');
        try {
          const h = await e.exec(name, args, { tty: o.tty, env: o.env, user: o.user, workdir: o.workdir, stdio: [nul >= 0 ? nul : 0, 1, 2] });
          if (nul >= 0) closeSync(nul);
          if (o.detach) return;
          if (h.ptyMaster >= 0) {
            const input = new tty.ReadStream(h.ptyMaster);
            const output = new tty.WriteStream(h.ptyMaster);
            input.on('data', (d) => process.stdout.write(d));
            input.on('error', () => {});
            const raw = o.interactive && process.stdin.isTTY;
            if (raw) (process.stdin as tty.ReadStream).setRawMode(true);
            if (o.interactive) process.stdin.pipe(output);
            try { process.exitCode = await h.wait(); } finally {
              if (raw) (process.stdin as tty.ReadStream).setRawMode(false);
              if (o.interactive) { process.stdin.unpipe(output); process.stdin.destroy(); }
              input.destroy();
            }
            return;
          }
          process.exitCode = await h.wait();
        } finally { /* nul closed above */ }
      });
    });

  program.command('wait').description('wait for containers to exit; prints exit codes').argument('<containers...>')
    .action(async (names: string[], _o: unknown, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        for (const n of names) { const r = await e.wait(n); process.stdout.write(`${r.exitCode ?? 0}\n`); }
      });
    });

  program.command('export').description("write a container's filesystem as a tar archive").argument('<container>')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .action(async (name: string, o: { output?: string }, cmd: Command) => {
      if (!o.output && process.stdout.isTTY) throw new BerthError('EINVAL', 'refusing to write a tar archive to a terminal: use -o FILE or redirect stdout');
      await withEngine(cmd, async (e) => {
        const out = o.output ? createWriteStream(o.output) : process.stdout;
        await e.exportTo(name, out);
      });
    });

  program.command('commit').description("create an image from a container's changes").argument('<container>').argument('[image]')
    .option('-a, --author <name>', 'author').option('-m, --message <text>', 'commit message')
    .option('-c, --change <instr>', 'CMD, ENTRYPOINT, ENV, WORKDIR, USER or LABEL in Dockerfile JSON/plain form', collect, [])
    .action(async (name: string, image: string | undefined, o: { author?: string; message?: string; change: string[] }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        const img = await e.commit(name, { ...(image ? { tag: image.includes(':') || image.includes('@') ? image : `${image}:latest` } : {}), author: o.author, comment: o.message, changes: parseChanges(o.change) });
        process.stdout.write(`${img.id}\n`);
      });
    });

  program.command('top').description("a container's processes").argument('<container>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        const rows = [['PID', 'UID', 'CMD'], ...e.top(name).map((p) => [String(p.pid), String(p.user), p.cmd])];
        process.stdout.write(table(rows));
      });
    });

  program.command('stats').description('cpu and memory use of containers (one sample)').argument('[containers...]')
    .option('--json', 'print JSON')
    .action(async (names: string[], o: { json?: boolean }, cmd: Command) => {
      await withEngine(cmd, async (e) => {
        const recs = names.length ? names.map((n) => e.get(n)) : e.list(false);
        const a = recs.map((r) => ({ r, s: e.stats(r.id), t: process.hrtime.bigint() }));
        await new Promise((res) => setTimeout(res, 500));
        const rows = [['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'PIDS']];
        const out: unknown[] = [];
        for (const { r, s, t } of a) {
          const s2 = e.stats(r.id);
          const dt = Number(process.hrtime.bigint() - t);
          const cpu = dt > 0 ? (Number(s2.cpu.usageNanos - s.cpu.usageNanos) / dt) * 100 : 0;
          const mib = (n: number): string => `${(n / 1048576).toFixed(2)}MiB`;
          const lim = s2.memory.limitBytes && s2.memory.limitBytes < 2 ** 62 ? mib(s2.memory.limitBytes) : 'unlimited';
          rows.push([r.id.slice(0, 12), r.name, `${cpu.toFixed(2)}%`, `${mib(s2.memory.usageBytes)} / ${lim}`, String(s2.pids.current)]);
          out.push({ id: r.id, name: r.name, cpuPercent: cpu, memory: s2.memory, pids: s2.pids });
        }
        process.stdout.write(o.json ? JSON.stringify(out, null, 2) + '\n' : table(rows));
      });
    });

  const volume = program.command('volume').description('manage named volumes');
  volume.command('create').argument('[name]').action(async (name: string | undefined, _o: unknown, cmd: Command) => {
    await withEngine(cmd, async (e) => { process.stdout.write(`${e.volumes.create(name).name}\n`); });
  });
  volume.command('ls').option('-q, --quiet').option('--json').action(async (o: { quiet?: boolean; json?: boolean }, cmd: Command) => {
    await withEngine(cmd, async (e) => {
      const l = e.volumes.list();
      if (o.json) process.stdout.write(JSON.stringify(l, null, 2) + '\n');
      else if (o.quiet) process.stdout.write(l.map((v) => `${v.name}\n`).join(''));
      else process.stdout.write(table([['DRIVER', 'VOLUME NAME'], ...l.map((v) => [v.driver, v.name])]));
    });
  });
  volume.command('inspect').argument('<names...>').action(async (names: string[], _o: unknown, cmd: Command) => {
    await withEngine(cmd, async (e) => {
      process.stdout.write(JSON.stringify(names.map((n) => {
        const v = e.volumes.require(n);
        return { Name: v.name, Driver: v.driver, Mountpoint: v.mountpoint, CreatedAt: v.created, Labels: v.labels, Scope: 'local' };
      }), null, 4) + '\n');
    });
  });
  volume.command('rm').argument('<names...>').option('-f, --force').action(async (names: string[], _o: unknown, cmd: Command) => {
    await withEngine(cmd, async (e) => {
      for (const n of names) { e.volumes.remove(n, e.volumeUsers(n)); process.stdout.write(`${n}\n`); }
    });
  });

  const network = program.command('network').description('manage networks');
  network.command('create').argument('<name>').option('--subnet <cidr>').option('--bridge <ifname>')
    .action(async (name: string, o: { subnet?: string; bridge?: string }, cmd: Command) => {
      await withEngine(cmd, async (e) => { process.stdout.write(`${e.networks.create({ name, subnet: o.subnet, bridge: o.bridge }).id}\n`); });
    });
  network.command('ls').option('--json').action(async (o: { json?: boolean }, cmd: Command) => {
    await withEngine(cmd, async (e) => {
      e.networks.ensureDefault();
      const l = e.networks.list();
      if (o.json) process.stdout.write(JSON.stringify(l, null, 2) + '\n');
      else process.stdout.write(table([['NETWORK ID', 'NAME', 'DRIVER', 'SUBNET'], ...l.map((n) => [n.id.slice(0, 12), n.name, n.driver, n.subnet])]));
    });
  });
  network.command('rm').argument('<names...>').action(async (names: string[], _o: unknown, cmd: Command) => {
    await withEngine(cmd, async (e) => {
      for (const n of names) {
        const users = e.containers.list().filter((c) => c.network === n).map((c) => c.name);
        if (users.length) throw new BerthError('EBUSY', `network "${n}" is used by container(s) ${users.join(', ')}; remove them first`);
        e.networks.remove(n);
        process.stdout.write(`${n}\n`);
      }
    });
  });
}

/** `--change` instructions (a subset of Dockerfile's, as `docker commit --change`). */
export function parseChanges(list: string[]): NonNullable<import('../../images/manifest.js').ImageConfig['config']> {
  const out: NonNullable<import('../../images/manifest.js').ImageConfig['config']> = {};
  const argv = (v: string): string[] => {
    if (v.trim().startsWith('[')) {
      try { return JSON.parse(v) as string[]; } catch { throw new BerthError('EINVAL', `--change: bad JSON array ${v}`); }
    }
    return ['/bin/sh', '-c', v];
  };
  for (const c of list) {
    const m = /^\s*(\w+)\s+(.*)$/s.exec(c);
    if (!m) throw new BerthError('EINVAL', `--change: expected "INSTRUCTION value", got ${JSON.stringify(c)}`);
    const [, ins, v] = m;
    switch (ins.toUpperCase()) {
      case 'CMD': out.Cmd = argv(v); break;
      case 'ENTRYPOINT': out.Entrypoint = argv(v); break;
      case 'ENV': (out.Env ??= []).push(v.includes('=') ? v : v.replace(/\s+/, '=')); break;
      case 'WORKDIR': out.WorkingDir = v; break;
      case 'USER': out.User = v; break;
      case 'LABEL': { const [k, ...rest] = v.split('='); (out.Labels ??= {})[k] = rest.join('=').replace(/^"|"$/g, ''); break; }
      default: throw new BerthError('EINVAL', `--change: ${ins} is not supported (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL)`);
    }
  }
  return out;
}
