/**
 * /etc/hosts on a network follows its members: a container started on it gets an entry for every
 * running peer and every peer gets one for it; a peer that stops or is removed disappears from
 * the others' files (its address may be handed to the next container). Real registry, real CNI
 * bridge, CLI from source, own root/state/cgroup parent/bridge; nothing is left behind.
 */
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { baseImage, pushTestImage } from './fixtures/images.js';

t.setTimeout(300000);

const rand = randomBytes(3).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'berth-hosts-'));
const root = join(dir, 'root');
const state = join(dir, 's');
const cgParent = `berth-hoststest-${rand}`;
const bridge = `berth${rand}`;
/** A /24 the host does not use, for this file's default network. */
function freeSubnet(): string {
  const used = execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' }) + execFileSync('ip', ['-o', 'route'], { encoding: 'utf8' });
  for (;;) {
    const s = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`${s}.`)) return `${s}.0/24`;
  }
}
const subnet = freeSubnet();
const env = { ...process.env, BERTH_CGROUP_PARENT: cgParent, BERTH_DEFAULT_BRIDGE: bridge, BERTH_DEFAULT_SUBNET: subnet };
let reg: TestRegistry | undefined;
let IMG = '';

function berth(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/berth-main.ts', '--root', root, '--state', state, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`berth ${args.join(' ')} timed out`)); }, 120000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

const mountsUnder = (p: string): string[] => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(p));

t.before(async () => {
  reg = await startRegistry();
  IMG = (await pushTestImage(reg.host, 'berth/busybox', 'latest', await baseImage())).ref;
  const p = await berth(['pull', IMG]);
  if (p.code !== 0) throw new Error(`pull: ${p.stderr}`);
});

t.teardown(async () => {
  try {
    const ids = (await berth(['ps', '-a', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await berth(['rm', '-f', ...ids]);
  } finally {
    for (const m of mountsUnder(dir).reverse()) { try { execFileSync('umount', ['-l', m]); } catch { /* gone */ } }
    for (const c of readdirSync('/sys/fs/cgroup')) { try { rmdirSync(join('/sys/fs/cgroup', c, cgParent)); } catch { /* absent */ } }
    try { execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* never made */ }
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});


const hostsOf = async (name: string): Promise<string> => {
  const r = await berth(['exec', name, 'cat', '/etc/hosts']);
  if (r.code !== 0) throw new Error(`exec ${name}: ${r.stderr}`);
  return r.stdout;
};
const ipOf = async (name: string): Promise<string> => {
  const r = await berth(['inspect', name]);
  const doc = JSON.parse(r.stdout) as Array<{ NetworkSettings: { IPAddress: string } }>;
  return doc[0].NetworkSettings.IPAddress;
};
const has = (hosts: string, ip: string, name: string): boolean => hosts.split('\n').some((l) => l.split(/\s+/)[0] === ip && l.split(/\s+/).includes(name));

t.test('peers appear in the /etc/hosts of the others and leave it when they stop or are removed', async (t) => {
  for (const n of ['ha', 'hb', 'hc']) {
    const r = await berth(['run', '-d', '--name', n, IMG, 'sleep', '1000']);
    t.equal(r.code, 0, r.stderr);
  }
  const ip = { ha: await ipOf('ha'), hb: await ipOf('hb'), hc: await ipOf('hc') };
  t.ok(Object.values(ip).every((x) => /^\d+\.\d+\.\d+\.\d+$/.test(x)), JSON.stringify(ip));
  let a = await hostsOf('ha');
  t.ok(has(a, ip.hb, 'hb') && has(a, ip.hc, 'hc'), 'ha sees hb and hc');
  t.ok(has(await hostsOf('hc'), ip.ha, 'ha'), 'hc sees ha (added when ha was already running)');

  t.equal((await berth(['rm', '-f', 'hb'])).code, 0);
  a = await hostsOf('ha');
  t.notOk(a.includes('hb'), 'hb is gone from ha after rm -f');
  t.ok(has(a, ip.hc, 'hc'), 'hc is still there');
  t.notOk((await hostsOf('hc')).includes('hb'), 'and from hc');

  t.equal((await berth(['stop', '-t', '0', 'hc'])).code, 0);
  a = await hostsOf('ha');
  t.notOk(a.includes('hc'), 'a stopped peer is gone too');
  t.ok(has(a, ip.ha, 'ha'), 'ha keeps its own entry');

  t.equal((await berth(['start', 'hc'])).code, 0);
  const back = await ipOf('hc');
  t.ok(has(await hostsOf('ha'), back, 'hc'), 'a restarted peer comes back with its address');
  t.equal((await berth(['rm', '-f', 'ha', 'hc'])).code, 0);
});
