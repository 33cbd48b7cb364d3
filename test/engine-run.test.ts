/**
 * `berth run` and the container lifecycle, end to end as a user would drive it: the berth CLI
 * (from source) against images pushed to the real docker-registry, containers run by
 * berth-monitor + berth-oci (needs `npm run build` for dist/ and `make -C native`), networking
 * through the real CNI plugins. Own --root/--state, cgroup parent, bridge and subnet; at the end
 * nothing may be left: mounts, cgroups, veths, monitors, netns files.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRegistry, freePort, type TestRegistry } from './fixtures/registry.js';
import { baseImage, configImage, pushTestImage } from './fixtures/images.js';

t.setTimeout(600000);

const rand = randomBytes(3).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'berth-eng-'));
const root = join(dir, 'root');
const state = join(dir, 's');
const cgParent = `berth-engtest-${rand}`;
const bridge = `bbr${rand}`;
const subnetByte = 100 + (parseInt(rand.slice(0, 2), 16) % 100);
const env = {
  ...process.env,
  BERTH_CGROUP_PARENT: cgParent,
  BERTH_DEFAULT_BRIDGE: bridge,
  BERTH_DEFAULT_SUBNET: `10.231.${subnetByte}.0/24`,
};
const userNet = `berthnet${rand}`;
const userBridge = `bun${rand}`;
const userSubnet = `10.232.${subnetByte}.0/24`;

let reg: TestRegistry;
let BUSYBOX = '';
let CFG = '';

interface Res { code: number; stdout: string; stderr: string }

function berth(args: string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/berth-main.ts', '--root', root, '--state', state, ...args], {
      env, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`berth ${args.join(' ')} timed out; stderr: ${stderr}`)); }, o.timeoutMs ?? 120000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    if (o.input !== undefined) child.stdin.end(o.input); else child.stdin.end();
  });
}

async function ok(args: string[], o: { input?: string } = {}): Promise<string> {
  const r = await berth(args, o);
  if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function inspect(name: string): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return JSON.parse(await ok(['inspect', name]))[0];
}

function mountsUnder(p: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(p));
}

function cgroupLeft(): string[] {
  const out: string[] = [];
  for (const c of readdirSync('/sys/fs/cgroup')) {
    const p = join('/sys/fs/cgroup', c, cgParent);
    if (!existsSync(p)) continue;
    for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) out.push(join(p, e.name));
  }
  return out;
}

function removeCgroupParent(): void {
  for (const c of readdirSync('/sys/fs/cgroup')) {
    const p = join('/sys/fs/cgroup', c, cgParent);
    try { rmdirSync(p); } catch { /* absent or busy (reported) */ }
  }
}

function monitorsOfThisTest(): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cmd.includes('berth-monitor') && cmd.includes(state)) out.push(Number(p));
    } catch { /* gone */ }
  }
  return out;
}

function linkExists(name: string): boolean { return existsSync(`/sys/class/net/${name}`); }

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

t.before(async () => {
  reg = await startRegistry();
  BUSYBOX = (await pushTestImage(reg.host, 'berth/busybox', 'latest', await baseImage())).ref;
  CFG = (await pushTestImage(reg.host, 'berth/config', 'latest', await configImage())).ref;
  await ok(['pull', BUSYBOX]);
  await ok(['pull', CFG]);
});

t.teardown(async () => {
  try {
    const ids = (await berth(['ps', '-a', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await berth(['rm', '-f', ...ids]);
    await berth(['network', 'rm', userNet]);
    for (const b of [bridge, userBridge]) { try { execFileSync('ip', ['link', 'del', b], { stdio: 'ignore' }); } catch { /* gone */ } }
  } finally {
    for (const pid of monitorsOfThisTest()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const m of mountsUnder(dir).reverse()) { try { execFileSync('umount', ['-l', m]); } catch { /* gone */ } }
    removeCgroupParent();
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('run --rm prints the output, pid 1 is the command, exit code returned', async (t) => {
  const r = await berth(['run', '--rm', BUSYBOX, 'echo', 'hi']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'hi\n');
  const ps = await ok(['run', '--rm', BUSYBOX, 'ps', 'aux']);
  const lines = ps.trim().split('\n');
  t.match(lines[1], /^\s*1\s+root\s+ps aux$/, 'PID 1 is the command');
  t.equal(lines.length, 2, 'nothing else runs in the container');
  const e = await berth(['run', '--rm', BUSYBOX, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  t.equal(e.code, 3);
  t.equal(e.stdout, 'out\n');
  t.equal(e.stderr, 'err\n');
  const stdin = await berth(['run', '--rm', '-i', BUSYBOX, 'cat'], { input: 'piped\n' });
  t.equal(stdin.stdout, 'piped\n', '-i relays stdin');
  t.equal((await ok(['ps', '-a', '-q'])).trim(), '', '--rm removed them');
});

t.test('Entrypoint/Cmd matrix (Docker docs), Env, WorkingDir, User', async (t) => {
  // image: Entrypoint ["/bin/sh","-c"], Cmd ['echo "$FOO from $(pwd) as $(id -un)"'], User app, WorkingDir /home/app
  t.equal(await ok(['run', '--rm', CFG]), 'bar from /home/app as app\n', 'Entrypoint + Cmd, Env, WorkingDir, User from the image');
  t.equal(await ok(['run', '--rm', CFG, 'echo override']), 'override\n', 'args replace Cmd, Entrypoint kept');
  t.equal(await ok(['run', '--rm', '--entrypoint', 'echo', CFG]), '\n', '--entrypoint resets Cmd');
  t.equal(await ok(['run', '--rm', '--entrypoint', 'echo', CFG, 'a', 'b']), 'a b\n', '--entrypoint with args');
  t.equal(await ok(['run', '--rm', '--entrypoint', '', CFG, 'echo', 'no ep']), 'no ep\n', "--entrypoint '' clears it");
  t.equal(await ok(['run', '--rm', '-e', 'FOO=baz', '-w', '/tmp/new/dir', '-u', 'root', CFG]), 'baz from /tmp/new/dir as root\n', '-e, -w (created), -u override');
  t.equal(await ok(['run', '--rm', '-u', 'app', BUSYBOX, 'id']), 'uid=1000(app) gid=1000(app) groups=10(wheel)\n', '-u app from /etc/passwd with supplementary groups from /etc/group');
  t.equal(await ok(['run', '--rm', '-u', '1000:wheel', BUSYBOX, 'id']), 'uid=1000(app) gid=10(wheel)\n', '-u uid:group (no supplementary groups with an explicit group, as runc)');
  t.equal(await ok(['run', '--rm', '-u', '4242', BUSYBOX, 'id', '-u']), '4242\n', 'numeric uid not in passwd');
  const envFile = join(dir, 'env.list');
  writeFileSync(envFile, '# comment\nA=1\nB=two words\n');
  t.equal(await ok(['run', '--rm', '--env-file', envFile, '-e', 'A=3', BUSYBOX, 'sh', '-c', 'echo "$A|$B"']), '3|two words\n', '--env-file, then -e overrides');
  const bad = await berth(['run', '--rm', '-u', 'nobodyhere', BUSYBOX, 'true']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /^berth: .*unable to find user nobodyhere/);
});

t.test('-it through a pty', async (t) => {
  const cli = `node --import tsx runtime/cli/berth-main.ts --root ${root} --state ${state} run -it --rm ${BUSYBOX} sh -c 'tty; echo $TERM; stty size'`;
  const out = execFileSync('script', ['-qec', cli, '/dev/null'], { env, encoding: 'utf8', timeout: 60000 });
  t.match(out, /\/dev\/pts\/\d+/, 'stdin is a terminal');
  t.match(out, /xterm/, 'TERM=xterm');
});

t.test('-d, logs -f, exec, stop: TERM, then KILL after the timeout', async (t) => {
  const id = (await ok(['run', '-d', '--name', 'ticker', BUSYBOX, 'sh', '-c', 'trap "echo got-term; exit 7" TERM; echo started; while true; do sleep 0.1; done'])).trim();
  t.match(id, /^[0-9a-f]{64}$/);
  const ps = await ok(['ps']);
  t.match(ps, /ticker/);
  const ex = await berth(['exec', 'ticker', 'sh', '-c', 'echo in-exec; echo err >&2; exit 5']);
  t.equal(ex.code, 5);
  t.equal(ex.stdout, 'in-exec\n');
  t.equal(ex.stderr, 'err\n');
  t.equal(await ok(['exec', '-u', 'app', '-w', '/tmp', id.slice(0, 10), 'sh', '-c', 'id -un; pwd']), 'app\n/tmp\n', 'exec -u -w by id prefix');
  const follow = berth(['logs', '-f', 'ticker']);
  await new Promise((r) => setTimeout(r, 500));
  const t0 = Date.now();
  await ok(['stop', 'ticker']);
  t.ok(Date.now() - t0 < 5000, 'a TERM handler stops it quickly');
  const logs = await follow;
  t.equal(logs.stdout, 'started\ngot-term\n', 'logs -f printed everything and ended with the container');
  const st = await inspect('ticker');
  t.equal(st.State.Status, 'exited');
  t.equal(st.State.ExitCode, 7);
  t.match(await ok(['ps', '-a']), /Exited \(7\)/);

  await ok(['run', '-d', '--name', 'stubborn', BUSYBOX, 'sleep', '1000']);
  const t1 = Date.now();
  await ok(['stop', '-t', '1', 'stubborn']);
  const took = Date.now() - t1;
  t.ok(took >= 1000 && took < 8000, `pid 1 ignoring TERM is killed after -t 1 (${took} ms)`);
  t.equal((await inspect('stubborn')).State.ExitCode, 137);
  t.equal(mountsUnder(join(root, 'containers')).length, 0, 'stopped containers hold no mounts');
  await ok(['start', 'stubborn']);
  t.equal((await inspect('stubborn')).State.Running, true, 'start again');
  const top = await ok(['top', 'stubborn']);
  t.match(top, /sleep 1000/);
  await ok(['rm', '-f', 'stubborn', 'ticker']);
  await ok(['run', '-d', '--name', 'withinit', '--init', BUSYBOX, 'sleep', '1000']);
  t.match(await ok(['exec', 'withinit', 'ps']), /^\s*1 root\s+\/dev\/init -- sleep 1000$/m, '--init runs as pid 1');
  const t2 = Date.now();
  await ok(['stop', 'withinit']);
  t.ok(Date.now() - t2 < 5000, '--init forwards TERM: no grace period wasted');
  t.equal((await inspect('withinit')).State.ExitCode, 143);
  await ok(['rm', 'withinit']);
});

t.test('user network: containers reach each other by name; -p publishes to the host', async (t) => {
  await ok(['network', 'create', '--subnet', userSubnet, '--bridge', userBridge, userNet]);
  await ok(['run', '-d', '--name', 'web', '--network', userNet, BUSYBOX, 'sh', '-c', 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www']);
  const r = await berth(['run', '--rm', '--network', userNet, BUSYBOX, 'sh', '-c', 'ping -c1 -W2 web >/dev/null && wget -qO- http://web/']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'hello-from-web\n');
  const busy = await berth(['network', 'rm', userNet]);
  t.not(busy.code, 0, 'a network in use is not removed');
  await ok(['rm', '-f', 'web']);
  await ok(['network', 'rm', userNet]);

  const port = await freePort();
  await ok(['run', '-d', '--name', 'pub', '-p', `127.0.0.1:${port}:80`, BUSYBOX, 'sh', '-c', 'mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www']);
  let res: { status: number; body: string } | null = null;
  for (let i = 0; i < 50 && !res; i++) {
    try { res = await httpGet(`http://127.0.0.1:${port}/`); } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  t.equal(res?.status, 200);
  t.equal(res?.body, 'published\n', 'busybox httpd reachable from the host through -p');
  const again = await berth(['run', '-d', '-p', `127.0.0.1:${port}:80`, BUSYBOX, 'true']);
  t.not(again.code, 0);
  t.match(again.stderr, /^berth: .*already (published|in use)/);
  await ok(['rm', '-f', 'pub']);
  const none = await ok(['run', '--rm', '--network', 'none', BUSYBOX, 'sh', '-c', 'ls /sys/class/net']);
  t.equal(none.trim(), 'lo', '--network none has only lo');
});

t.test('bind and named volumes persist across containers', async (t) => {
  const host = join(dir, 'bind');
  mkdirSync(host);
  await ok(['run', '--rm', '-v', `${host}:/data`, BUSYBOX, 'sh', '-c', 'echo from-container > /data/f']);
  t.equal(readFileSync(join(host, 'f'), 'utf8'), 'from-container\n');
  const ro = await berth(['run', '--rm', '-v', `${host}:/data:ro`, BUSYBOX, 'sh', '-c', 'echo x > /data/g']);
  t.not(ro.code, 0, ':ro is read-only');
  await ok(['run', '--rm', '-v', 'vol1:/etc', BUSYBOX, 'sh', '-c', 'echo kept > /etc/mine']);
  t.equal(await ok(['run', '--rm', '-v', 'vol1:/x', BUSYBOX, 'sh', '-c', 'cat /x/mine; test -f /x/passwd && echo initialised']), 'kept\ninitialised\n', 'named volume persisted and was initialised from the image');
  t.match(await ok(['volume', 'ls']), /vol1/);
  const vi = JSON.parse(await ok(['volume', 'inspect', 'vol1']));
  t.equal(vi[0].Mountpoint, join(root, 'volumes', 'vol1', '_data'));
  await ok(['volume', 'rm', 'vol1']);
  t.equal((await ok(['volume', 'ls', '-q'])).trim(), '');
});

t.test('--memory OOM shown in inspect; --restart on-failure:2', async (t) => {
  const r = await berth(['run', '--name', 'oom', '--memory', '16m', '--memory-swap', '16m', BUSYBOX, 'sh', '-c', 'tail /dev/zero']);
  t.equal(r.code, 137);
  const st = await inspect('oom');
  t.equal(st.State.OOMKilled, true, 'OOMKilled');
  t.equal(st.HostConfig.Memory, 16 * 1024 * 1024);
  await ok(['rm', 'oom']);

  await ok(['run', '-d', '--name', 'flaky', '--restart', 'on-failure:2', BUSYBOX, 'sh', '-c', 'echo run; exit 3']);
  t.equal((await ok(['wait', 'flaky'])).trim(), '3');
  const f = await inspect('flaky');
  t.equal(f.RestartCount, 2, 'restarted twice');
  t.equal(f.State.ExitCode, 3);
  t.equal(await ok(['logs', 'flaky']), 'run\nrun\nrun\n');
  await ok(['rm', 'flaky']);
});

t.test('bad input: one-line errors, nothing left behind', async (t) => {
  await ok(['run', '-d', '--name', 'taken', BUSYBOX, 'sleep', '100']);
  const before = (await ok(['ps', '-a', '-q'])).trim();
  const cases: [string[], RegExp][] = [
    [['run', '--rm', `${reg.host}/berth/nope:latest`, 'true'], /unable to find image/],
    [['run', '--rm', '--memory', '12XB', BUSYBOX, 'true'], /--memory: invalid size "12XB"/],
    [['run', '--rm', '--name', 'taken', BUSYBOX, 'true'], /name "taken" is already in use/],
    [['run', '--rm', '-v', '/nonexistent-berth-src:/x', BUSYBOX, 'true'], /bind source path "\/nonexistent-berth-src" does not exist/],
    [['run', '--rm', '--network', 'nosuchnet', BUSYBOX, 'true'], /network "nosuchnet" not found/],
    [['run', '--rm', '--ulimit', 'nofile=999999:999999', BUSYBOX, 'true'], /above this host's hard limit/],
    [['run', '--rm', BUSYBOX, '/no/such/binary'], /./],
  ];
  const srv = createServer();
  const port = await freePort();
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
  cases.push([['run', '--rm', '-p', `127.0.0.1:${port}:80`, BUSYBOX, 'true'], /port is already in use/]);
  try {
    for (const [args, re] of cases) {
      const r = await berth(args);
      t.not(r.code, 0, `${args.join(' ')} fails`);
      t.match(r.stderr, re, args.join(' '));
      t.match(r.stderr, /^berth: [^\n]+\n$/, 'one line');
    }
  } finally { srv.close(); }
  t.equal((await ok(['ps', '-a', '-q'])).trim(), before, 'no container left behind');
  t.equal(mountsUnder(join(root, 'containers')).length, 1, 'only the running container has a mount');
  await ok(['rm', '-f', 'taken']);
});

t.test('ps -a across invocations; kill -9 of a monitor is reconciled', async (t) => {
  await ok(['run', '-d', '--name', 'victim', BUSYBOX, 'sleep', '1000']);
  await ok(['create', '--name', 'fresh', BUSYBOX, 'true']);
  const psA = await ok(['ps', '-a']);
  t.match(psA, /victim/);
  t.match(psA, /fresh\s*$/m);
  t.match(psA, /Created/);
  const st = await inspect('victim');
  const rec = JSON.parse(readFileSync(join(root, 'containers', st.Id, 'container.json'), 'utf8')) as { monitorPid: number; pid: number };
  process.kill(rec.monitorPid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  const after = await ok(['ps', '-a']);
  t.match(after, /victim[\s\S]*|Exited/);
  const st2 = await inspect('victim');
  t.equal(st2.State.Status, 'exited', 'shown as exited');
  t.equal(mountsUnder(join(root, 'containers', st.Id)).length, 0, 'its rootfs is unmounted');
  t.notOk(existsSync(`/proc/${rec.pid}/stat`) && !readFileSync(`/proc/${rec.pid}/stat`, 'utf8').includes(') Z'), 'its process is gone');
  await ok(['rm', 'victim', 'fresh']);
});

t.test('commit a container as an image, run it; export its filesystem', async (t) => {
  await ok(['run', '--name', 'tocommit', '--network', 'none', BUSYBOX, 'sh', '-c', 'echo committed > /greeting; rm /etc/group']);
  const id = (await ok(['commit', '-m', 'test', '-c', 'CMD ["cat", "/greeting"]', 'tocommit', `committed-${rand}:v1`])).trim();
  t.match(id, /^sha256:[0-9a-f]{64}$/);
  t.equal(await ok(['run', '--rm', '--network', 'none', `committed-${rand}:v1`]), 'committed\n', 'the change and the new CMD are in the image');
  t.equal((await berth(['run', '--rm', '--network', 'none', `committed-${rand}:v1`, 'ls', '/etc/group'])).code, 1, 'the deletion is too');
  const tarFile = join(dir, 'export.tar');
  await ok(['export', '-o', tarFile, 'tocommit']);
  const listing = execFileSync('tar', ['-tf', tarFile], { encoding: 'utf8' }).split('\n');
  t.ok(listing.includes('greeting') && listing.includes('bin/busybox'), 'export holds the image and the change');
  t.notOk(listing.includes('etc/group'), 'and not what was deleted');
  await ok(['rm', 'tocommit']);
  await ok(['rmi', `committed-${rand}:v1`]);
});

t.test('nothing left behind', async (t) => {
  t.equal((await ok(['ps', '-a', '-q'])).trim(), '');
  t.same(mountsUnder(dir), [], 'no mounts under the test root');
  t.same(cgroupLeft(), [], 'no cgroups under the test parent');
  t.same(monitorsOfThisTest(), [], 'no monitors');
  const ns = join(state, 'netns');
  t.same(existsSync(ns) ? readdirSync(ns) : [], [], 'no netns files');
  const veths = execFileSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).trim();
  t.equal(veths, '', 'no veths on the bridge');
  t.notOk(linkExists(userBridge), 'user network bridge removed');
});
