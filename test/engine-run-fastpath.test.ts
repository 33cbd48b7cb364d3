/**
 * `berth run --rm` mounts the container's overlay with `volatile` (its upper layer is thrown away
 * at exit, so the unmount need not flush the host filesystem); containers without --rm keep the
 * ordinary, synced mount; and a --rm container's rootfs can be mounted again after a volatile
 * mount (overlayfs refuses that while work/work/incompat/volatile exists; the engine removes it).
 * start() launches the monitor before it loads the bundle and makes the netns: when that fails,
 * the waiting monitor (and its zygote) must go away too.
 * Real registry, CLI from source, own root/state/cgroup parent; nothing is left behind.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { engineCliEnv, mountsUnder } from './helpers/engine-cli.js';
import { Engine, isMountpoint } from '../runtime/engine/engine.js';

t.setTimeout(300000);

const ce = engineCliEnv('rmvol');
const { rand, root, state, cgParent, bridge, subnet, berth } = ce;
let IMG = '';
t.before(async () => { IMG = await ce.setup(); });
t.teardown(() => ce.teardown());

const rootLine = 'grep " / " /proc/self/mountinfo';

t.test('run --rm: the rootfs overlay is volatile; without --rm it is not', async (t) => {
  const rm = await berth(['run', '--rm', '--network', 'none', IMG, 'sh', '-c', rootLine]);
  t.equal(rm.code, 0, rm.stderr);
  t.match(rm.stdout, / overlay overlay .*fsync=volatile/, '--rm: volatile');
  const keep = await berth(['run', '--name', `keep-${rand}`, '--network', 'none', IMG, 'sh', '-c', `${rootLine}; echo data > /kept`]);
  t.equal(keep.code, 0, keep.stderr);
  t.match(keep.stdout, / overlay overlay /);
  t.notMatch(keep.stdout, /fsync=volatile/, 'without --rm: the ordinary synced mount');
  const id = (JSON.parse((await berth(['inspect', `keep-${rand}`])).stdout) as { Id: string }[])[0].Id;
  t.equal(readFileSync(join(root, 'containers', id, 'upper', 'kept'), 'utf8'), 'data\n', 'its upper layer kept the write');
  t.equal((await berth(['rm', `keep-${rand}`])).code, 0);
});

t.test('a --rm container is mounted again after its volatile mount went away', async (t) => {
  const e = await Engine.open({ root, state, cgroupParent: cgParent, defaultBridge: bridge, defaultSubnet: subnet });
  t.teardown(() => e.close());
  const rec = await e.create({ image: IMG, rm: true, network: 'none', args: ['true'] });
  t.teardown(async () => { await e.rm(rec.id, { force: true }).catch(() => {}); });
  const rootfs = join(root, 'containers', rec.id, 'rootfs');
  t.ok(isMountpoint(rootfs), 'mounted by create');
  t.ok(existsSync(join(root, 'containers', rec.id, 'work', 'work', 'incompat', 'volatile')), 'overlayfs marked the work dir volatile');
  execFileSync('umount', [rootfs]);
  t.notOk(isMountpoint(rootfs), 'unmounted (as after the container stopped)');
  let bytes = 0;
  await e.exportTo(rec.id, new Writable({ write(chunk: Buffer, _enc, cb) { bytes += chunk.length; cb(); } }));
  t.ok(bytes > 100000, `export mounted it again and read the tree (${bytes} bytes)`);
  const started = await e.start(rec.id);
  t.equal(started.status, 'running', 'and start mounts it again too');
  const done = await e.wait(rec.id);
  t.equal(done.exitCode, 0);
  await e.rm(rec.id, { force: true });
  t.notOk(existsSync(join(root, 'containers', rec.id)), 'removed');
  t.same(mountsUnder(join(root, 'containers')), [], 'no container mounts left');
});

t.test('start: a bundle that fails to load after the monitor was started leaves nothing running', async (t) => {
  const name = `broken-${rand}`;
  const c = await berth(['create', '--name', name, IMG, 'true']);
  t.equal(c.code, 0, c.stderr);
  const id = c.stdout.trim();
  writeFileSync(join(root, 'containers', id, 'bundle', 'config.json'), '{ not json');
  const s = await berth(['start', name]);
  t.not(s.code, 0, 'start fails');
  t.match(s.stderr, /cannot load the bundle of container broken-\w+ .*config\.json.*JSON/, `the error says why: ${s.stderr.trim()}`);
  t.equal(s.stderr.trim().split('\n').length, 1, 'in one line');
  const monitors = (): number[] => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8'); return cmd.includes('berth-monitor') && cmd.includes(id); } catch { return false; }
  }).map(Number);
  for (let i = 0; i < 100 && monitors().length; i++) await new Promise((r) => setTimeout(r, 20));
  t.same(monitors(), [], 'the monitor that was waiting for the handoff is gone');
  t.notOk(existsSync(join(state, 'netns', id.slice(0, 12))), 'no netns file');
  const rm = await berth(['rm', '-f', name]);
  t.equal(rm.code, 0, rm.stderr);
  t.same(mountsUnder(join(root, 'containers')), [], 'no container mounts left');
});

t.test('create({ startSoon }): the network is set up during create, taken over by start, undone when create fails or the container is removed unstarted', async (t) => {
  const e = await Engine.open({ root, state, cgroupParent: cgParent, defaultBridge: bridge, defaultSubnet: subnet });
  t.teardown(() => e.close());
  const cniResults = (): string[] => { try { return readdirSync(join(root, 'cni-results')); } catch { return []; } };
  const veths = (): string => execFileSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).trim();
  /** rm/cleanup leave the veth to the kernel's namespace teardown, which finishes a few ms later. */
  const vethsSoon = async (): Promise<string> => {
    for (let i = 0; i < 200 && veths(); i++) await new Promise((r) => setTimeout(r, 10));
    return veths();
  };
  const netnsFile = (id: string): string => join(state, 'netns', id.slice(0, 12));
  /** Container cgroup directories under the test's parent, in every hierarchy (made ahead by create({ startSoon })). */
  const cgroupsLeft = (): string[] => readdirSync('/sys/fs/cgroup').flatMap((h) => {
    const p = join('/sys/fs/cgroup', h, cgParent);
    try { return readdirSync(p, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(p, d.name)); } catch { return []; }
  });

  // taken over by start
  const rec = await e.create({ image: IMG, startSoon: true, args: ['sh', '-c', 'ip -o addr show eth0 | grep -q "inet " && ip -o link show lo | grep -q UP'] });
  t.ok(existsSync(netnsFile(rec.id)), 'create made the netns file');
  const started = await e.start(rec);
  t.match(started.ip ?? '', /^10\./, `an address on the bridge (${started.ip})`);
  t.equal(cniResults().length, 1, 'one stored CNI result (bridge; lo came up without the plugin)');
  const done = await e.wait(rec.id);
  t.equal(done.exitCode, 0, 'eth0 had its address and lo was up inside the container');
  await e.rm(rec.id);
  t.same(cniResults(), [], 'rm: CNI results gone');
  t.notOk(existsSync(netnsFile(rec.id)), 'rm: netns file gone');
  t.equal(await vethsSoon(), '', 'rm: no veth left on the bridge (within 2 s)');

  // removed without being started
  const idle = await e.create({ image: IMG, startSoon: true, args: ['true'] });
  t.ok(existsSync(netnsFile(idle.id)), 'netns made by create');
  t.ok(cgroupsLeft().some((d) => d.endsWith(idle.id)), 'and its cgroup directories, made ahead for the start');
  await e.rm(idle.id);
  t.same(cniResults(), [], 'rm of an unstarted container: its early attachment is deleted');
  t.notOk(existsSync(netnsFile(idle.id)), 'and its netns file');
  t.equal(await vethsSoon(), '', 'and its veth (within 2 s)');
  t.same(cgroupsLeft(), [], 'and the cgroup directories made for it');

  // create fails after the network was begun
  const before = readdirSync(join(root, 'containers')).filter((f) => !f.startsWith('.'));
  await t.rejects(e.create({ image: IMG, startSoon: true, workdir: 'relative/dir', args: ['true'] }), /--workdir.*must be an absolute path/);
  t.same(readdirSync(join(root, 'containers')).filter((f) => !f.startsWith('.')), before, 'no container directory left');
  t.same(cniResults(), [], 'no CNI result left');
  t.same(existsSync(join(state, 'netns')) ? readdirSync(join(state, 'netns')) : [], [], 'no netns file left');
  t.equal(veths(), '', 'no veth left (a failed create deletes it before returning)');
  await t.rejects(e.create({ image: 'berth-no-such-image:latest', startSoon: true, pull: 'never' }), /not present locally/);
  t.same(cniResults(), [], 'a missing image: nothing left either');
  t.same(existsSync(join(state, 'netns')) ? readdirSync(join(state, 'netns')) : [], [], 'no netns file');
  t.same(cgroupsLeft(), [], 'no cgroup directory left by the failed creates');
});
