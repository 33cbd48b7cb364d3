/**
 * Pure conversions (runtime/cgroups/convert.ts) and driver detection from mountinfo text.
 */
import t from 'tap';
import {
  blkioWeightToIoWeight, cpuMaxValue, cpuSharesToWeight, cpuSharesToWeightLinear, deviceRuleToV1, devicesAllowAll,
  hugepageSizeFromKb, memorySwapToV2, normalizeCpuset, pidsLimitValue, resolveCgroupsPath, validateUnifiedKey,
  validateSwappiness, milliCpuToShares, milliCpuToQuota,
} from '../runtime/cgroups/convert.js';
import { detectCgroupDriver, detectCgroupVersion, v1MountsFromMountinfo } from '../runtime/cgroups/index.js';
import { ConfigError } from '../runtime/errors.js';

t.test('cgroupsPath: absolute kept, relative under /berth, .. rejected', async (t) => {
  t.equal(resolveCgroupsPath('/berth/abc'), '/berth/abc');
  t.equal(resolveCgroupsPath('/a//b/./c/'), '/a/b/c');
  t.equal(resolveCgroupsPath('abc'), '/berth/abc');
  t.equal(resolveCgroupsPath('kubepods/pod1/c'), '/berth/kubepods/pod1/c');
  t.throws(() => resolveCgroupsPath('/a/../b'), ConfigError);
  t.throws(() => resolveCgroupsPath('../x'), { code: 'EINVALIDCONFIG', message: /\.\./ });
  t.throws(() => resolveCgroupsPath('/'), { message: /hierarchy root/ });
  t.throws(() => resolveCgroupsPath(''), ConfigError);
  t.throws(() => resolveCgroupsPath('system.slice:berth:abc'), { message: /systemd/ });
});

t.test('shares -> cpu.weight: runc quadratic fit', async (t) => {
  t.equal(cpuSharesToWeight(0), 0, 'unset stays unset');
  t.equal(cpuSharesToWeight(2), 1);
  t.equal(cpuSharesToWeight(1024), 100, 'v1 default maps to v2 default');
  t.equal(cpuSharesToWeight(262144), 10000);
  t.equal(cpuSharesToWeight(1_000_000), 10000, 'clamped');
  t.equal(cpuSharesToWeight(512), 59);
  t.equal(cpuSharesToWeight(2048), 174);
  t.equal(cpuSharesToWeight(102), 17, 'kubelet 100m');
  // monotonic over the whole range
  let prev = 0;
  const bad: number[] = [];
  for (let s = 2; s <= 262144; s += 97) {
    const w = cpuSharesToWeight(s);
    if (!(w >= prev && w >= 1 && w <= 10000)) bad.push(s);
    prev = w;
  }
  t.same(bad, [], 'monotonic and within [1, 10000] over the whole range');
});

t.test('shares -> cpu.weight: linear (kubelet) for reference', async (t) => {
  t.equal(cpuSharesToWeightLinear(2), 1);
  t.equal(cpuSharesToWeightLinear(1024), 39);
  t.equal(cpuSharesToWeightLinear(262144), 10000);
  t.equal(cpuSharesToWeightLinear(5000), 1 + Math.floor((4998 * 9999) / 262142));
});

t.test('kubelet formulas: milliCPU -> shares and quota', async (t) => {
  t.equal(milliCpuToShares(0), 2, 'BestEffort');
  t.equal(milliCpuToShares(1), 2, 'min 2');
  t.equal(milliCpuToShares(100), 102);
  t.equal(milliCpuToShares(1000), 1024);
  t.equal(milliCpuToShares(1_000_000), 262144, 'max');
  t.equal(milliCpuToQuota(0), -1, 'no limit');
  t.equal(milliCpuToQuota(500), 50000);
  t.equal(milliCpuToQuota(2000), 200000);
  t.equal(milliCpuToQuota(5), 1000, 'at least 1 ms');
});

t.test('blkio weight -> io.weight', async (t) => {
  t.equal(blkioWeightToIoWeight(0), 0);
  t.equal(blkioWeightToIoWeight(10), 1);
  t.equal(blkioWeightToIoWeight(500), 4950);
  t.equal(blkioWeightToIoWeight(1000), 10000);
  t.throws(() => blkioWeightToIoWeight(5), ConfigError);
  t.throws(() => blkioWeightToIoWeight(1001), ConfigError);
});

t.test('swap: OCI memory+swap -> v2 swap.max', async (t) => {
  t.equal(memorySwapToV2(100, 300), 200);
  t.equal(memorySwapToV2(100, 100), 0, 'swap == limit: no swap');
  t.equal(memorySwapToV2(100, -1), 'max');
  t.equal(memorySwapToV2(-1, undefined), 'max', 'unlimited memory implies unlimited swap');
  t.equal(memorySwapToV2(100, undefined), undefined, 'leave alone');
  t.throws(() => memorySwapToV2(undefined, 300), { message: /needs a memory limit/ });
  t.throws(() => memorySwapToV2(300, 100), { message: />= the memory limit/ });
});

t.test('cpu.max', async (t) => {
  t.equal(cpuMaxValue(50000, 100000), '50000 100000');
  t.equal(cpuMaxValue(-1, 100000), 'max 100000');
  t.equal(cpuMaxValue(0, 100000), 'max 100000');
  t.equal(cpuMaxValue(20000, undefined), '20000', 'kernel keeps the period');
  t.equal(cpuMaxValue(undefined, 50000, '25000'), '25000 50000', 'period alone keeps the current quota');
  t.equal(cpuMaxValue(undefined, undefined), undefined);
});

t.test('pids, cpuset, swappiness, hugepage names, unified keys', async (t) => {
  t.equal(pidsLimitValue(-1), 'max');
  t.equal(pidsLimitValue(0), 'max');
  t.equal(pidsLimitValue(64), '64');
  t.equal(normalizeCpuset('3,0-1,2'), '0-3');
  t.equal(normalizeCpuset(' 0 , 2,4-5 '), '0,2,4-5');
  t.equal(normalizeCpuset('1'), '1');
  t.equal(normalizeCpuset(''), '');
  t.throws(() => normalizeCpuset('0-a'), { message: /not a CPU/ });
  t.throws(() => normalizeCpuset('3-1'), { message: /reversed/ });
  t.equal(validateSwappiness({ swappiness: 60 }), 60);
  t.throws(() => validateSwappiness({ swappiness: 101 }), ConfigError);
  t.equal(hugepageSizeFromKb(2048), '2MB');
  t.equal(hugepageSizeFromKb(1048576), '1GB');
  t.equal(hugepageSizeFromKb(64), '64KB');
  t.equal(validateUnifiedKey('memory.high'), 'memory.high');
  t.throws(() => validateUnifiedKey('../memory.high'), ConfigError);
  t.throws(() => validateUnifiedKey('a/b.c'), ConfigError);
  t.throws(() => validateUnifiedKey('memoryhigh'), ConfigError);
  t.throws(() => validateUnifiedKey('cgroup.procs'), { message: /managed by the runtime/ });
});

t.test('device rules', async (t) => {
  t.equal(deviceRuleToV1({ allow: false, access: 'rwm' }), 'a *:* rwm');
  t.equal(deviceRuleToV1({ allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }), 'c 1:3 rwm');
  t.equal(deviceRuleToV1({ allow: true, type: 'c', major: 136, minor: null, access: 'rw' }), 'c 136:* rw');
  t.equal(deviceRuleToV1({ allow: true, type: 'b', major: -1, minor: -1 }), 'b *:* rwm');
  t.throws(() => deviceRuleToV1({ allow: true, type: 'x' as 'c' }, 2), { message: /devices\[2\]\.type/ });
  t.throws(() => deviceRuleToV1({ allow: true, access: 'rwx' }), { message: /access/ });
  t.ok(devicesAllowAll(undefined));
  t.notOk(devicesAllowAll([]), 'an empty list starts (and ends) at deny-all');
  t.ok(devicesAllowAll([{ allow: true, access: 'rwm' }]));
  t.notOk(devicesAllowAll([{ allow: false, access: 'rwm' }]));
  t.notOk(devicesAllowAll([{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3 }]));
  t.notOk(devicesAllowAll([{ allow: true, access: 'rwm' }, { allow: false, type: 'c', major: 1, minor: 3 }]));
});

t.test('detection from mountinfo', async (t) => {
  const pureV2 = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
  const hybrid = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
    '34 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    '42 31 0:39 / /sys/fs/cgroup/net\\040cls rw,relatime - cgroup cgroup rw,net_cls',
  ].join('\n');
  t.equal(detectCgroupVersion(pureV2), 2);
  t.equal(detectCgroupVersion(hybrid), 1);
  t.equal(detectCgroupVersion(hybrid, '/sys/fs/cgroup/unified'), 2);
  t.same(v1MountsFromMountinfo(hybrid), {
    cpu: '/sys/fs/cgroup/cpu,cpuacct',
    cpuacct: '/sys/fs/cgroup/cpu,cpuacct',
    memory: '/sys/fs/cgroup/memory',
    net_cls: '/sys/fs/cgroup/net cls',
  });
  t.same(v1MountsFromMountinfo(pureV2), {});
});

t.test('detectCgroupDriver on this host is cached and matches mountinfo', async (t) => {
  const d = detectCgroupDriver();
  t.equal(detectCgroupDriver(), d, 'cached');
  const fs = await import('node:fs');
  t.equal(d.version, detectCgroupVersion(fs.readFileSync('/proc/self/mountinfo', 'utf8')));
});
