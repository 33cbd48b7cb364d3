/**
 * cgroup v2 driver on a REAL cgroup2 mount. Adaptive, never skipped: it reads which controllers the
 * hierarchy offers and asserts on every one that is present. Root: $BERTH_CGROUP2_ROOT, else
 * /sys/fs/cgroup when that is a cgroup2 mount (pure v2 host), else /sys/fs/cgroup/unified (this
 * hybrid machine, where only hugetlb is offered). Everything lives under /berth-test-<random>.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { cgroupDriverFor, detectCgroupVersion, V2_CONTROLLERS, cpuSharesToWeight, blkioWeightToIoWeight } from '../runtime/cgroups/index.js';
import type { LinuxResources } from '../runtime/oci/spec.js';
import { queryDeviceFilters } from '../runtime/cgroups/bpf-devices.js';

const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
const root = process.env.BERTH_CGROUP2_ROOT
  ?? (detectCgroupVersion(mountinfo, '/sys/fs/cgroup') === 2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified');

if (detectCgroupVersion(mountinfo, root) !== 2) {
  t.pass(`${root} is not a cgroup2 mount on this host; nothing real to test`);
} else {
  t.setTimeout(120_000);
  const words = (s: string): string[] => s.split(/\s+/).filter(Boolean);
  const rootControllers = words(fs.readFileSync(path.join(root, 'cgroup.controllers'), 'utf8'));
  const rootSubtreeBefore = words(fs.readFileSync(path.join(root, 'cgroup.subtree_control'), 'utf8'));
  const ours = V2_CONTROLLERS.filter((c) => rootControllers.includes(c));
  const has = (c: string): boolean => ours.includes(c as (typeof V2_CONTROLLERS)[number]);
  t.comment(`cgroup2 root ${root}; controllers offered and used: ${ours.join(' ') || '(none)'}`);

  const parentName = `berth-test-${crypto.randomBytes(4).toString('hex')}`;
  const parentDir = path.join(root, parentName);
  const driver = cgroupDriverFor(2, root);
  const cg = driver.open(`/${parentName}/c1`);
  const leaf = cg.paths()[''];
  const children: ChildProcess[] = [];
  const start = (cmd: string, args: string[]): ChildProcess => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'ignore'] });
    children.push(c);
    return c;
  };
  const exited = (c: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
    c.exitCode !== null || c.signalCode !== null
      ? Promise.resolve({ code: c.exitCode, signal: c.signalCode })
      : new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal })));
  const read = (f: string, dir = leaf): string => fs.readFileSync(path.join(dir, f), 'utf8').trim();
  const events = (dir = leaf): Record<string, string> =>
    Object.fromEntries(read('cgroup.events', dir).split('\n').map((l) => l.split(' ') as [string, string]));

  t.teardown(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await driver.open(`/${parentName}`).destroy().catch(() => undefined);
    // Give back controllers we enabled at the root (best effort: another user may now rely on them).
    for (const c of ours) {
      if (rootSubtreeBefore.includes(c)) continue;
      try {
        fs.writeFileSync(path.join(root, 'cgroup.subtree_control'), `-${c}`);
      } catch {}
    }
  });

  t.test('create: directory, controllers enabled top-down, leaf gets every offered controller', async (t) => {
    cg.create();
    cg.create();
    t.ok(fs.statSync(leaf).isDirectory());
    const rootSub = words(read('cgroup.subtree_control', root));
    const parentSub = words(read('cgroup.subtree_control', parentDir));
    for (const c of ours) {
      t.ok(rootSub.includes(c), `${c} enabled at the root`);
      t.ok(parentSub.includes(c), `${c} enabled in the parent`);
    }
    t.same(words(read('cgroup.controllers')).filter((c) => has(c)).sort(), [...ours].sort(), 'leaf offers them');
    t.equal(read('cgroup.subtree_control'), '', 'nothing enabled in the leaf');
  });

  t.test('apply: every present controller gets its values', async (t) => {
    const res: LinuxResources = {};
    if (has('memory')) {
      res.memory = { limit: 64 << 20, reservation: 16 << 20 };
      if (fs.existsSync(path.join(leaf, 'memory.swap.max'))) res.memory.swap = 96 << 20;
      res.unified = { 'memory.high': String(48 << 20) };
    }
    if (has('cpu')) res.cpu = { shares: 512, quota: 50000, period: 100000 };
    if (has('cpuset')) res.cpu = { ...res.cpu, cpus: '0', mems: '0' };
    if (has('pids')) res.pids = { limit: 50 };
    if (has('io') && fs.existsSync(path.join(leaf, 'io.weight'))) res.blockIO = { weight: 500 };
    const hugeFiles = has('hugetlb') ? fs.readdirSync(leaf).filter((f) => /^hugetlb\.[^.]+\.max$/.test(f)) : [];
    res.hugepageLimits = hugeFiles.map((f, i) => ({ pageSize: f.split('.')[1], limit: (i + 1) * (1 << 30) }));
    cg.apply(res);
    if (has('memory')) {
      t.equal(read('memory.max'), String(64 << 20));
      t.equal(read('memory.low'), String(16 << 20));
      t.equal(read('memory.high'), String(48 << 20));
      if (res.memory?.swap) t.equal(read('memory.swap.max'), String(32 << 20));
    }
    if (has('cpu')) {
      t.equal(read('cpu.weight'), String(cpuSharesToWeight(512)));
      t.equal(read('cpu.max'), '50000 100000');
    }
    if (has('cpuset')) t.equal(read('cpuset.cpus'), '0');
    if (has('pids')) t.equal(read('pids.max'), '50');
    if (res.blockIO) t.match(read('io.weight'), new RegExp(`default ${blkioWeightToIoWeight(500)}`));
    for (const [i, f] of hugeFiles.entries()) t.equal(read(f), String((i + 1) * (1 << 30)), f);
    t.ok(has('hugetlb') ? hugeFiles.length > 0 : true, 'hugetlb files exist when the controller does');
    t.comment(`checked: ${[...ours, ...hugeFiles].join(' ')}`);
  });

  t.test('devices are enforced with an eBPF program (see cgroups-v2-devices.test.ts)', async (t) => {
    const probe = driver.open(`/${parentName}/devices-probe`);
    t.throws(() => probe.apply({ devices: [{ allow: false, access: 'rwm' }] }), { code: 'ECGROUP' }, 'not created yet');
    probe.create();
    probe.apply({ devices: [{ allow: false, access: 'rwm' }] });
    t.same(probe.warnings, []);
    t.equal(queryDeviceFilters(probe.paths()['']).length, 1);
  });

  t.test('processes: addProcess, pids, stats, freeze/thaw', async (t) => {
    const sleeper = start('sleep', ['30']);
    // Pages stay charged to the cgroup that faulted them in (v2 does not move charges), so the
    // busy shell waits until it has been moved, then holds 2 MB of heap it allocates in here.
    const busy = start('sh', ['-c', 'read go; x=$(head -c 2000000 /dev/zero | tr "\\000" a); while :; do :; done']);
    cg.addProcess(sleeper.pid!);
    cg.addProcess(busy.pid!);
    t.same(cg.pids().sort((a, b) => a - b), [sleeper.pid!, busy.pid!].sort((a, b) => a - b));
    t.match(fs.readFileSync(`/proc/${sleeper.pid}/cgroup`, 'utf8'), new RegExp(`^0::/${parentName}/c1$`, 'm'));
    t.equal(events().populated, '1');
    busy.stdin!.write('go\n');
    await new Promise((r) => setTimeout(r, 300));
    const s = cg.stats();
    t.ok(s.cpu.usageNanos > 0n, `cpu.stat usage ${s.cpu.usageNanos} ns`);
    t.ok(s.cpu.userNanos > 0n, 'user time counted');
    if (has('pids')) {
      t.equal(s.pids.current, 2);
      t.equal(s.pids.limit, 50);
    }
    if (has('memory')) {
      t.ok(s.memory.usageBytes >= 2_000_000, `memory.current ${s.memory.usageBytes}`);
      t.equal(s.memory.limitBytes, 64 << 20);
    }

    await cg.freeze();
    t.ok(cg.isFrozen());
    t.equal(events().frozen, '1');
    t.equal(read('cgroup.freeze'), '1');
    const frozenUsage = cg.stats().cpu.usageNanos;
    await new Promise((r) => setTimeout(r, 150));
    t.ok(cg.stats().cpu.usageNanos - frozenUsage < 20_000_000n, 'no CPU used while frozen');
    await cg.thaw();
    t.notOk(cg.isFrozen());
    t.equal(events().frozen, '0');
  });

  t.test('OOM kill is counted (memory controller)', async (t) => {
    if (!has('memory')) {
      t.pass('memory controller not offered by this hierarchy');
      return;
    }
    const oom = driver.open(`/${parentName}/oom`);
    oom.create();
    const swapAccounted = fs.existsSync(path.join(leaf, 'memory.swap.max'));
    oom.apply({ memory: { limit: 16 << 20, ...(swapAccounted ? { swap: 16 << 20 } : {}) } });
    if (swapAccounted) t.equal(read('memory.swap.max', oom.paths()['']), '0', 'no swap: memory+swap == memory');
    const hog = start('/bin/busybox', ['sh', '-c', 'read go; x=$(head -c 64000000 /dev/zero | tr "\\0" a); exit 0']);
    oom.addProcess(hog.pid!);
    hog.stdin!.write('go\n');
    const res = await exited(hog);
    t.ok(res.signal === 'SIGKILL' || res.code !== 0, `allocator died: ${JSON.stringify(res)}`);
    t.ok(oom.stats().memory.oomKills >= 1);
    await oom.destroy();
  });

  t.test('destroy kills (cgroup.kill) and removes, nested first; idempotent', async (t) => {
    const alive = children.filter((c) => c.exitCode === null && c.signalCode === null);
    t.equal(alive.length, 2);
    const parent = driver.open(`/${parentName}`);
    await cg.freeze(); // destroy must work on a frozen cgroup too
    await parent.destroy();
    t.notOk(fs.existsSync(leaf));
    t.notOk(fs.existsSync(parentDir));
    for (const c of alive) t.equal((await exited(c)).signal, 'SIGKILL');
    await cg.destroy();
    t.notOk(cg.exists());
  });
}
