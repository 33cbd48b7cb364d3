/**
 * runtime/network against the real CNI plugins in /usr/lib/cni: netns files, the default bridge
 * network, two containers talking, DEL idempotence, user networks, portmap, hosts/resolv.conf.
 * Every bridge/subnet here is random and contains "berth"; only namespaces we create are touched.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomInt } from 'node:crypto';
import { NetworkStore, parsePortSpec, cidrOverlap } from '../runtime/network/networks.js';
import { bindNetns, removeNetns, writeHostsFile, writeResolvConf } from '../runtime/network/netns.js';
import { deleteBridge, linkExists } from '../runtime/network/bridge-ioctl.js';
import { CniError, execPlugin } from '../runtime/network/cni.js';

t.setTimeout(120000);

function hostAddrs(): string {
  return execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' }) + execFileSync('ip', ['-o', 'route'], { encoding: 'utf8' });
}

/** A /24 the host does not use. */
function freeSubnet(): string {
  const used = hostAddrs();
  for (;;) {
    const s = `10.${randomInt(205, 250)}.${randomInt(0, 255)}`;
    if (!used.includes(`${s}.`)) return `${s}.0/24`;
  }
}

function sandbox(tt: Test): { pid: number; proc: ChildProcess } {
  const proc = spawn('unshare', ['-n', 'sleep', '1000'], { stdio: 'ignore' });
  tt.teardown(() => { proc.kill('SIGKILL'); });
  return { pid: proc.pid!, proc };
}

async function waitNetnsDiffers(pid: number): Promise<void> {
  const mine = execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' });
  for (let i = 0; i < 200; i++) {
    try { if (execFileSync('readlink', [`/proc/${pid}/ns/net`], { encoding: 'utf8' }) !== mine) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`pid ${pid} never entered a new netns`);
}

function inNs(pid: number, args: string[]): string {
  return execFileSync('nsenter', ['-t', String(pid), '-n', ...args], { encoding: 'utf8' });
}

function vethsOn(bridge: string): string[] {
  return execFileSync('ip', ['-o', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`master ${bridge} `));
}

function setup(tt: Test): { store: NetworkStore; root: string; bridge: string; subnet: string } {
  const root = mkdtempSync(join(tmpdir(), 'berth-net-'));
  const bridge = `berth${randomBytes(3).toString('hex')}`;
  const subnet = freeSubnet();
  const store = new NetworkStore(root, { defaultBridge: bridge, defaultSubnet: subnet, subnetPool: `10.${randomInt(205, 250)}.0.0/16` });
  tt.teardown(() => {
    for (const n of store.list()) deleteBridge(n.bridge);
    rmSync(root, { recursive: true, force: true });
  });
  return { store, root, bridge, subnet };
}

t.test('default bridge network: ADD, reach, CHECK, DEL idempotent', async (tt) => {
  const { store, root, bridge, subnet } = setup(tt);
  const a = sandbox(tt), b = sandbox(tt);
  await waitNetnsDiffers(a.pid);
  await waitNetnsDiffers(b.pid);
  const nsFile = join(root, 'netns', 'berth-a');
  bindNetns(a.pid, nsFile);
  tt.teardown(() => removeNetns(nsFile));
  const ca = { containerId: `berth-a-${randomBytes(3).toString('hex')}`, netns: nsFile };
  const cb = { containerId: `berth-b-${randomBytes(3).toString('hex')}`, netns: `/proc/${b.pid}/ns/net` };
  tt.teardown(async () => {
    await store.disconnect('berth', ca).catch(() => {});
    await store.disconnect('berth', cb).catch(() => {});
  });

  const att = await store.connect('berth', ca);
  tt.ok(att.ip, `got an address ${att.ip}`);
  tt.ok(cidrOverlap(`${att.ip}/32`, subnet), 'address is in the subnet');
  tt.match(inNs(a.pid, ['ip', '-o', 'addr', 'show', 'eth0']), `inet ${att.ip}/24`, 'eth0 inside has the address');
  tt.match(inNs(a.pid, ['ip', '-o', 'link', 'show', 'lo']), /UP/, 'lo is up');
  tt.ok(linkExists(bridge), 'bridge created');
  execFileSync('busybox', ['ping', '-c1', '-W1', att.ip!]);
  tt.pass('host pings the container over the bridge');

  const attB = await store.connect('berth', cb);
  tt.not(attB.ip, att.ip, 'distinct addresses');
  inNs(a.pid, ['busybox', 'ping', '-c1', '-W1', attB.ip!]);
  tt.pass('container a reaches container b');

  await store.check('berth', ca);
  tt.pass('CHECK with the stored result passes');
  tt.same(store.attachedContainers('berth').sort(), [ca.containerId, cb.containerId].sort());

  await store.disconnect('berth', ca);
  tt.equal(vethsOn(bridge).length, 1, 'a\'s veth removed, b\'s remains');
  await store.disconnect('berth', ca);
  tt.pass('second DEL is fine');
  removeNetns(nsFile);
  await store.disconnect('berth', ca);
  tt.pass('DEL after the netns file is gone is fine');

  b.proc.kill('SIGKILL');
  await new Promise((r) => b.proc.once('exit', r));
  await store.disconnect('berth', cb);
  tt.pass('DEL after the process is gone is fine');
  tt.same(vethsOn(bridge), [], 'no veth of ours remains');
  tt.same(store.attachedContainers('berth'), []);
  tt.notOk(existsSync(nsFile), 'netns file removed');
});

t.test('user networks: create, refuse duplicates and overlaps, remove deletes the bridge', async (tt) => {
  const { store, subnet } = setup(tt);
  const sub = freeSubnet();
  const name = `berthnet-${randomBytes(3).toString('hex')}`;
  const net = store.create({ name, subnet: sub });
  tt.match(net.bridge, /^berth-[0-9a-f]{8}$/);
  tt.equal(net.gateway, sub.replace(/0\/24$/, '1'));
  tt.throws(() => store.create({ name, subnet: freeSubnet() }), /already exists/);
  tt.throws(() => store.create({ name: `${name}x`, subnet: sub }), /overlaps network/);
  tt.throws(() => store.create({ name: `${name}y`, subnet: subnet.replace(/\/24$/, '/25') }), /overlaps network "berth"/);
  tt.throws(() => store.create({ name: 'bad name', subnet: freeSubnet() }), /network names/);
  tt.throws(() => store.create({ name: `${name}z`, subnet: '10.1.2.3/24' }), /host bits set/);
  tt.throws(() => store.create({ name: 'host' }), /reserved/);
  const auto = store.create({ name: `${name}-auto` });
  tt.match(auto.subnet, /\/24$/, 'a pool subnet was picked');
  tt.same(store.list().map((n) => n.name).sort(), ['berth', name, `${name}-auto`].sort());

  const s = sandbox(tt);
  await waitNetnsDiffers(s.pid);
  const c = { containerId: `berth-u-${randomBytes(3).toString('hex')}`, netns: `/proc/${s.pid}/ns/net` };
  tt.teardown(() => store.disconnect(name, c).catch(() => {}));
  const att = await store.connect(name, c);
  tt.ok(cidrOverlap(`${att.ip}/32`, sub), 'address from the user subnet');
  tt.ok(linkExists(net.bridge), 'user bridge exists');
  tt.throws(() => store.remove(name), /has containers attached/);
  await store.disconnect(name, c);
  store.remove(name);
  tt.notOk(linkExists(net.bridge), 'bridge removed with the network');
  tt.throws(() => store.get(name), /not found/);
  tt.throws(() => store.remove('berth'), /default network/);
});

t.test('portmap publishes a container port on 127.0.0.1', async (tt) => {
  const { store, root } = setup(tt);
  const s = sandbox(tt);
  await waitNetnsDiffers(s.pid);
  const www = join(root, 'www');
  mkdirSync(www);
  writeFileSync(join(www, 'index.html'), 'hello from berth\n');
  const port = randomInt(20000, 40000);
  const ports = [parsePortSpec(`127.0.0.1:${port}:8080/tcp`)];
  const c = { containerId: `berth-p-${randomBytes(3).toString('hex')}`, netns: `/proc/${s.pid}/ns/net`, ports };
  tt.teardown(() => store.disconnect('berth', c).catch(() => {}));
  const att = await store.connect('berth', c);
  const httpd = spawn('nsenter', ['-t', String(s.pid), '-n', 'busybox', 'httpd', '-f', '-p', '8080', '-h', www], { stdio: 'ignore' });
  tt.teardown(() => { httpd.kill('SIGKILL'); });
  let body = '';
  for (let i = 0; i < 50 && !body; i++) {
    try { body = await (await fetch(`http://${att.ip}:8080/`)).text(); } catch { await new Promise((r) => setTimeout(r, 50)); }
  }
  tt.equal(body, 'hello from berth\n', 'served directly over the bridge');
  let viaPort = '';
  try { viaPort = await (await fetch(`http://127.0.0.1:${port}/`)).text(); } catch (e) { tt.comment(`127.0.0.1:${port}: ${(e as Error).message}`); }
  tt.equal(viaPort, 'hello from berth\n', 'served through the published port on 127.0.0.1');
  await store.disconnect('berth', c);
  const rules = execFileSync('iptables-save', { encoding: 'utf8' });
  tt.notMatch(rules, c.containerId, 'portmap rules removed on DEL');
});

t.test('parsePortSpec and CNI errors', async (tt) => {
  tt.same(parsePortSpec('8080:80'), { hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  tt.same(parsePortSpec('127.0.0.1:53:53/udp'), { hostIP: '127.0.0.1', hostPort: 53, containerPort: 53, protocol: 'udp' });
  tt.throws(() => parsePortSpec('70000:80'), /not in 1..65535/);
  tt.throws(() => parsePortSpec('abc'), /want \[ip:\]hostPort/);
  const br = `berthx${randomBytes(3).toString('hex')}`;
  tt.teardown(() => { deleteBridge(br); });
  const err = await execPlugin({ cniVersion: '1.0.0', name: 'berth-bad', type: 'bridge', bridge: br }, 'ADD',
    { containerId: 'berth-bad', netns: '/nonexistent/berth-netns', ifname: 'eth0' }).then(() => null, (e: unknown) => e);
  tt.type(err, CniError);
  tt.match((err as Error).message, /CNI bridge ADD failed/);
  const missing = await execPlugin({ cniVersion: '1.0.0', name: 'x', type: 'berth-no-such-plugin' }, 'ADD', { containerId: 'x', netns: '/x', ifname: 'eth0' }).then(() => null, (e: unknown) => e);
  tt.match((missing as Error).message, /not found/);
});

t.test('hosts and resolv.conf', async (tt) => {
  const d = mkdtempSync(join(tmpdir(), 'berth-etc-'));
  tt.teardown(() => rmSync(d, { recursive: true, force: true }));
  writeHostsFile(join(d, 'hosts'), [{ ip: '10.203.0.5', names: ['web', 'web.berth'] }, { ip: '10.203.0.6', names: ['db'] }]);
  const hosts = readFileSync(join(d, 'hosts'), 'utf8');
  tt.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
  tt.match(hosts, /^10\.203\.0\.5\tweb web\.berth$/m);
  writeFileSync(join(d, 'host-resolv'), '# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n');
  const ns = writeResolvConf(join(d, 'resolv.conf'), join(d, 'host-resolv'));
  tt.same(ns, ['192.0.2.1']);
  tt.equal(readFileSync(join(d, 'resolv.conf'), 'utf8'), 'nameserver 192.0.2.1\nsearch example.org\noptions edns0\n');
  writeFileSync(join(d, 'host-resolv2'), 'nameserver 127.0.0.53\n');
  tt.same(writeResolvConf(join(d, 'r2'), join(d, 'host-resolv2')), ['8.8.8.8', '8.8.4.4'], 'loopback-only host falls back');
});

/**
 * The exec protocol with stand-in plugins (shell scripts in a temp CNI_PATH): the environment and
 * stdin a plugin gets, its result, a CNI error on stdout, a plain failure on stderr, a timeout.
 */
t.test('plugin exec protocol: env, stdin, result, CNI error, stderr, timeout', async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cni-fake-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plugins: Record<string, string> = {
    'berth-echo': '#!/bin/sh\nin=$(cat)\nprintf \'{"cniVersion":"1.0.0","env":"%s|%s|%s|%s|%s","len":%s}\' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_NETNS" "$CNI_ARGS" "${#in}"\n',
    'berth-cnierr': '#!/bin/sh\ncat >/dev/null\necho \'{"cniVersion":"1.0.0","code":11,"msg":"no address left","details":"pool 10.0.0.0/30"}\'\nexit 1\n',
    'berth-stderr': '#!/bin/sh\ncat >/dev/null\necho "something broke" >&2\nexit 3\n',
    'berth-slow': '#!/bin/sh\nsleep 30\n',
  };
  for (const [name, text] of Object.entries(plugins)) writeFileSync(join(dir, name), text, { mode: 0o755 });
  const rt = { containerId: 'berth-proto', netns: '/proc/self/ns/net', ifname: 'eth7', args: { K8S_POD_NAME: 'p', IgnoreUnknown: '1' } };
  const run = (type: string, timeoutMs?: number) => execPlugin({ cniVersion: '1.0.0', name: 'berth-proto', type }, 'ADD', rt, { pluginPath: dir, ...(timeoutMs ? { timeoutMs } : {}) });
  const ok = await run('berth-echo') as unknown as { env: string; len: number };
  tt.equal(ok.env, 'ADD|berth-proto|eth7|/proc/self/ns/net|K8S_POD_NAME=p;IgnoreUnknown=1', 'CNI_* environment');
  tt.ok(ok.len > 20, 'the network config on stdin');
  const cniErr = await run('berth-cnierr').then(() => null, (e: unknown) => e);
  tt.type(cniErr, CniError);
  tt.match((cniErr as Error).message, /no address left/, 'a CNI error result is the error');
  const plain = await run('berth-stderr').then(() => null, (e: unknown) => e);
  tt.type(plain, CniError);
  tt.match((plain as Error).message, /something broke/, 'else its stderr');
  const t0 = Date.now();
  const slow = await run('berth-slow', 300).then(() => null, (e: unknown) => e);
  tt.match((slow as Error).message, /timed out after 300 ms/, 'a plugin past its timeout is killed');
  tt.ok(Date.now() - t0 < 5000, 'promptly');
});
