/**
 * cgroup v2 driver LAYOUT tests: a temp directory of plain files laid out like a cgroup2 hierarchy,
 * opened with cgroupDriverFor(2, tmpdir). They check exactly which files get which values; the
 * kernel's behaviour is covered by test/cgroups-v2.test.ts on a real cgroup2 mount.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroupDriverFor, CgroupError } from '../runtime/cgroups/index.js';
import { ConfigError } from '../runtime/errors.js';

const LEAF_FILES = [
  'cgroup.procs', 'cgroup.freeze', 'cgroup.events', 'cgroup.controllers', 'cgroup.subtree_control',
  'memory.max', 'memory.low', 'memory.high', 'memory.swap.max', 'cpu.weight', 'cpu.max', 'cpu.max.burst', 'cpu.idle',
  'cpuset.cpus', 'cpuset.mems', 'pids.max', 'io.weight', 'io.max', 'hugetlb.2MB.max',
];

function makeTree(t: { teardown: (fn: () => void) => void }, controllers = 'cpuset cpu io memory hugetlb pids rdma misc'): { root: string; leaf: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cg2-layout-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const mk = (dir: string, files: string[]): void => {
    fs.mkdirSync(dir, { recursive: true });
    for (const f of files) fs.writeFileSync(path.join(dir, f), '');
    fs.writeFileSync(path.join(dir, 'cgroup.controllers'), controllers + '\n');
  };
  mk(root, ['cgroup.subtree_control', 'cgroup.procs']);
  mk(path.join(root, 'berth-layout'), ['cgroup.subtree_control', 'cgroup.procs']);
  const leaf = path.join(root, 'berth-layout', 'c1');
  mk(leaf, LEAF_FILES.filter((f) => f !== 'cgroup.controllers'));
  return { root, leaf };
}

const read = (dir: string, f: string): string => fs.readFileSync(path.join(dir, f), 'utf8');

t.test('layout: create enables controllers top-down in every ancestor, not in the leaf', async (t) => {
  const { root, leaf } = makeTree(t);
  const cg = cgroupDriverFor(2, root).open('/berth-layout/c1');
  cg.create();
  t.equal(read(root, 'cgroup.subtree_control'), '+cpu +cpuset +io +memory +pids +hugetlb +rdma');
  t.equal(read(path.join(root, 'berth-layout'), 'cgroup.subtree_control'), '+cpu +cpuset +io +memory +pids +hugetlb +rdma');
  t.equal(read(leaf, 'cgroup.subtree_control'), '', 'leaf untouched (no internal processes)');
  t.same(cg.paths(), { '': leaf });
  t.equal(cg.version, 2);
  t.equal(cg.path, '/berth-layout/c1');
});

t.test('layout: only offered controllers, only missing ones', async (t) => {
  const { root } = makeTree(t, 'memory pids');
  fs.writeFileSync(path.join(root, 'cgroup.subtree_control'), 'pids\n');
  cgroupDriverFor(2, root).open('/berth-layout/c1').create();
  t.equal(read(root, 'cgroup.subtree_control'), '+memory', 'pids already enabled, cpu not offered');
});

t.test('layout: relative path goes under berth/ and missing parents are made', async (t) => {
  const { root } = makeTree(t);
  const cg = cgroupDriverFor(2, root).open('pod1/ctr');
  cg.create();
  t.equal(cg.path, '/berth/pod1/ctr');
  t.ok(fs.statSync(path.join(root, 'berth/pod1/ctr')).isDirectory());
  t.ok(cg.exists());
});

t.test('layout: apply writes each OCI resource to its v2 file', async (t) => {
  const { root, leaf } = makeTree(t);
  const cg = cgroupDriverFor(2, root).open('/berth-layout/c1');
  cg.create();
  cg.apply({
    memory: { limit: 64 << 20, swap: 96 << 20, reservation: 32 << 20 },
    cpu: { shares: 1024, quota: 50000, period: 100000, burst: 1000, idle: 0, cpus: '1,0', mems: '0' },
    pids: { limit: 100 },
    blockIO: {
      weight: 500,
      throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }],
      throttleWriteBpsDevice: [{ major: 8, minor: 0, rate: 2097152 }],
      throttleReadIOPSDevice: [{ major: 8, minor: 0, rate: 100 }],
      throttleWriteIOPSDevice: [{ major: 8, minor: 0, rate: 50 }],
    },
    hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }],
    unified: { 'memory.high': '50331648' },
  });
  const expected: Record<string, string> = {
    'memory.max': String(64 << 20),
    'memory.swap.max': String(32 << 20),
    'memory.low': String(32 << 20),
    'memory.high': '50331648',
    'cpu.weight': '100',
    'cpu.max': '50000 100000',
    'cpu.max.burst': '1000',
    'cpu.idle': '0',
    'cpuset.cpus': '0-1',
    'cpuset.mems': '0',
    'pids.max': '100',
    'io.weight': '4950',
    'io.max': '8:0 rbps=1048576 wbps=2097152 riops=100 wiops=50',
    'hugetlb.2MB.max': String(4 << 20),
  };
  for (const [f, v] of Object.entries(expected)) t.equal(read(leaf, f), v, f);
  for (const f of ['cgroup.procs', 'cgroup.freeze', 'cgroup.subtree_control']) t.equal(read(leaf, f), '', `${f} untouched`);
  t.same(fs.readdirSync(leaf).sort(), [...LEAF_FILES].sort(), 'no other file was created');
  t.same(cg.warnings, []);
});

t.test('layout: unlimited values and partial updates', async (t) => {
  const { root, leaf } = makeTree(t);
  const cg = cgroupDriverFor(2, root).open('/berth-layout/c1');
  cg.create();
  cg.apply({ memory: { limit: -1 }, cpu: { quota: -1, period: 100000 }, pids: { limit: -1 } });
  t.equal(read(leaf, 'memory.max'), 'max');
  t.equal(read(leaf, 'memory.swap.max'), 'max', 'unlimited memory implies unlimited swap');
  t.equal(read(leaf, 'cpu.max'), 'max 100000');
  t.equal(read(leaf, 'pids.max'), 'max');
  fs.writeFileSync(path.join(leaf, 'cpu.max'), '20000 100000\n');
  fs.writeFileSync(path.join(leaf, 'memory.swap.max'), '');
  cg.apply({ cpu: { period: 50000 } });
  t.equal(read(leaf, 'cpu.max'), '20000 50000', 'a new period keeps the current quota');
  cg.apply({ memory: { limit: 100 << 20, swap: -1 } });
  t.equal(read(leaf, 'memory.swap.max'), 'max');
  fs.writeFileSync(path.join(leaf, 'io.max'), '');
  cg.apply({ blockIO: { throttleWriteIOPSDevice: [{ major: 253, minor: 1, rate: 0 }] } });
  t.equal(read(leaf, 'io.max'), '253:1 wiops=max', 'rate 0 clears the limit');
});

t.test('layout: io.bfq.weight fallback takes the raw blkio weight', async (t) => {
  const { root, leaf } = makeTree(t);
  fs.rmSync(path.join(leaf, 'io.weight'));
  fs.writeFileSync(path.join(leaf, 'io.bfq.weight'), '');
  const cg = cgroupDriverFor(2, root).open('/berth-layout/c1');
  cg.apply({ blockIO: { weight: 500 } });
  t.equal(read(leaf, 'io.bfq.weight'), '500');
});

t.test('layout: devices and v1-only settings become warnings, not silent', async (t) => {
  const { root } = makeTree(t);
  const cg = cgroupDriverFor(2, root).open('/berth-layout/c1');
  cg.apply({ devices: [{ allow: true, access: 'rwm' }] });
  t.same(cg.warnings, [], 'allow-all needs no enforcement');
  cg.apply({
    devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }],
    memory: { swappiness: 10 },
    network: { classID: 0x100001 },
  });
  t.equal(cg.warnings.length, 3);
  t.match(cg.warnings[0], /devices.*not enforced.*eBPF|devices.*not enforced/i);
  t.match(cg.warnings.join('\n'), /swappiness/);
  t.match(cg.warnings.join('\n'), /net_cls/);
});

t.test('layout: bad input is refused with a clear error', async (t) => {
  const { root, leaf } = makeTree(t);
  const cg = cgroupDriverFor(2, root).open('/berth-layout/c1');
  t.throws(() => cg.apply({ unified: { '../../etc/passwd': 'x' } }), ConfigError);
  t.throws(() => cg.apply({ unified: { 'cgroup.procs': '1' } }), { message: /managed by the runtime/ });
  t.throws(() => cg.apply({ memory: { swap: 100 << 20 } }), { message: /needs a memory limit/ });
  t.throws(() => cg.apply({ cpu: { realtimeRuntime: 1000 } }), { code: 'ECGROUPUNSUPPORTED' });
  t.throws(() => cg.apply({ hugepageLimits: [{ pageSize: '2MB/../x', limit: 1 }] }), ConfigError);
  t.throws(() => cg.apply({ devices: [{ allow: true, type: 'z' as 'c' }] }), ConfigError);
  t.throws(() => cgroupDriverFor(2, root).open('/a/../../b'), ConfigError);
  let err: unknown;
  try {
    cg.apply({ hugepageLimits: [{ pageSize: '1GB', limit: 0 }] });
  } catch (e) {
    err = e;
  }
  t.type(err, CgroupError);
  t.equal((err as CgroupError).errnoCode, 'ENOENT');
  t.equal((err as CgroupError).file, path.join(leaf, 'hugetlb.1GB.max'));
  t.match((err as Error).message, /"0".*hugetlb\.1GB\.max: ENOENT.*controller is not enabled/);
  t.notOk(fs.existsSync(path.join(leaf, 'hugetlb.1GB.max')), 'a missing file is never created');
});

t.test('layout: stats parse the v2 files; missing files are zero/null', async (t) => {
  const { root, leaf } = makeTree(t);
  const w = (f: string, v: string): void => fs.writeFileSync(path.join(leaf, f), v);
  w('cpu.stat', 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n');
  w('memory.current', '4096\n');
  w('memory.peak', '8192\n');
  w('memory.max', 'max\n');
  w('memory.swap.current', '0\n');
  w('memory.events', 'low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n');
  w('pids.current', '3\n');
  w('pids.max', '100\n');
  w('io.stat', '8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=10 wbytes=20 rios=1 wios=1\n');
  const s = cgroupDriverFor(2, root).open('/berth-layout/c1').stats();
  t.same(s.cpu, { usageNanos: 1500000n, userNanos: 1000000n, systemNanos: 500000n, periods: 10, throttledPeriods: 2, throttledNanos: 300000n });
  t.same(s.memory, { usageBytes: 4096, maxUsageBytes: 8192, limitBytes: null, swapBytes: 0, oomKills: 1, failCount: 7 });
  t.same(s.pids, { current: 3, limit: 100 });
  t.same(s.blkio, { readBytes: 1010, writeBytes: 2020 });
  const empty = cgroupDriverFor(2, root).open('/berth-layout/none').stats();
  t.same(empty.memory, { usageBytes: 0, maxUsageBytes: 0, limitBytes: null, swapBytes: null, oomKills: 0, failCount: 0 });
  t.equal(empty.cpu.usageNanos, 0n);
});
