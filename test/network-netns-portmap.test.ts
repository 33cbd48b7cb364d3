/**
 * The engine's network fast path against the real CNI plugins: createNetns (a namespace made
 * before any process is in it, `lo` up, the caller back in its own namespace), attachments
 * without published ports skip the portmap plugin, DEL still runs portmap when the stored ADD
 * mapped ports (even when the caller does not pass them, and after the netns file is gone), and
 * the loopback plugin's DEL runs only for attachments that stored a loopback ADD.
 * Bridges/subnets are random and contain "berth"; everything is removed in teardown.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomInt } from 'node:crypto';
import { NetworkStore, parsePortSpec } from '../runtime/network/networks.js';
import { createNetns, removeNetns } from '../runtime/network/netns.js';
import { deleteBridge } from '../runtime/network/bridge-ioctl.js';
import { loadAttachment } from '../runtime/network/cni.js';

t.setTimeout(120000);

function freeSubnet(): string {
  const used = execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' }) + execFileSync('ip', ['-o', 'route'], { encoding: 'utf8' });
  for (;;) {
    const s = `10.${randomInt(205, 250)}.${randomInt(0, 255)}`;
    if (!used.includes(`${s}.`)) return `${s}.0/24`;
  }
}

function setup(tt: Test): { store: NetworkStore; root: string; bridge: string } {
  const root = mkdtempSync(join(tmpdir(), 'berth-netpm-'));
  const bridge = `berth${randomBytes(3).toString('hex')}`;
  const store = new NetworkStore(root, { defaultBridge: bridge, defaultSubnet: freeSubnet(), subnetPool: `10.${randomInt(205, 250)}.0.0/16` });
  tt.teardown(() => {
    for (const n of store.list()) deleteBridge(n.bridge);
    for (const f of existsSync(join(root, 'netns')) ? readdirSync(join(root, 'netns')) : []) removeNetns(join(root, 'netns', f));
    rmSync(root, { recursive: true, force: true });
  });
  return { store, root, bridge };
}

function newNs(tt: Test, root: string, name: string): string {
  const f = join(root, 'netns', name);
  createNetns(f);
  tt.teardown(() => removeNetns(f));
  return f;
}

const inNs = (file: string, args: string[]): string => execFileSync('nsenter', [`--net=${file}`, ...args], { encoding: 'utf8' });
const iptables = (): string => execFileSync('iptables-save', { encoding: 'utf8' });

t.test('createNetns: a new namespace with lo up; the caller stays where it was', async (tt) => {
  const { root } = setup(tt);
  const before = readlinkSync('/proc/thread-self/ns/net');
  const f = newNs(tt, root, 'a');
  tt.equal(readlinkSync('/proc/thread-self/ns/net'), before, 'this thread is back in its namespace');
  tt.equal(readlinkSync('/proc/self/ns/net'), before);
  const links = inNs(f, ['ip', '-o', 'link']).trim().split('\n');
  tt.equal(links.length, 1, 'only lo in it');
  tt.match(links[0], /^1: lo: <LOOPBACK,UP,LOWER_UP>/, 'lo is up');
  tt.match(inNs(f, ['ip', '-o', 'addr', 'show', 'lo']), /inet 127\.0\.0\.1\/8/, 'lo has 127.0.0.1');
  tt.not(inNs(f, ['readlink', '/proc/self/ns/net']).trim(), before, 'it is another namespace than ours');
  const g = newNs(tt, root, 'b');
  tt.not(inNs(g, ['readlink', '/proc/self/ns/net']).trim(), inNs(f, ['readlink', '/proc/self/ns/net']).trim(), 'each call makes its own');

  const blocker = join(root, 'file');
  writeFileSync(blocker, 'x');
  tt.throws(() => createNetns(join(blocker, 'ns')), 'a path that cannot be made fails');
  tt.equal(readlinkSync('/proc/thread-self/ns/net'), before, 'and leaves this thread in its namespace');
  removeNetns(f);
  tt.notOk(existsSync(f), 'removeNetns removes the file');
});

t.test('createNetns without berth.node (BERTH_NO_ADDON=1: the koffi calls) makes the same namespace', async (tt) => {
  const { root } = setup(tt);
  const f = join(root, 'netns', 'koffi');
  const mod = new URL('../runtime/network/netns.ts', import.meta.url).href;
  const script = `const m = await import(${JSON.stringify(mod)}); m.createNetns(${JSON.stringify(f)}); process.stdout.write((await import('node:fs')).readlinkSync('/proc/thread-self/ns/net'));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8', env: { ...process.env, BERTH_NO_ADDON: '1' },
  });
  tt.teardown(() => removeNetns(f));
  tt.equal(out, readlinkSync('/proc/self/ns/net'), 'the caller is back in the host namespace');
  tt.match(inNs(f, ['ip', '-o', 'link']).trim(), /^1: lo: <LOOPBACK,UP,LOWER_UP>[^\n]*$/, 'only lo, and up');
  tt.not(inNs(f, ['readlink', '/proc/self/ns/net']).trim(), out, 'a namespace of its own');
});

t.test('no published ports: portmap is not run; ports: DEL still removes the rules', async (tt) => {
  const { store, root } = setup(tt);
  const opts = { stateDir: store.stateDir };

  // without ports
  const plain = { containerId: `berth-np-${randomBytes(3).toString('hex')}`, netns: newNs(tt, root, 'np'), loopback: false };
  tt.teardown(() => store.disconnect('berth', plain).catch(() => {}));
  const att = await store.connect('berth', plain);
  tt.ok(att.ip, 'address assigned');
  const stored = loadAttachment({ name: 'berth' }, { ...plain, ifname: 'eth0' }, opts);
  tt.same(stored?.list.plugins.map((p) => p.type), ['bridge'], 'the ADD ran the bridge plugin only');
  tt.match(inNs(plain.netns, ['ip', '-o', 'addr', 'show', 'eth0']), `inet ${att.ip}/`, 'eth0 configured');
  tt.notMatch(iptables(), plain.containerId, 'no iptables rules for it');
  await store.check('berth', plain);
  tt.pass('CHECK passes for an attachment without portmap');
  await store.disconnect('berth', plain);
  tt.equal(loadAttachment({ name: 'berth' }, { ...plain, ifname: 'eth0' }, opts), null, 'DEL removed the stored result');
  tt.same(readdirSync(store.stateDir), [], 'nothing stored (no loopback result either)');

  // with ports: DEL without passing them, after the netns file is gone (the engine's order)
  const port = randomInt(20000, 40000);
  const pub = { containerId: `berth-pm-${randomBytes(3).toString('hex')}`, netns: newNs(tt, root, 'pm'), loopback: false, ports: [parsePortSpec(`127.0.0.1:${port}:80/tcp`)] };
  tt.teardown(() => store.disconnect('berth', pub).catch(() => {}));
  await store.connect('berth', pub);
  const s2 = loadAttachment({ name: 'berth' }, { ...pub, ifname: 'eth0' }, opts);
  tt.same(s2?.list.plugins.map((p) => p.type), ['bridge', 'portmap'], 'the ADD ran portmap');
  const rules = iptables();
  tt.match(rules, pub.containerId, 'portmap installed rules naming the container');
  const chains = [...new Set(rules.split('\n').filter((l) => l.includes(pub.containerId)).flatMap((l) => l.match(/CNI-(?:DN|SN)-[0-9a-f]+/g) ?? []))];
  tt.ok(chains.length > 0, `per-container chains: ${chains.join(' ')}`);
  removeNetns(pub.netns);
  await store.disconnect('berth', { containerId: pub.containerId, netns: pub.netns, loopback: false });
  const after = iptables();
  tt.notMatch(after, pub.containerId, 'DEL (ports known only from the stored ADD) removed the rules');
  for (const c of chains) tt.notOk(after.includes(c), `chain ${c} is gone`);
  await store.disconnect('berth', { containerId: pub.containerId, netns: pub.netns, loopback: false });
  tt.pass('a second DEL is fine');
});

t.test('loopback plugin: run in parallel when asked, its DEL only when its ADD is stored', async (tt) => {
  const { store } = setup(tt);
  // a namespace with lo down, as a process's own new netns has it
  execFileSync('ip', ['netns', 'add', `berth-lo-${randomBytes(3).toString('hex')}`]);
  const name = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]).find((n) => n.startsWith('berth-lo-'))!;
  tt.teardown(() => { try { execFileSync('ip', ['netns', 'del', name]); } catch { /* gone */ } });
  const nsPath = `/run/netns/${name}`;
  tt.match(inNs(nsPath, ['ip', '-o', 'link', 'show', 'lo']), /state DOWN|<LOOPBACK>/, 'lo starts down');
  const c = { containerId: `berth-lo-${randomBytes(3).toString('hex')}`, netns: nsPath };
  tt.teardown(() => store.disconnect('berth', c).catch(() => {}));
  await store.connect('berth', c);
  tt.match(inNs(nsPath, ['ip', '-o', 'link', 'show', 'lo']), /UP/, 'the loopback plugin brought lo up');
  tt.equal(readdirSync(store.stateDir).length, 2, 'two stored results (bridge, loopback)');
  await store.disconnect('berth', c);
  tt.same(readdirSync(store.stateDir), [], 'both DELs ran');
});
