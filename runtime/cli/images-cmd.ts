/**
 * berth image commands: pull, push, images, image inspect/ls/rm/prune, inspect, tag, rmi, save,
 * load, login, logout. Parsing and printing only; the work is in images/store.ts and
 * images/archive.ts. Modules are imported lazily so other commands don't pay for them.
 */
import type { Command } from 'commander';
import { BerthError } from '../errors.js';

interface Globals { root: string }

function globals(cmd: Command): Globals {
  let c: Command | null = cmd;
  while (c.parent) c = c.parent;
  return c.opts() as Globals;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

async function openStore(cmd: Command) {
  const { ImageStore } = await import('../../images/store.js');
  return ImageStore.open(globals(cmd).root);
}

async function credsFrom(s: string | undefined) {
  if (s === undefined) return undefined;
  const { parseCredsFlag } = await import('../../images/registry/credentials.js');
  return parseCredsFlag(s);
}

function ago(iso: string | null): string {
  if (!iso) return 'N/A';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return 'N/A';
  const s = Math.max(0, (Date.now() - t) / 1000);
  const units: [number, string][] = [[31536000, 'year'], [2592000, 'month'], [604800, 'week'], [86400, 'day'], [3600, 'hour'], [60, 'minute']];
  for (const [n, u] of units) if (s >= n) { const k = Math.floor(s / n); return `${k} ${u}${k > 1 ? 's' : ''} ago`; }
  return 'Less than a minute ago';
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i] + 3))).join('').trimEnd()).join('\n') + '\n';
}

function withAbort<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSig = () => ac.abort(new BerthError('EINTERRUPTED', 'interrupted'));
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  return fn(ac.signal).finally(() => { process.off('SIGINT', onSig); process.off('SIGTERM', onSig); });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Extra inspectors (e.g. containers) that `berth inspect` tries when no image matches. */
export const inspectFallbacks: ((name: string, root: string) => Promise<unknown | null>)[] = [];

export function registerImageCommands(program: Command): void {
  const pull = async (name: string, o: { platform?: string; quiet?: boolean; creds?: string; insecure?: string[]; concurrency?: string }, cmd: Command) => {
    const { parsePlatform } = await import('../../images/manifest.js');
    const { PullProgress } = await import('../../images/progress.js');
    const store = await openStore(cmd);
    const progress = PullProgress.forStream(process.stdout, !!o.quiet);
    let rateShown = false;
    try {
      await withAbort(async (signal) => {
        const img = await store.pull(name, {
          ...(o.platform ? { platform: parsePlatform(o.platform) } : {}),
          ...(o.concurrency ? { concurrency: Number(o.concurrency) } : {}),
          creds: await credsFrom(o.creds), insecure: o.insecure, signal, onProgress: progress.handle,
          onRateLimit: (r) => {
            if (!rateShown && r.remaining !== undefined && !o.quiet) { rateShown = true; process.stderr.write(`${r.host}: ratelimit-remaining ${r.remaining}${r.limit !== undefined ? ` of ${r.limit}` : ''}\n`); }
          },
        });
        void img;
      });
      const { parseReference } = await import('../../images/reference.js');
      process.stdout.write(`${parseReference(name).string()}\n`);
    } finally {
      progress.close();
      store.close();
    }
  };

  program.command('pull')
    .description('download an image from a registry')
    .argument('<image>', 'name[:tag|@digest]')
    .option('--platform <os/arch[/variant]>', 'platform to pull from a multi-platform image')
    .option('-q, --quiet', 'print only the image reference')
    .option('--creds <user:password>', 'registry credentials (default: docker config)')
    .option('--insecure <host>', 'allow plain http for this registry (repeatable)', collect)
    .option('--concurrency <n>', 'layers downloaded at once (1-6)', '6')
    .action(pull);

  program.command('push')
    .description('upload an image to a registry')
    .argument('<image>', 'local image')
    .argument('[target]', 'name:tag to push as (default: the image name)')
    .option('--creds <user:password>', 'registry credentials')
    .option('--insecure <host>', 'allow plain http for this registry (repeatable)', collect)
    .option('-q, --quiet', 'print only the digest')
    .action(async (image: string, target: string | undefined, o: { creds?: string; insecure?: string[]; quiet?: boolean }, cmd: Command) => {
      const store = await openStore(cmd);
      try {
        const r = await withAbort(async (signal) => store.push(image, target, {
          creds: await credsFrom(o.creds), insecure: o.insecure, signal,
          onProgress: (m) => { if (!o.quiet) process.stdout.write(m + '\n'); },
        }));
        process.stdout.write(o.quiet ? `${r.digest}\n` : `${r.ref}: digest: ${r.digest}\n`);
      } finally { store.close(); }
    });

  const list = async (o: { digests?: boolean; json?: boolean; quiet?: boolean }, cmd: Command) => {
    const store = await openStore(cmd);
    try {
      const { familiar, familiarRepository, shortId } = await import('../../images/store.js');
      const { formatBytes } = await import('../../images/progress.js');
      const { parseReference } = await import('../../images/reference.js');
      const imgs = store.list();
      if (o.json) {
        process.stdout.write(JSON.stringify(imgs.map((i) => ({
          Id: i.id, RepoTags: i.repoTags.map(familiar), RepoDigests: i.repoDigests.map(familiar), Created: i.created,
          Size: i.size, Os: i.os, Architecture: i.architecture, Variant: i.variant ?? undefined, Layers: i.layers.length,
          ManifestDigest: i.manifestDigest,
        })), null, 2) + '\n');
        return;
      }
      if (o.quiet) {
        process.stdout.write([...new Set(imgs.map((i) => shortId(i.id)))].map((s) => s + '\n').join(''));
        return;
      }
      const head = ['REPOSITORY', 'TAG', ...(o.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
      const rows: string[][] = [head];
      for (const i of imgs) {
        const digest = i.repoDigests[0]?.split('@')[1] ?? '<none>';
        const tags = i.repoTags.length ? i.repoTags : [null];
        for (const t of tags) {
          let repo = '<none>', tag = '<none>';
          if (t) { const r = parseReference(t); repo = familiarRepository(r.repository); tag = r.tag ?? '<none>'; }
          else if (i.repoDigests[0]) repo = familiarRepository(i.repoDigests[0].split('@')[0]);
          rows.push([repo, tag, ...(o.digests ? [digest] : []), shortId(i.id), ago(i.created), formatBytes(i.size)]);
        }
      }
      process.stdout.write(table(rows));
    } finally { store.close(); }
  };
  const listCmd = (c: Command) => c
    .option('--digests', 'show digests')
    .option('--json', 'print JSON')
    .option('-q, --quiet', 'print only image ids')
    .action(list);
  listCmd(program.command('images').description('list images'));

  const inspect = async (names: string[], _o: unknown, cmd: Command) => {
    const store = await openStore(cmd);
    try {
      const out: unknown[] = [];
      for (const n of names) {
        if (store.get(n)) { out.push(await store.inspect(n)); continue; }
        let found: unknown | null = null;
        for (const f of inspectFallbacks) { found = await f(n, globals(cmd).root); if (found) break; }
        if (!found) throw new BerthError('ENOTFOUND', `no such image: ${n}`);
        out.push(found);
      }
      process.stdout.write(JSON.stringify(out, null, 4) + '\n');
    } finally { store.close(); }
  };

  const rmi = async (names: string[], o: { force?: boolean }, cmd: Command) => {
    const store = await openStore(cmd);
    try {
      let failed: unknown = null;
      for (const n of names) {
        try {
          const r = store.remove(n, { force: !!o.force });
          for (const u of r.untagged) process.stdout.write(`Untagged: ${u}\n`);
          for (const d of r.deleted) process.stdout.write(`Deleted: ${d}\n`);
        } catch (e) {
          if (!(e instanceof BerthError)) throw e;
          process.stderr.write(`berth: ${e.message}\n`);
          failed = e;
        }
      }
      if (failed) process.exitCode = 1;
    } finally { store.close(); }
  };

  const prune = async (o: { all?: boolean }, cmd: Command) => {
    const store = await openStore(cmd);
    try {
      const r = store.prune({ all: !!o.all });
      for (const u of r.untagged) process.stdout.write(`untagged: ${u}\n`);
      for (const d of r.deleted) process.stdout.write(`deleted: ${d}\n`);
      process.stdout.write(`Deleted ${r.deleted.length} image${r.deleted.length === 1 ? '' : 's'}\n`);
    } finally { store.close(); }
  };

  const image = program.command('image').description('manage images');
  image.command('inspect').description('show image details as JSON').argument('<image...>').action(inspect);
  listCmd(image.command('ls').description('list images'));
  image.command('rm').description('remove images').argument('<image...>').option('-f, --force', 'remove even if used').action(rmi);
  image.command('prune').description('remove dangling images').option('-a, --all', 'remove all images no container uses').option('-f, --force', 'do not prompt').action(prune);
  image.command('pull').argument('<image>').option('--platform <p>').option('-q, --quiet').option('--creds <c>').option('--insecure <host>', '', collect).option('--concurrency <n>', '', '6').action(pull);

  if (!program.commands.some((c) => c.name() === 'inspect')) {
    program.command('inspect').description('show details of images (and other objects) as JSON').argument('<name...>').action(inspect);
  }

  program.command('tag')
    .description('give an image another name')
    .argument('<source>').argument('<target>')
    .action(async (src: string, dst: string, _o: unknown, cmd: Command) => {
      const store = await openStore(cmd);
      try { store.tag(src, dst); } finally { store.close(); }
    });

  program.command('rmi').description('remove images').argument('<image...>').option('-f, --force', 'remove even if a container uses it').action(rmi);

  program.command('save')
    .description('write images to a docker-archive tar or an OCI layout')
    .argument('<image...>')
    .requiredOption('-o, --output <file>', 'output file (OCI: a directory when it exists or ends in /)')
    .option('--format <format>', 'docker or oci', 'docker')
    .action(async (images: string[], o: { output: string; format: string }, cmd: Command) => {
      if (o.format !== 'docker' && o.format !== 'oci') throw new BerthError('EINVAL', `--format must be docker or oci, not "${o.format}"`);
      const { saveImages } = await import('../../images/archive.js');
      const store = await openStore(cmd);
      try { await saveImages(store, images, o.output, o.format); } finally { store.close(); }
    });

  program.command('load')
    .description('load images from a docker-archive tar or an OCI layout (tar or directory)')
    .requiredOption('-i, --input <file>', 'archive to read')
    .option('-q, --quiet', 'print nothing')
    .action(async (o: { input: string; quiet?: boolean }, cmd: Command) => {
      const { loadImages } = await import('../../images/archive.js');
      const { familiar } = await import('../../images/store.js');
      const store = await openStore(cmd);
      try {
        const imgs = await loadImages(store, o.input);
        if (!o.quiet) {
          for (const i of imgs) {
            if (i.repoTags.length) for (const t of i.repoTags) process.stdout.write(`Loaded image: ${familiar(t)}\n`);
            else process.stdout.write(`Loaded image ID: ${i.id}\n`);
          }
        }
      } finally { store.close(); }
    });

  program.command('login')
    .description('log in to a registry and store the credentials in the docker config')
    .argument('[server]', 'registry host', 'docker.io')
    .option('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password (prefer --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .option('--insecure <host>', 'allow plain http for this registry (repeatable)', collect)
    .action(async (server: string, o: { username?: string; password?: string; passwordStdin?: boolean; insecure?: string[] }) => {
      if (!o.username) throw new BerthError('EINVAL', 'login needs --username');
      const password = o.passwordStdin ? await readStdin() : o.password;
      if (password === undefined || password === '') throw new BerthError('EINVAL', 'login needs a password: --password-stdin (or --password)');
      const { RegistryClient } = await import('../../images/registry/client.js');
      const { registryHostFor } = await import('../../images/reference.js');
      const { saveCredentials } = await import('../../images/registry/credentials.js');
      const creds = { username: o.username, password };
      await new RegistryClient({ creds, ...(o.insecure ? { insecure: o.insecure } : {}) }).login(registryHostFor(server));
      const file = saveCredentials(server, creds);
      process.stdout.write(`Login Succeeded (credentials saved in ${file})\n`);
    });

  program.command('logout')
    .description('forget the stored credentials for a registry')
    .argument('[server]', 'registry host', 'docker.io')
    .action(async (server: string) => {
      const { removeCredentials } = await import('../../images/registry/credentials.js');
      process.stdout.write(removeCredentials(server) ? `Removing login credentials for ${server}\n` : `Not logged in to ${server}\n`);
    });
}
