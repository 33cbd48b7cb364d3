import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { buildImage, pushTestImage } from './fixtures/images.js';

t.setTimeout(240_000);

let reg: TestRegistry;
let authReg: TestRegistry;
let root: string;
let dockerConfig: string;

t.before(async () => {
  [reg, authReg] = await Promise.all([startRegistry(), startRegistry({ auth: 'htpasswd' })]);
  const base = await buildImage('base');
  const layered = await buildImage('layered');
  await pushTestImage(reg.host, 'berth/base', 'v1', base);
  await pushTestImage(reg.host, 'berth/layered', 'v1', layered);
  await pushTestImage(authReg.host, 'secret/base', 'v1', base, { creds: { username: authReg.username, password: authReg.password } });
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cli-'));
  dockerConfig = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-dockercfg-'));
});
t.teardown(async () => {
  await Promise.all([reg?.stop(), authReg?.stop()]);
  for (const d of [root, dockerConfig]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

interface Run { code: number | null; stdout: string; stderr: string }

function berth(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/berth-main.ts', '--root', root, ...args], {
      env: { ...process.env, DOCKER_CONFIG: dockerConfig }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

t.test('pull, images, inspect, tag, rmi', async (t) => {
  const ref = `${reg.host}/berth/layered:v1`;
  const q = await berth(['pull', '-q', ref]);
  t.equal(q.code, 0, q.stderr);
  t.equal(q.stdout, `${ref}\n`, 'quiet pull prints only the reference');

  const p = await berth(['pull', `${reg.host}/berth/base:v1`]);
  t.equal(p.code, 0, p.stderr);
  t.match(p.stdout, /Pulling \(1 layer\)/);
  t.match(p.stdout, /Digest: sha256:[0-9a-f]{64}/);
  t.match(p.stdout, /Status: (Downloaded newer image|Image is up to date)/);
  t.notOk(p.stdout.includes('\u001b['), 'no escape codes when stdout is not a TTY');

  const again = await berth(['pull', ref]);
  t.match(again.stdout, /Image is up to date/);

  const js = await berth(['images', '--json']);
  t.equal(js.code, 0);
  const list = JSON.parse(js.stdout) as { Id: string; RepoTags: string[]; Layers: number }[];
  t.equal(list.length, 2);
  const lay = list.find((i) => i.RepoTags.includes(ref))!;
  t.ok(lay, 'images --json lists the pulled image');
  t.equal(lay.Layers, 2);

  const tab = await berth(['images', '--digests']);
  t.match(tab.stdout, /^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+CREATED\s+SIZE/);
  t.match(tab.stdout, new RegExp(`${reg.host.replace(/\./g, '\\.')}/berth/layered\\s+v1\\s+sha256:`));
  const ids = await berth(['images', '-q']);
  t.equal(ids.stdout.trim().split('\n').length, 2);

  const ins = await berth(['inspect', ref]);
  t.equal(ins.code, 0);
  const doc = JSON.parse(ins.stdout) as { Id: string; RootFS: { Layers: string[] } }[];
  t.equal(doc[0].Id, lay.Id);
  t.equal(doc[0].RootFS.Layers.length, 2);
  t.equal((await berth(['image', 'inspect', lay.Id.slice(7, 19)])).code, 0, 'inspect by short id');

  t.equal((await berth(['tag', ref, 'mine/layered:copy'])).code, 0);
  const un = await berth(['rmi', 'mine/layered:copy']);
  t.match(un.stdout, /Untagged: mine\/layered:copy/);
  t.notMatch(un.stdout, /Deleted/);

  const snapsBefore = fs.readdirSync(path.join(root, 'snapshots')).length;
  t.equal(snapsBefore, 2, 'base layer shared by both images: 2 snapshots');
  const rm = await berth(['rmi', ref]);
  t.equal(rm.code, 0, rm.stderr);
  t.match(rm.stdout, /Deleted: sha256:/);
  t.equal(fs.readdirSync(path.join(root, 'snapshots')).length, 1, 'rmi removed the snapshot no other image uses');
});

t.test('errors are one clear line and a non-zero exit', async (t) => {
  const bad = await berth(['pull', 'Bad Ref!!']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /^berth: invalid image reference "Bad Ref!!": .+\n$/);
  t.equal(bad.stderr.trim().split('\n').length, 1);
  const missing = await berth(['pull', `${reg.host}/berth/nothere:v1`]);
  t.not(missing.code, 0);
  t.match(missing.stderr, /^berth: .*not found.*\n$/);
  const rmi = await berth(['rmi', 'nothere:1']);
  t.not(rmi.code, 0);
  t.match(rmi.stderr, /not in the local store/);
  const fmt = await berth(['save', '-o', path.join(root, 'x.tar'), '--format', 'zip', 'whatever']);
  t.not(fmt.code, 0);
  t.match(fmt.stderr, /--format must be docker or oci/);
  const noAuth = await berth(['pull', `${authReg.host}/secret/base:v1`]);
  t.not(noAuth.code, 0, 'an authenticated registry refuses without credentials');
});

t.test('save and load through the CLI; prune', async (t) => {
  const ref = `${reg.host}/berth/base:v1`;
  const out = path.join(root, 'base.tar');
  const s = await berth(['save', '-o', out, ref]);
  t.equal(s.code, 0, s.stderr);
  t.ok(fs.statSync(out).size > 0);
  t.equal((await berth(['rmi', ref])).code, 0);
  t.same(JSON.parse((await berth(['images', '--json'])).stdout), []);
  const l = await berth(['load', '-i', out]);
  t.equal(l.code, 0, l.stderr);
  t.match(l.stdout, `Loaded image: ${ref}`);
  t.equal((JSON.parse((await berth(['images', '--json'])).stdout) as unknown[]).length, 1);
  // untag → dangling → prune removes it
  const id = (JSON.parse((await berth(['images', '--json'])).stdout) as { Id: string }[])[0].Id;
  await berth(['tag', ref, 'keep/me:1']);
  await berth(['rmi', ref]);
  await berth(['rmi', 'keep/me:1']);
  t.same(JSON.parse((await berth(['images', '--json'])).stdout), [], 'last tag removed deletes the image');
  void id;
  const pr = await berth(['image', 'prune', '-a', '-f']);
  t.equal(pr.code, 0);
  t.match(pr.stdout, /Deleted 0 images/);
});

t.test('login stores credentials that pull then uses; logout forgets them', async (t) => {
  const li = await berth(['login', '--username', authReg.username!, '--password-stdin', authReg.host], `${authReg.password}\n`);
  t.equal(li.code, 0, li.stderr);
  t.match(li.stdout, /Login Succeeded/);
  const cfg = JSON.parse(fs.readFileSync(path.join(dockerConfig, 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> };
  t.ok(Object.keys(cfg.auths).some((k) => k.includes(authReg.host)));
  const p = await berth(['pull', '-q', `${authReg.host}/secret/base:v1`]);
  t.equal(p.code, 0, p.stderr);
  const bad = await berth(['login', '--username', authReg.username!, '--password-stdin', authReg.host], 'wrong\n');
  t.not(bad.code, 0);
  const lo = await berth(['logout', authReg.host]);
  t.match(lo.stdout, /Removing login credentials/);
  const cfg2 = JSON.parse(fs.readFileSync(path.join(dockerConfig, 'config.json'), 'utf8')) as { auths: Record<string, unknown> };
  t.same(Object.keys(cfg2.auths).filter((k) => k.includes(authReg.host)), []);
});

t.test('progress: bars on a TTY, plain lines otherwise, nothing when quiet', async (t) => {
  const { PullProgress } = await import('../images/progress.js');
  const d = 'sha256:' + 'ab'.repeat(32);
  const feed = (p: InstanceType<typeof PullProgress>) => {
    p.handle({ type: 'resolved', ref: 'x:1', manifestDigest: d, layers: [{ digest: d, size: 2_000_000 }] });
    p.handle({ type: 'layer', digest: d, status: 'downloading', current: 1_000_000, total: 2_000_000 });
    p.handle({ type: 'layer', digest: d, status: 'downloading', current: 1_500_000, total: 2_000_000 });
    p.handle({ type: 'layer', digest: d, status: 'complete', current: 2_000_000, total: 2_000_000 });
    p.handle({ type: 'done', ref: 'x:1', manifestDigest: d, imageId: d, downloaded: true });
    p.close();
  };
  let tty = '';
  feed(new PullProgress({ write: (s: string) => { tty += s; }, isTTY: true }));
  t.match(tty, /ababababab: Downloading \[=+> +\] 1\.00MB\/2\.00MB/);
  t.ok(tty.includes('\u001b[1A'), 'redraws in place');
  t.match(tty, /ababababab: Pull complete/);
  let plain = '';
  feed(new PullProgress({ write: (s: string) => { plain += s; } }));
  t.notOk(plain.includes('\u001b'));
  t.equal(plain.match(/Downloading/g)?.length, 1, 'one line per status change');
  t.match(plain, /Pull complete\nDigest: sha256:/);
  let quiet = '';
  feed(PullProgress.forStream({ write: (s: string) => { quiet += s; }, isTTY: true }, true));
  t.equal(quiet, '');
});
