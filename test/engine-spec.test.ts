/** runtime/engine/spec.ts: image config + run options → OCI spec, Docker's rules (pure). */
import { hostDevices } from '../runtime/engine/host-devices.js';
import t from 'tap';
import {
  buildSpec, mergeEnv, parseBytes, parseResources, parseTmpfs, parseUlimit, parseVolumeSpec, resolveCaps,
  resolveCommand, resolveUser, DOCKER_MASKED_PATHS,
} from '../runtime/engine/spec.js';
import { DEFAULT_CAPS, ALL_CAPS } from '../runtime/oci/caps.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n';
const GROUP = 'root:x:0:\nwheel:x:10:app\napp:x:1000:\nstaff:x:50:root,app\n';

t.test('Entrypoint/Cmd matrix (Docker documentation)', async (t) => {
  const ep = ['/bin/ep', 'p1'], cmd = ['c1', 'c2'];
  t.same(resolveCommand({ Entrypoint: ep, Cmd: cmd }, [], undefined), ['/bin/ep', 'p1', 'c1', 'c2']);
  t.same(resolveCommand({ Entrypoint: ep, Cmd: cmd }, ['x'], undefined), ['/bin/ep', 'p1', 'x']);
  t.same(resolveCommand({ Cmd: cmd }, [], undefined), ['c1', 'c2']);
  t.same(resolveCommand({ Cmd: cmd }, ['x', 'y'], undefined), ['x', 'y']);
  t.same(resolveCommand({ Entrypoint: ep }, [], undefined), ['/bin/ep', 'p1']);
  t.same(resolveCommand({ Entrypoint: ['/bin/sh', '-c', 'shell form'] }, [], undefined), ['/bin/sh', '-c', 'shell form']);
  t.same(resolveCommand({ Entrypoint: ep, Cmd: cmd }, [], 'new'), ['new'], '--entrypoint resets Cmd');
  t.same(resolveCommand({ Entrypoint: ep, Cmd: cmd }, ['a'], 'new'), ['new', 'a']);
  t.same(resolveCommand({ Entrypoint: ep, Cmd: cmd }, ['a'], ''), ['a'], "--entrypoint '' clears");
  t.throws(() => resolveCommand({}, [], undefined), /no command specified/);
});

t.test('env, user, caps, parsing', async (t) => {
  t.same(mergeEnv(['A=1', 'PATH=/x'], ['A=2', 'B', 'C'], { B: 'host' }), ['A=2', 'PATH=/x', 'B=host']);
  t.match(mergeEnv([], []), [/^PATH=/]);
  t.same(resolveUser('app', PASSWD, GROUP), { uid: 1000, gid: 1000, home: '/home/app', additionalGids: [10, 50] });
  t.same(resolveUser('', PASSWD, GROUP), { uid: 0, gid: 0, home: '/root', additionalGids: [50] });
  t.same(resolveUser('1000:wheel', PASSWD, GROUP), { uid: 1000, gid: 10, home: '/home/app' });
  t.same(resolveUser('77:88', PASSWD, GROUP), { uid: 77, gid: 88, home: '/' });
  t.throws(() => resolveUser('ghost', PASSWD, GROUP), /unable to find user ghost/);
  t.throws(() => resolveUser('app:ghosts', PASSWD, GROUP), /unable to find group ghosts/);
  t.same(resolveCaps(), [...DEFAULT_CAPS]);
  t.equal(DEFAULT_CAPS.length, 14);
  t.notOk(resolveCaps([], ['net_raw']).includes('CAP_NET_RAW'));
  t.ok(resolveCaps(['SYS_ADMIN']).includes('CAP_SYS_ADMIN'));
  t.same(resolveCaps(['CHOWN'], ['ALL']), ['CAP_CHOWN']);
  t.same(resolveCaps([], [], true), [...ALL_CAPS]);
  t.throws(() => resolveCaps(['NOPE']), /unknown capability/);
  t.equal(parseBytes('--memory', '16m'), 16 * 1024 * 1024);
  t.equal(parseBytes('--memory', '1g'), 1024 ** 3);
  t.equal(parseBytes('--memory', '512kb'), 512 * 1024);
  t.throws(() => parseBytes('--memory', '12XB'), /--memory: invalid size "12XB"/);
  t.same(parseResources({ memory: '64m' }).memory, { limit: 64 * 1048576, swap: 128 * 1048576 }, 'swap defaults to 2x memory');
  t.same(parseResources({ cpus: '1.5', cpuShares: '512', cpusetCpus: '0', pidsLimit: '20' }), { cpu: { period: 100000, quota: 150000, shares: 512, cpus: '0' }, pids: { limit: 20 } });
  t.throws(() => parseResources({ memorySwap: '1g' }), /needs --memory/);
  t.same(parseUlimit('nofile=100:200'), { type: 'RLIMIT_NOFILE', soft: 100, hard: 200 });
  t.throws(() => parseUlimit('bogus=1'), /not a known limit/);
  t.same(parseVolumeSpec('/h:/c:ro'), { source: '/h', destination: '/c', readonly: true, named: false });
  t.same(parseVolumeSpec('data:/c/'), { source: 'data', destination: '/c', readonly: false, named: true });
  t.throws(() => parseVolumeSpec('/h:rel'), /must be absolute/);
  t.same(parseTmpfs('/run:size=1m'), { destination: '/run', options: ['noexec', 'nosuid', 'nodev', 'size=1m'] });
});

t.test('buildSpec: Docker defaults, privileged, read-only, ulimits', async (t) => {
  const ctx = { rootfs: '/r', cgroupsPath: '/berth/x', passwd: PASSWD, group: GROUP, network: 'new' as const, defaultHostname: 'abc', hostsFile: '/h/hosts' };
  const s = buildSpec({ Cmd: ['sh'], Env: ['FOO=1'], WorkingDir: '/w', User: 'app' }, { tty: true }, ctx);
  t.same(s.process?.args, ['sh']);
  t.equal(s.process?.cwd, '/w');
  t.same(s.process?.user, { uid: 1000, gid: 1000, additionalGids: [10, 50] });
  t.ok(s.process?.env?.includes('FOO=1'));
  t.ok(s.process?.env?.includes('HOSTNAME=abc'));
  t.ok(s.process?.env?.includes('TERM=xterm'));
  t.ok(s.process?.env?.includes('HOME=/home/app'));
  t.equal(s.hostname, 'abc');
  t.same(s.process?.capabilities?.bounding, [...DEFAULT_CAPS]);
  t.ok(s.linux?.seccomp, 'default seccomp');
  t.same(s.linux?.maskedPaths, [...DOCKER_MASKED_PATHS]);
  t.ok(s.mounts?.find((m) => m.destination === '/dev/shm')?.options?.includes('size=67108864'), '/dev/shm is 64m');
  t.same(s.mounts?.find((m) => m.destination === '/etc/hosts'), { destination: '/etc/hosts', type: 'bind', source: '/h/hosts', options: ['rbind', 'rprivate'] });
  t.equal(s.linux?.cgroupsPath, '/berth/x');
  t.ok(s.linux?.namespaces?.some((n) => n.type === 'network' && !n.path));
  const p = buildSpec({ Cmd: ['sh'] }, { privileged: true, readOnly: true, initPath: '/usr/lib/berth-init' }, { ...ctx, network: 'host' });
  t.same(p.process?.capabilities?.bounding, [...ALL_CAPS]);
  t.notOk(p.linux?.seccomp);
  t.notOk(p.linux?.maskedPaths);
  t.same(p.linux?.devices, hostDevices(), 'privileged: every host device node');
  t.same(p.linux?.resources?.devices, [{ allow: true, access: 'rwm' }]);
  t.notOk(s.linux?.devices, 'unprivileged: only the default nodes the runtime makes');
  t.equal(p.root?.readonly, true);
  t.notOk(p.linux?.namespaces?.some((n) => n.type === 'network'), 'host network: no netns');
  t.same(p.process?.args, ['/dev/init', '--', 'sh']);
  t.ok(p.mounts?.some((m) => m.destination === '/dev/init' && m.source === '/usr/lib/berth-init'));
  t.throws(() => buildSpec({ Cmd: ['sh'] }, { ulimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 2 ** 40 }] }, ctx), /above this host's hard limit/);
  const u = buildSpec({ Cmd: ['sh'] }, { ulimits: [{ type: 'RLIMIT_NOFILE', soft: 100, hard: 200 }] }, ctx);
  t.same(u.process?.rlimits?.find((r) => r.type === 'RLIMIT_NOFILE'), { type: 'RLIMIT_NOFILE', soft: 100, hard: 200 });
});
