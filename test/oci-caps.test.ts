import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { ConfigError } from '../runtime/errors.js';
import {
  ALL_CAPS, CAPS, DEFAULT_CAPS, capsToMask, kernelLastCap, maskToCaps, maskToHex, normalizeCapName,
  parseProcStatusCaps, readProcCaps,
} from '../runtime/oci/caps.js';
import {
  checkRlimits, currentHardLimit, currentLimit, defaultRlimits, RLIM_INFINITY, RLIMITS, rlimitNumber,
} from '../runtime/oci/rlimits.js';

t.test('capability table', async (t) => {
  t.equal(CAPS.CAP_CHOWN, 0);
  t.equal(CAPS.CAP_SYS_ADMIN, 21);
  t.equal(CAPS.CAP_SYS_RESOURCE, 24);
  t.equal(CAPS.CAP_CHECKPOINT_RESTORE, 40);
  t.equal(ALL_CAPS.length, 41);
  t.equal(DEFAULT_CAPS.length, 14);
  for (const c of DEFAULT_CAPS) t.ok(c in CAPS, `${c} is known`);
  t.equal(normalizeCapName('net_raw'), 'CAP_NET_RAW');
  t.equal(normalizeCapName('CAP_KILL'), 'CAP_KILL');
});

t.test('masks round-trip', async (t) => {
  const all = capsToMask([...ALL_CAPS], 'x');
  const last = kernelLastCap();
  t.equal(all, (1n << BigInt(last + 1)) - 1n, 'all caps up to cap_last_cap');
  t.same(maskToCaps(all), ALL_CAPS.slice(0, last + 1));
  const m = capsToMask([...DEFAULT_CAPS], 'process.capabilities.bounding');
  t.same(new Set(maskToCaps(m)), new Set(DEFAULT_CAPS));
  t.equal(capsToMask([], 'x'), 0n);
  t.equal(capsToMask(['CAP_KILL', 'kill'], 'x'), 1n << 5n, 'duplicates and lower case fold');
  t.equal(maskToHex(1n << 5n), '0000000000000020');
});

t.test('unknown capability names carry the JSON path', async (t) => {
  t.throws(() => capsToMask(['CAP_CHOWN', 'CAP_NET_RAWW'], 'process.capabilities.effective'), {
    constructor: ConfigError,
    code: 'EINVALIDCONFIG',
    path: 'process.capabilities.effective[1]',
    message: /unknown capability "CAP_NET_RAWW"/,
  });
  t.throws(() => capsToMask([7 as unknown as string], 'p'), { code: 'EINVALIDCONFIG', path: 'p[0]' });
});

t.test('caps beyond the running kernel are dropped and reported', async (t) => {
  const last = kernelLastCap();
  t.equal(last, Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim()));
  const dropped: string[] = [];
  const mask = capsToMask([...ALL_CAPS], 'x', dropped);
  t.same(dropped, ALL_CAPS.slice(last + 1), 'whatever this kernel lacks');
  t.equal(mask >> BigInt(last + 1), 0n);
});

t.test('readProcCaps reads this process and a child', async (t) => {
  const self = readProcCaps();
  const text = fs.readFileSync('/proc/self/status', 'utf8');
  const eff = /^CapEff:\s*([0-9a-f]+)/m.exec(text)?.[1];
  t.equal(maskToHex(self.effective), eff, 'CapEff as /proc prints it');
  t.equal(maskToHex(readProcCaps(process.pid).bounding), maskToHex(self.bounding));
  if (process.getuid?.() === 0) {
    // On the reference machines root lacks CAP_SYS_RESOURCE: CapEff 000001fffeffffff.
    t.equal((self.effective >> 21n) & 1n, 1n, 'root holds CAP_SYS_ADMIN');
    if (kernelLastCap() === 40 && (self.effective & (1n << 24n)) === 0n) {
      t.equal(maskToHex(self.effective), '000001fffeffffff', 'the reference machines: all but CAP_SYS_RESOURCE');
    }
  }
  const child = spawn('/bin/busybox', ['sleep', '5']);
  t.teardown(() => { child.kill('SIGKILL'); });
  await new Promise((r) => child.once('spawn', r));
  const c = readProcCaps(child.pid!);
  t.equal(c.bounding, self.bounding, 'a child inherits the bounding set');
  t.equal(c.ambient, 0n);
  t.throws(() => parseProcStatusCaps('Name: x\n'), /CapInh/);
});

t.test('rlimit names', async (t) => {
  t.equal(rlimitNumber('RLIMIT_CPU', 'p'), 0);
  t.equal(rlimitNumber('RLIMIT_NOFILE', 'p'), 7);
  t.equal(rlimitNumber('RLIMIT_RTTIME', 'p'), 15);
  t.throws(() => rlimitNumber('RLIMIT_NOFILES', 'process.rlimits[0].type'), { constructor: ConfigError, code: 'EINVALIDCONFIG', path: 'process.rlimits[0].type' });
});

t.test('current limits agree with /proc/self/limits', async (t) => {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!;
  const [, soft, hard] = /Max open files\s+(\S+)\s+(\S+)/.exec(line)!;
  const cur = currentLimit('RLIMIT_NOFILE');
  t.equal(String(cur.soft), soft);
  t.equal(String(cur.hard), hard);
  t.equal(currentHardLimit('RLIMIT_CPU'), RLIM_INFINITY, 'cpu time is unlimited');
});

t.test('every current limit agrees with prlimit(1) (the prlimit syscall), for this process and after a change', async (t) => {
  const fromPrlimit = (): Map<string, { soft: number; hard: number }> => {
    const out = execFileSync('prlimit', ['--pid', String(process.pid), '--output', 'RESOURCE,SOFT,HARD', '--raw', '--noheadings'], { encoding: 'utf8' });
    const v = (x: string) => (x === 'unlimited' ? RLIM_INFINITY : Number(x));
    return new Map(out.trim().split('\n').map((l) => l.trim().split(/\s+/)).map(([r, s, h]) => [`RLIMIT_${r}`, { soft: v(s), hard: v(h) }]));
  };
  const want = fromPrlimit();
  for (const name of Object.keys(RLIMITS)) t.same(currentLimit(name), want.get(name), name);
  // Lower this process's soft NOFILE limit (prlimit on our pid) and read it back.
  const before = currentLimit('RLIMIT_NOFILE');
  const soft = Math.min(before.soft, 1000) - 7;
  execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${soft}:`]);
  try {
    t.same(currentLimit('RLIMIT_NOFILE'), { soft, hard: before.hard }, 'a changed soft limit is seen');
  } finally {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${before.soft}:`]);
  }
});

t.test('default rlimits never exceed the hard limit', async (t) => {
  const d = defaultRlimits();
  const hard = currentHardLimit('RLIMIT_NOFILE');
  t.equal(d.length, 1);
  t.equal(d[0].type, 'RLIMIT_NOFILE');
  t.ok(d[0].hard <= hard && d[0].soft <= d[0].hard);
  t.equal(d[0].hard, Math.min(1024, hard));
  t.doesNotThrow(() => checkRlimits(d));
});

t.test('explicit rlimits are checked', async (t) => {
  const hard = currentHardLimit('RLIMIT_NOFILE');
  t.doesNotThrow(() => checkRlimits([{ type: 'RLIMIT_NOFILE', soft: hard, hard }]));
  t.doesNotThrow(() => checkRlimits(undefined));
  const capEff = readProcCaps().effective;
  if ((capEff & (1n << 24n)) === 0n && hard !== RLIM_INFINITY) {
    t.throws(() => checkRlimits([{ type: 'RLIMIT_CORE', soft: 0, hard: 0 }, { type: 'RLIMIT_NOFILE', soft: 1024, hard: 1048576 }]), {
      constructor: ConfigError,
      code: 'EINVALIDCONFIG',
      path: 'process.rlimits[1]',
      message: new RegExp(`rlimit RLIMIT_NOFILE hard 1048576 exceeds this process's hard limit ${hard} and raising it needs CAP_SYS_RESOURCE`),
    });
  } else {
    t.pass('this process may raise hard limits; nothing to refuse');
  }
  t.throws(() => checkRlimits([{ type: 'RLIMIT_NOFILE', soft: 20, hard: 10 }]), { code: 'EINVALIDCONFIG', path: 'process.rlimits[0]', message: /soft 20 is above its hard 10/ });
  t.throws(() => checkRlimits([{ type: 'RLIMIT_NOFILE', soft: 1, hard: 1 }, { type: 'RLIMIT_NOFILE', soft: 1, hard: 1 }]), { code: 'EINVALIDCONFIG', path: 'process.rlimits[1].type' });
  t.throws(() => checkRlimits([{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }], 'p.r'), { code: 'EINVALIDCONFIG', path: 'p.r[0].type' });
  t.throws(() => checkRlimits([{ type: 'RLIMIT_CORE', soft: -1, hard: 1 }]), { code: 'EINVALIDCONFIG', path: 'process.rlimits[0].soft' });
});
