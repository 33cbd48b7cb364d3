/**
 * native/spawn.c + runtime/linux/spawn.ts for real, as root: namespaces, mounts, pivot_root,
 * /dev, masked/readonly paths, rlimits, users, capabilities, seccomp, exec fifo, terminal,
 * joining namespaces, user namespaces, symlink escapes, and that nothing leaks.
 */
import t from 'tap';
import net from 'node:net';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync, constants as fsc } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBundleDir } from './fixtures/rootfs.js';
import { SpawnError, ConfigError } from '../runtime/errors.js';
import { MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_STRICTATIME, S_IFIFO, closeFd, mknod, pidfdSendSignal } from '../runtime/linux/libc.js';
import { recvFd, sendFd, socketpair, unixConnectSendFd } from '../runtime/linux/native.js';
import { childReaper, encodeSpawnConfig, spawnAndWaitExec, spawnInit, writeIdMaps, type ExitStatus, type SpawnHooks } from '../runtime/linux/spawn.js';
import type { SpawnConfig, SpawnDevice } from '../runtime/linux/spawn-types.js';

t.setTimeout(120_000);

const DEVICES: SpawnDevice[] = [
  ['null', 1, 3], ['zero', 1, 5], ['full', 1, 7], ['tty', 5, 0], ['random', 1, 8], ['urandom', 1, 9],
].map(([n, ma, mi]) => ({ path: `/dev/${n}`, type: 'c', major: ma as number, minor: mi as number, mode: 0o666, uid: 0, gid: 0 }));

// Docker's default capability set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DOCKER_CAPS = 0xa80425fbn;

function baseConfig(rootfs: string, args: string[]): SpawnConfig {
  return {
    namespaces: (['pid', 'network', 'mount', 'ipc', 'uts'] as const).map((kind) => ({ kind })),
    rootfs, rootfsReadonly: false, rootfsPropagation: 0, noPivot: false,
    mounts: [
      { source: 'proc', destination: '/proc', fstype: 'proc', flags: MS_NOSUID | MS_NOEXEC | MS_NODEV, propagation: [], data: '' },
      { source: 'tmpfs', destination: '/dev', fstype: 'tmpfs', flags: MS_NOSUID | MS_STRICTATIME, propagation: [], data: 'mode=755,size=65536k' },
      { source: 'devpts', destination: '/dev/pts', fstype: 'devpts', flags: MS_NOSUID | MS_NOEXEC, propagation: [], data: 'newinstance,ptmxmode=0666,mode=0620' },
      { source: 'sysfs', destination: '/sys', fstype: 'sysfs', flags: MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, propagation: [], data: '' },
      { source: 'tmpfs', destination: '/run', fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV, propagation: [], data: 'mode=755' },
    ],
    setupDev: true, devices: DEVICES, maskedPaths: [], readonlyPaths: [],
    hostname: 'berth-test', domainname: '', sysctls: [], rlimits: [], oomScoreAdj: null, capabilities: null,
    noNewPrivileges: false, seccomp: null, uid: 0, gid: 0, additionalGids: [], umask: 0o022, cwd: '/',
    args, env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root'], terminal: false, stdio: [-1, -1, -1], extraFds: [],
    execFifo: '', cloneParent: false, parentDeathSignal: 9, hookPause: false,
  };
}

function readAllSocket(fd: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = new net.Socket({ fd, readable: true, writable: false });
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => { s.destroy(); resolve(Buffer.concat(chunks).toString('utf8')); });
    s.on('error', reject);
  });
}

/** Run cfg with stdout+stderr captured through a socket; resolves with the output and exit status. */
async function run(cfg: SpawnConfig, hooks?: SpawnHooks): Promise<{ out: string; status: ExitStatus; pid: number }> {
  const [r, w] = socketpair();
  const devnull = openSync('/dev/null', 'r');
  cfg.stdio = [devnull, w, w];
  let res;
  try {
    res = await spawnAndWaitExec(cfg, hooks);
  } catch (e) {
    closeFd(r);
    throw e;
  } finally {
    closeSync(w);
    closeSync(devnull);
  }
  const out = await readAllSocket(r);
  const status = await childReaper.wait(res.pid);
  closeFd(res.pidfd);
  return { out, status, pid: res.pid };
}

function mountinfoMentions(s: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(s));
}

function bundle(tt: { teardown: (fn: () => void) => void }): { dir: string; rootfs: string } {
  const b = makeBundleDir('berth-spawn-');
  tt.teardown(() => {
    const left = mountinfoMentions(b.dir);
    b.cleanup();
    if (left.length) throw new Error(`mounts leaked under ${b.dir}: ${left.join('; ')}`);
  });
  return b;
}

t.test('encodeSpawnConfig rejects bad input with the field named', async (tt) => {
  const cfg = baseConfig('/x', ['/bin/true']);
  tt.ok(encodeSpawnConfig(cfg).length % 4 === 0, 'encoding is 4-byte aligned');
  tt.throws(() => encodeSpawnConfig({ ...cfg, args: [] }), ConfigError);
  tt.throws(() => encodeSpawnConfig({ ...cfg, args: ['a\0b'] }), /args\[0\]: must not contain a NUL/);
  tt.throws(() => encodeSpawnConfig({ ...cfg, rlimits: [{ resource: 7, soft: 10n, hard: 5n }] }), /rlimits\[0\]/);
  tt.throws(() => encodeSpawnConfig({ ...cfg, mounts: [{ ...cfg.mounts[0], destination: 'rel' }] }), /mounts\[0\]\.destination/);
  tt.throws(() => spawnInit({ ...cfg, namespaces: [] }), /need a mount namespace/, 'refuses to touch host mounts');
  tt.throws(() => spawnInit({ ...cfg, rootfs: '', mounts: [], setupDev: false, devices: [], namespaces: [] }), /hostname.*UTS namespace/);
});

t.test('strings of every length and non-ASCII text reach the init intact (NUL-terminated, 4-byte padding)', async (tt) => {
  const b = bundle(tt);
  // lengths 0-8 cover every padding case; the multi-byte ones have more bytes than characters
  const vals = ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'abcdef', 'abcdefg', 'héllo wörld ✓', '日本語のテキスト'];
  const cfg = baseConfig(b.rootfs, ['sh', '-c', vals.map((_, i) => `echo "v${i}=[$V${i}]"`).join('; ')]);
  cfg.env = [...cfg.env, ...vals.map((v, i) => `V${i}=${v}`)];
  const { out, status } = await run(cfg);
  tt.same(status, { code: 0, signal: null }, out);
  vals.forEach((v, i) => tt.match(out, new RegExp(`^v${i}=\\[${v}\\]$`, 'm'), `V${i} (${Buffer.byteLength(v)} bytes)`));
  tt.equal(encodeSpawnConfig(cfg).length % 4, 0, 'aligned');
});

t.test('an init whose creator goes away before GO exits by itself (it holds none of the creator\'s socket ends)', async (tt) => {
  const b = bundle(tt);
  for (const zygote of [false, true]) {
    const cfg = baseConfig(b.rootfs, ['/bin/true']);
    cfg.parentDeathSignal = 0; // only the sync socket can tell it: as when the creator dies before pdeathsig is armed
    const p = spawnInit(cfg, { zygote });
    const ends = [p['syncFd'], p['fdSock']].map((fd) => readlinkSync(`/proc/self/fd/${fd}`));
    const held = () => {
      const fds = readdirSync(`/proc/${p.pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${p.pid}/fd/${fd}`); } catch { return ''; } });
      return ends.filter((e) => fds.includes(e));
    };
    // the child closes them first thing, but may not have run yet: give it up to 5 s
    for (const deadline = Date.now() + 5000; held().length && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 10));
    tt.same(held(), [], `${zygote ? 'through the zygote' : 'direct'}: the child holds no copy of the creator's ends`);
    // the creator "dies": its ends close without GO
    closeFd(p['syncFd']);
    closeFd(p['fdSock']);
    closeFd(p.pidfd);
    const st = await Promise.race([childReaper.wait(p.pid), new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
    tt.ok(st, `${zygote ? 'through the zygote' : 'direct'}: the child exited (${JSON.stringify(st)})`);
    if (!st) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
});

t.test('pid 1, hostname, caps, masked and readonly paths, rlimits, devices', async (tt) => {
  const b = bundle(tt);
  writeFileSync(join(b.rootfs, 'secret.txt'), 'top secret\n');
  mkdirSync(join(b.rootfs, 'ro'));
  const script = [
    'echo pid=$$', 'echo host=$(hostname)', 'grep -E "^Cap(Eff|Prm|Bnd|Inh|Amb)" /proc/self/status',
    'echo secret=[$(cat /secret.txt)]', 'echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c)', 'echo firmware=$(ls /sys/firmware | wc -l)',
    'touch /ro/f 2>/dev/null && echo ro=writable || echo ro=readonly', 'echo nofile=$(ulimit -n)',
    'echo null=$(stat -c %t:%T /dev/null)', 'ls -l /dev/fd /dev/ptmx | sed "s/.*-> /link=/"', 'echo cwd=$(pwd)',
  ].join('; ');
  const cfg = baseConfig(b.rootfs, ['sh', '-c', script]);
  cfg.capabilities = { bounding: DOCKER_CAPS, effective: DOCKER_CAPS, permitted: DOCKER_CAPS, inheritable: 0n, ambient: 0n };
  cfg.maskedPaths = ['/secret.txt', '/proc/kcore', '/proc/acpi', '/sys/firmware', '/does/not/exist'];
  cfg.readonlyPaths = ['/ro', '/proc/sys', '/nope'];
  cfg.rlimits = [{ resource: 7, soft: 1024n, hard: 4096n }];
  const { out, status } = await run(cfg);
  tt.same(status, { code: 0, signal: null }, out);
  tt.match(out, /^pid=1$/m, 'pid 1 in a new pid namespace');
  tt.match(out, /^host=berth-test$/m);
  for (const set of ['CapEff', 'CapPrm', 'CapBnd']) tt.match(out, new RegExp(`^${set}:\\s+00000000a80425fb$`, 'm'), set);
  tt.match(out, /^CapInh:\s+0000000000000000$/m);
  tt.match(out, /^CapAmb:\s+0000000000000000$/m);
  tt.match(out, /^secret=\[\]$/m, 'masked file reads empty');
  tt.match(out, /^kcore=0$/m, '/proc/kcore masked (or absent on this kernel)');
  tt.match(out, /^firmware=0$/m, 'masked directory is an empty tmpfs');
  tt.match(out, /^ro=readonly$/m);
  tt.match(out, /^nofile=1024$/m);
  tt.match(out, /^null=1:3$/m, '/dev/null is the real device');
  tt.match(out, /^link=\/proc\/self\/fd$/m);
  tt.match(out, /^link=pts\/ptmx$/m);
  tt.match(out, /^cwd=\/$/m);
});

t.test('uid, gid and additional gids; ambient caps for a non-root user', async (tt) => {
  const b = bundle(tt);
  const cfg = baseConfig(b.rootfs, ['sh', '-c', 'id; grep -E "^Cap(Eff|Amb)" /proc/self/status; echo cg=$(grep -cv ":/$" /proc/self/cgroup)']);
  cfg.namespaces.push({ kind: 'cgroup' });
  cfg.uid = 1000; cfg.gid = 1000; cfg.additionalGids = [10, 65534];
  const NET_BIND = 1n << 10n;
  cfg.capabilities = { bounding: DOCKER_CAPS, effective: NET_BIND, permitted: NET_BIND, inheritable: NET_BIND, ambient: NET_BIND };
  const { out, status } = await run(cfg);
  tt.equal(status.code, 0, out);
  tt.match(out, /uid=1000\(app\) gid=1000\(app\)/);
  tt.match(out, /groups=.*10\(wheel\)/);
  tt.match(out, /65534\(nogroup\)/);
  tt.match(out, /^CapEff:\s+0000000000000400$/m);
  tt.match(out, /^CapAmb:\s+0000000000000400$/m);
  tt.match(out, /^cg=0$/m, 'new cgroup namespace: every hierarchy shows "/"');
});

t.test('failures come back as SpawnError with stage and errno, and nothing is left running', async (tt) => {
  const b = bundle(tt);
  const missing = baseConfig(b.rootfs, ['no-such-binary', 'x']);
  const e1 = await run(missing).catch((e: unknown) => e);
  tt.type(e1, SpawnError);
  tt.equal((e1 as SpawnError).stage, 'exec');
  tt.equal((e1 as SpawnError).errno, 2);
  tt.match((e1 as SpawnError).message, /no-such-binary/);

  const abs = await run(baseConfig(b.rootfs, ['/bin/nope'])).catch((e: unknown) => e);
  tt.match(abs, { stage: 'exec', errno: 2, message: /\/bin\/nope/ });

  const rl = baseConfig(b.rootfs, ['true']);
  rl.rlimits = [{ resource: 7, soft: 1024n, hard: 10_000_000n }];
  const e2 = await run(rl).catch((e: unknown) => e);
  tt.match(e2, { stage: 'rlimit', errno: 1, message: /RLIMIT_NOFILE/ });

  const badMount = baseConfig(b.rootfs, ['true']);
  badMount.mounts.push({ source: '/definitely/not/here', destination: '/mnt', fstype: 'bind', flags: MS_BIND, propagation: [], data: '' });
  const e3 = await run(badMount).catch((e: unknown) => e);
  tt.match(e3, { stage: 'mount', errno: 2, message: /\/definitely\/not\/here/ });

  const cwd = baseConfig(b.rootfs, ['true']);
  cwd.cwd = '/no/such/dir';
  tt.match(await run(cwd).catch((e: unknown) => e), { stage: 'cwd', errno: 2, message: /\/no\/such\/dir/ });

  tt.equal(childReaper.size, 0, 'every failed init was reaped');
});

t.test('mount destinations that are symlinks out of the rootfs stay inside it', async (tt) => {
  const b = bundle(tt);
  const hostDir = mkdtempSync(join(tmpdir(), 'berth-hostdir-'));
  tt.teardown(() => rmSync(hostDir, { recursive: true, force: true }));
  symlinkSync(hostDir, join(b.rootfs, 'evil'));            // absolute: resolves to rootfs/<hostDir>, which is absent
  symlinkSync('../../../../../tmp', join(b.rootfs, 'evil2')); // climbs: clamps at the rootfs → rootfs/tmp
  const before = readFileSync('/proc/self/mountinfo', 'utf8');

  const cfg = baseConfig(b.rootfs, ['true']);
  cfg.mounts.push({ source: 'tmpfs', destination: '/evil', fstype: 'tmpfs', flags: 0, propagation: [], data: '' });
  const e = await run(cfg).catch((err: unknown) => err);
  if (e instanceof SpawnError) tt.equal(e.stage, 'mount', `refused: ${e.message}`);
  else tt.pass('mounted inside the rootfs');
  tt.same(mountinfoMentions(hostDir), [], 'host dir is not a mount point');

  const cfg2 = baseConfig(b.rootfs, ['sh', '-c', 'grep -c " /tmp/inner " /proc/self/mountinfo']);
  cfg2.mounts.push({ source: 'tmpfs', destination: '/evil2/inner', fstype: 'tmpfs', flags: 0, propagation: [], data: '' });
  const { out, status } = await run(cfg2);
  tt.equal(status.code, 0, out);
  tt.equal(out.trim(), '1', 'the mount landed on /tmp/inner inside the container');
  tt.same(mountinfoMentions('/tmp/inner').filter((l) => !before.includes(l)), [], 'nothing new on the host');
  tt.same(mountinfoMentions(b.dir), []);
});

t.test('bind-mounting a file creates a file mount point; bind flags applied', async (tt) => {
  const b = bundle(tt);
  const src = join(b.dir, 'hello.txt');
  writeFileSync(src, 'hi from host\n');
  const cfg = baseConfig(b.rootfs, ['sh', '-c', 'cat /etc/hello.txt; echo x >> /etc/hello.txt 2>/dev/null && echo rw || echo ro']);
  cfg.mounts.push({ source: src, destination: '/etc/hello.txt', fstype: 'bind', flags: MS_BIND | MS_REC | MS_RDONLY, propagation: [1 << 18], data: '' });
  const { out, status } = await run(cfg);
  tt.equal(status.code, 0, out);
  tt.match(out, /^hi from host$/m);
  tt.match(out, /^ro$/m, 'MS_RDONLY applied to the bind by a remount');
  tt.equal(readFileSync(src, 'utf8'), 'hi from host\n');
});

t.test('user namespace with uid/gid maps written between spawn and go', async (tt) => {
  const b = bundle(tt);
  // The container's root is host uid 100000: like runc, the rootfs path must be reachable by it.
  chmodSync(b.dir, 0o755);
  const cfg = baseConfig(b.rootfs, ['sh', '-c', 'id; cat /proc/self/uid_map; cat /dev/null && echo devnull-ok']);
  cfg.namespaces.push({ kind: 'user' });
  cfg.mounts = cfg.mounts.filter((m) => m.fstype !== 'sysfs');
  const { out, status } = await run(cfg, {
    beforeGo: (init) => writeIdMaps(init.pid, [{ containerId: 0, hostId: 100000, size: 65536 }], [{ containerId: 0, hostId: 100000, size: 65536 }], true),
  });
  tt.equal(status.code, 0, out);
  tt.match(out, /uid=0\(root\) gid=0\(root\)/);
  tt.match(out, /^\s*0\s+100000\s+65536$/m);
  tt.match(out, /devnull-ok/, 'devices bind-mounted from the host in a user namespace');
});

t.test('joining another container\'s net, uts, ipc and pid namespaces by path', async (tt) => {
  const a = bundle(tt);
  const bb = bundle(tt);
  const first = baseConfig(a.rootfs, ['sleep', '60']);
  first.hostname = 'berth-first';
  const [r, w] = socketpair();
  closeFd(r);
  first.stdio = [-1, w, w];
  const A = await spawnAndWaitExec(first);
  closeSync(w);
  tt.teardown(async () => {
    pidfdSendSignal(A.pidfd, 9);
    await childReaper.wait(A.pid);
    closeFd(A.pidfd);
  });
  const second = baseConfig(bb.rootfs, ['sh', '-c', 'hostname; ps -o comm= 2>/dev/null || ps']);
  second.hostname = '';
  second.namespaces = [
    { kind: 'mount' },
    ...(['network', 'uts', 'ipc', 'pid'] as const).map((kind) => ({ kind, path: `/proc/${A.pid}/ns/${({ network: 'net', uts: 'uts', ipc: 'ipc', pid: 'pid' })[kind]}` })),
  ];
  second.mounts = second.mounts.filter((m) => m.fstype !== 'sysfs');
  const { out, status, pid } = await run(second);
  tt.equal(status.code, 0, out);
  tt.match(out, /^berth-first$/m, 'sees the first container\'s hostname');
  tt.match(out, /sleep/, 'sees the first container\'s processes');
  tt.ok(pid > 0, 'second init was a waitable child of ours');

  // exec-style: no rootfs, join every namespace of the running container (mount included), with a tty.
  const exec = baseConfig('', ['sh', '-c', 'echo pid=$$ host=$(hostname); ls /bin/busybox; tty']);
  exec.mounts = []; exec.setupDev = false; exec.devices = []; exec.hostname = '';
  exec.namespaces = (['mount', 'network', 'uts', 'ipc', 'pid'] as const).map((kind) => ({ kind, path: `/proc/${A.pid}/ns/${({ mount: 'mnt', network: 'net', uts: 'uts', ipc: 'ipc', pid: 'pid' })[kind]}` }));
  exec.terminal = true;
  const E = await spawnAndWaitExec(exec);
  tt.same(await childReaper.wait(E.pid), { code: 0, signal: null });
  let pty = '';
  const buf = Buffer.alloc(4096);
  for (;;) {
    let n = 0;
    try { n = readSync(E.ptyMaster, buf, 0, buf.length, null); } catch { break; }
    if (n <= 0) break;
    pty += buf.subarray(0, n).toString();
  }
  closeFd(E.ptyMaster);
  closeFd(E.pidfd);
  tt.match(pty, /pid=\d+ host=berth-first/, 'exec sees the container\'s hostname');
  tt.notMatch(pty, /pid=1 /, 'exec is not pid 1 in the joined pid namespace');
  tt.match(pty, /\/bin\/busybox/, 'exec sees the container\'s rootfs');
  tt.match(pty, /\/dev\/pts\/\d+/, 'pty from the container\'s devpts');
});

t.test('exec fifo: READY, then exec only after the fifo is opened for reading', async (tt) => {
  const b = bundle(tt);
  const fifo = join(b.dir, 'exec.fifo');
  mknod(fifo, S_IFIFO | 0o622);
  const [r, w] = socketpair();
  const cfg = baseConfig(b.rootfs, ['echo', 'started']);
  cfg.execFifo = fifo;
  cfg.stdio = [-1, w, w];
  const init = spawnInit(cfg);
  closeSync(w);
  init.go();
  const o = await init.awaitOutcome();
  tt.equal(o.kind, 'ready');
  await new Promise((res) => setTimeout(res, 50));
  tt.match(readlinkSync(`/proc/${init.pid}/exe`), /node/, 'not exec\'d while nobody opened the fifo');
  const fd = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
  const buf = Buffer.alloc(1);
  for (let i = 0; i < 1000; i++) {
    try { if (readSync(fd, buf, 0, 1, null) === 1) break; } catch { /* EAGAIN */ }
    await new Promise((res) => setTimeout(res, 2));
  }
  closeSync(fd);
  tt.equal(buf.toString(), '0');
  const o2 = await init.awaitOutcome();
  tt.equal(o2.kind, 'exec');
  tt.equal((await readAllSocket(r)).trim(), 'started');
  tt.same(await childReaper.wait(init.pid), { code: 0, signal: null });
  closeFd(init.pidfd);
});

t.test('terminal: the pty master comes back and carries the output', async (tt) => {
  const b = bundle(tt);
  const cfg = baseConfig(b.rootfs, ['sh', '-c', 'tty; echo hello-pty']);
  cfg.terminal = true;
  const res = await spawnAndWaitExec(cfg);
  tt.ok(res.ptyMaster >= 0, 'pty master received');
  const st = await childReaper.wait(res.pid);
  tt.same(st, { code: 0, signal: null });
  let out = '';
  const buf = Buffer.alloc(4096);
  for (;;) {
    let n = 0;
    try { n = readSync(res.ptyMaster, buf, 0, buf.length, null); } catch { break; } // EIO once the slave is gone
    if (n <= 0) break;
    out += buf.subarray(0, n).toString();
  }
  closeFd(res.ptyMaster);
  closeFd(res.pidfd);
  tt.match(out, /\/dev\/pts\/0/);
  tt.match(out, /hello-pty/);
});

function mkdirFilter(): Buffer | null {
  // classic BPF: if arch matches and nr is mkdir/mkdirat → ERRNO(EPERM), else ALLOW.
  const arch = process.arch === 'x64' ? { audit: 0xc000003e, nrs: [83, 258] } : process.arch === 'arm64' ? { audit: 0xc00000b7, nrs: [34] } : null;
  if (!arch) return null;
  const BPF_LD_W_ABS = 0x20, BPF_JEQ_K = 0x15, BPF_RET_K = 0x06;
  const ALLOW = 0x7fff0000, ERRNO_EPERM = 0x00050001;
  const ins: [number, number, number, number][] = [[BPF_LD_W_ABS, 0, 0, 4], [BPF_JEQ_K, 1, 0, arch.audit], [BPF_RET_K, 0, 0, ALLOW], [BPF_LD_W_ABS, 0, 0, 0]];
  arch.nrs.forEach((nr, i) => ins.push([BPF_JEQ_K, arch.nrs.length - i, 0, nr]));
  ins.push([BPF_RET_K, 0, 0, ALLOW], [BPF_RET_K, 0, 0, ERRNO_EPERM]);
  const buf = Buffer.alloc(ins.length * 8);
  ins.forEach(([code, jt, jf, k], i) => { buf.writeUInt16LE(code, i * 8); buf.writeUInt8(jt, i * 8 + 2); buf.writeUInt8(jf, i * 8 + 3); buf.writeUInt32LE(k >>> 0, i * 8 + 4); });
  return buf;
}

t.test('seccomp: a hand-built filter makes mkdir fail with EPERM (with and without no_new_privs)', async (tt) => {
  const prog = mkdirFilter();
  if (!prog) { tt.pass(`skipped: no test filter for ${process.arch}`); return; }
  const b = bundle(tt);
  for (const nnp of [true, false]) {
    const cfg = baseConfig(b.rootfs, ['sh', '-c', 'mkdir /tmp/x; echo rc=$?; grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status']);
    cfg.noNewPrivileges = nnp;
    cfg.capabilities = { bounding: DOCKER_CAPS, effective: DOCKER_CAPS, permitted: DOCKER_CAPS, inheritable: 0n, ambient: 0n };
    cfg.seccomp = { program: prog, flags: 0 };
    const { out, status } = await run(cfg);
    tt.equal(status.code, 0, out);
    tt.match(out, /Operation not permitted/, `nnp=${nnp}`);
    tt.match(out, /rc=1/);
    tt.match(out, /^Seccomp:\s+2$/m);
    tt.match(out, new RegExp(`^NoNewPrivs:\\s+${nnp ? 1 : 0}$`, 'm'));
  }
});

t.test('hook pause, extra fds, sysctls, readonly rootfs, no-pivot', async (tt) => {
  const b = bundle(tt);
  const [r3, w3] = socketpair();
  const cfg = baseConfig(b.rootfs, ['sh', '-c', 'echo via-fd3 >&3; cat /proc/sys/net/ipv4/ip_forward; touch /x 2>/dev/null && echo rootfs=rw || echo rootfs=ro']);
  cfg.hookPause = true;
  cfg.extraFds = [w3];
  cfg.sysctls = [{ key: 'net.ipv4.ip_forward', value: '1' }];
  cfg.rootfsReadonly = true;
  let hooked = 0;
  const fd3 = readAllSocket(r3);
  let res0;
  try {
    res0 = await run(cfg, { onHooks: () => { hooked++; } });
  } finally {
    closeSync(w3); // on failure too, or the reader above keeps Node alive
  }
  const { out, status } = res0;
  tt.equal(status.code, 0, out);
  tt.equal(hooked, 1, 'paused once for hooks');
  tt.equal((await fd3).trim(), 'via-fd3');
  tt.match(out, /^1$/m, 'sysctl applied in the container\'s net namespace');
  tt.match(out, /rootfs=ro/);

  const np = baseConfig(b.rootfs, ['sh', '-c', 'echo pid=$$; ls /bin/busybox']);
  np.noPivot = true;
  const res = await run(np);
  tt.equal(res.status.code, 0, res.out);
  tt.match(res.out, /pid=1/);
});

t.test('an exception between clone and GO kills and reaps the child', async (tt) => {
  const b = bundle(tt);
  let pid = 0;
  const err = await spawnAndWaitExec(baseConfig(b.rootfs, ['true']), {
    beforeGo: (init) => { pid = init.pid; throw new Error('parent setup failed'); },
  }).catch((e: unknown) => e);
  tt.match(err, { message: 'parent setup failed' });
  tt.ok(pid > 0);
  tt.same(await childReaper.wait(pid), { code: null, signal: 9 }, 'killed with SIGKILL and reaped');
  tt.throws(() => readFileSync(`/proc/${pid}/stat`), 'gone');

  const bad = baseConfig(b.rootfs, ['true']);
  bad.namespaces.push({ kind: 'cgroup', path: '/proc/self/ns/no-such-ns' });
  tt.throws(() => spawnInit(bad), { stage: 'spawn', errno: 2, message: /no-such-ns/ });
});

t.test('sendFd / recvFd / unixConnectSendFd pass descriptors', async (tt) => {
  const [a, c] = socketpair();
  const dn = openSync('/dev/null', 'r');
  sendFd(a, dn);
  const got = recvFd(c);
  tt.equal(readlinkSync(`/proc/self/fd/${got}`), '/dev/null');
  closeFd(got);

  const dir = mkdtempSync(join(tmpdir(), 'berth-sock-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'console.sock');
  const srv = net.createServer();
  await new Promise<void>((res) => srv.listen(path, res));
  tt.teardown(() => srv.close());
  tt.throws(() => unixConnectSendFd(join(dir, 'missing.sock'), dn), { errno: 2, message: /missing\.sock/ });
  const accepted = new Promise<void>((res) => srv.once('connection', (s) => { s.destroy(); res(); }));
  unixConnectSendFd(path, dn);
  await accepted;
  closeSync(dn);
  closeFd(a);
  closeFd(c);
});

t.test('spawn → exec latency for /bin/true (printed, not asserted)', async (tt) => {
  const b = bundle(tt);
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const cfg = baseConfig(b.rootfs, ['/bin/true']);
    const t0 = process.hrtime.bigint();
    const res = await spawnAndWaitExec(cfg);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await childReaper.wait(res.pid);
    closeFd(res.pidfd);
  }
  times.sort((x, y) => x - y);
  tt.comment(`spawnInit → exec outcome, /bin/true, 5 namespaces + 5 mounts + /dev: median ${times[10].toFixed(2)} ms (min ${times[0].toFixed(2)}, max ${times[19].toFixed(2)})`);
  tt.pass('measured');
});

t.test('nothing leaked', async (tt) => {
  tt.equal(childReaper.size, 0, 'no pid left unreaped');
  tt.same(mountinfoMentions('berth-spawn-'), [], 'no mounts mention our temp dirs');
});


