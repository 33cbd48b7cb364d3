/**
 * Device rules on cgroup v2 (runtime/cgroups/bpf-devices.ts): the compiler on its own (no root:
 * program shape, verifier-style checks, semantics against a reference model), then the real kernel:
 * a berth-test-<random> cgroup under the cgroup2 mount (/sys/fs/cgroup/unified on this hybrid host;
 * device programs attach to any cgroup2 directory whatever its controllers), Docker's default rules,
 * a shell moved into it, and what it may open and mknod — before and after updates. Finally a real
 * container (Runtime with an injected v2 driver) that has CAP_MKNOD cannot read a block device.
 *
 * The test's children stay in the v1 devices root (allow-all), so only our program decides.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  BPF_OPCODES as OP, compileDeviceFilter, DeviceFilterError, evalDeviceFilter, isCgroup2Dir, loadDeviceFilter, programExists,
  queryDeviceFilters, setDeviceFilter, type BpfInsn, type DeviceFilterProgram,
} from '../runtime/cgroups/bpf-devices.js';
import { cgroupDriverFor, detectCgroupVersion } from '../runtime/cgroups/index.js';
import type { Cgroup } from '../runtime/cgroups/types.js';
import { ConfigError } from '../runtime/errors.js';
import { mknod, S_IFBLK } from '../runtime/linux/libc.js';
import { cgroupResources } from '../runtime/oci/plan.js';
import type { DeviceCgroup, Spec } from '../runtime/oci/spec.js';

type Req = { type: 'b' | 'c'; major: number; minor: number; access: string };

/** The rule list every container gets on top of a deny-all (the project's own, from plan.ts). */
function dockerDefaults(extra: DeviceCgroup[] = []): DeviceCgroup[] {
  const spec = { ociVersion: '1.0.2', linux: { resources: { devices: [{ allow: false, access: 'rwm' }, ...extra] } } } as Spec;
  return cgroupResources(spec)!.devices!;
}

/** What the OCI rules mean, evaluated directly: per access bit, the last matching rule decides. */
function model(rules: DeviceCgroup[], req: Req): 0 | 1 {
  const any = (n: number | null | undefined): boolean => n === undefined || n === null || n === -1;
  for (const bit of req.access) {
    let allowed = false;
    for (let i = rules.length - 1; i >= 0; i--) {
      const r = rules[i];
      const type = r.type ?? 'a';
      if (type !== 'a' && type !== req.type) continue;
      if (!any(r.major) && r.major !== req.major) continue;
      if (!any(r.minor) && r.minor !== req.minor) continue;
      if (!(r.access ?? 'rwm').includes(bit)) continue;
      allowed = r.allow;
      break;
    }
    if (!allowed) return 0;
  }
  return 1;
}

/** What the kernel verifier checks structurally: forward jumps in range, nothing unreachable, ends in exit. */
function checkShape(t: Test, insns: BpfInsn[]): void {
  const conditional = new Set<number>([OP.JEQ, OP.JNE, OP.JSET]);
  const seen = new Set<number>();
  const todo = [0];
  let bad = '';
  while (todo.length > 0) {
    const pc = todo.pop()!;
    if (seen.has(pc)) continue;
    if (pc < 0 || pc >= insns.length) { bad = `control reaches ${pc}, outside the program`; break; }
    seen.add(pc);
    const i = insns[pc];
    if (i.code === OP.EXIT) continue;
    if (i.code === OP.JA || conditional.has(i.code)) {
      if (i.off < 0) bad = `backward jump at ${pc}`;
      todo.push(pc + 1 + i.off);
      if (i.code === OP.JA) continue;
    }
    todo.push(pc + 1);
  }
  t.equal(bad, '', 'all jumps forward and in range');
  t.equal(seen.size, insns.length, 'every instruction reachable');
  t.equal(insns[insns.length - 1].code, OP.EXIT, 'ends in exit');
}

t.test('compiler: program shape', async (t) => {
  const empty = compileDeviceFilter([]);
  t.equal(empty.allowAll, false, 'an empty list denies everything (as runc)');
  t.same(empty.insns.slice(0, 6).map((i) => [i.code, i.dst, i.src, i.off, i.imm]), [
    [OP.LDXW, 2, 1, 0, 0], [0x54, 2, 0, 0, 0xffff], [OP.LDXW, 3, 1, 0, 0], [0x74, 3, 0, 0, 16], [OP.LDXW, 4, 1, 4, 0], [OP.LDXW, 5, 1, 8, 0],
  ], 'prologue loads type, access, major, minor from bpf_cgroup_dev_ctx');
  t.same(empty.insns.slice(6).map((i) => [i.code, i.imm]), [[OP.MOV32, 0], [OP.EXIT, 0]], 'then returns 0');
  checkShape(t, empty.insns);

  const allowAll = compileDeviceFilter([{ allow: false, access: 'rwm' }, { allow: true, access: 'rwm' }]);
  t.equal(allowAll.allowAll, true, 'a final allow-all needs no program');
  t.equal(compileDeviceFilter([{ allow: true, type: 'c', access: 'rwm' }, { allow: true, type: 'b', access: 'rwm' }]).allowAll, true, 'c *:* + b *:* is everything');
  t.equal(compileDeviceFilter([{ allow: true, access: 'rwm' }, { allow: false, type: 'c', major: 1, minor: 3, access: 'w' }]).allowAll, false);
  t.equal(compileDeviceFilter([{ allow: true, access: 'rw' }]).allowAll, false, 'mknod still denied');

  const one = compileDeviceFilter([{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }]);
  // prologue 6 + (jne type, jne major, jne minor, ja allow) + deny 2 + allow 2; the deny-all emits nothing.
  t.equal(one.insns.length, 14);
  t.same(one.insns.slice(6, 10).map((i) => [i.code, i.dst, i.imm]), [[OP.JNE, 2, 2], [OP.JNE, 4, 1], [OP.JNE, 5, 3], [OP.JA, 0, 0]]);
  checkShape(t, one.insns);

  const partial = compileDeviceFilter([{ allow: true, access: 'rwm' }, { allow: false, type: 'b', access: 'r' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'r' }]);
  t.ok(partial.insns.some((i) => i.code === OP.JSET && i.imm === 2), 'a partial deny tests the requested bits');
  t.ok(partial.insns.some((i) => i.code === 0x54 && i.dst === 3 && i.imm === ~2), 'a partial allow clears the bits it grants');
  checkShape(t, partial.insns);

  const shadowed = compileDeviceFilter([{ allow: true, type: 'c', major: 4, access: 'rwm' }, { allow: false, type: 'c', access: 'rwm' }]);
  t.equal(shadowed.insns.length, 9, 'rules shadowed by a later wildcard are not emitted (no unreachable code)');
  checkShape(t, shadowed.insns);

  const docker = compileDeviceFilter(dockerDefaults());
  t.equal(docker.allowAll, false);
  t.ok(docker.insns.length < 100, `Docker's defaults compile to ${docker.insns.length} instructions`);
  checkShape(t, docker.insns);
});

t.test('compiler: semantics (last matching rule wins, per access bit)', async (t) => {
  const run = (rules: DeviceCgroup[], req: Req): 0 | 1 => evalDeviceFilter(compileDeviceFilter(rules).insns, req);
  const d = dockerDefaults();
  t.equal(run(d, { type: 'c', major: 1, minor: 3, access: 'rw' }), 1, '/dev/null rw');
  t.equal(run(d, { type: 'c', major: 136, minor: 7, access: 'rw' }), 1, 'pts 136:*');
  t.equal(run(d, { type: 'b', major: 8, minor: 0, access: 'm' }), 1, 'mknod b *:*');
  t.equal(run(d, { type: 'b', major: 8, minor: 0, access: 'r' }), 0, 'reading a disk');
  t.equal(run(d, { type: 'c', major: 10, minor: 237, access: 'r' }), 0, '/dev/loop-control');
  t.equal(run(d, { type: 'c', major: 1, minor: 3, access: 'rm' }), 1);

  t.equal(run([{ allow: true, access: 'rwm' }, { allow: false, type: 'c', major: 1, minor: 3, access: 'rwm' }], { type: 'c', major: 1, minor: 3, access: 'r' }), 0, 'a later deny wins');
  t.equal(run([{ allow: false, type: 'c', major: 1, minor: 3, access: 'rwm' }, { allow: true, access: 'rwm' }], { type: 'c', major: 1, minor: 3, access: 'r' }), 1, 'a later allow wins');
  const split: DeviceCgroup[] = [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'r' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'w' }];
  t.equal(run(split, { type: 'c', major: 1, minor: 5, access: 'rw' }), 1, 'r and w granted by two rules add up (O_RDWR)');
  t.equal(run(split, { type: 'c', major: 1, minor: 5, access: 'm' }), 0);
  const narrowed: DeviceCgroup[] = [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, { allow: false, type: 'c', major: 1, minor: 5, access: 'w' }];
  t.equal(run(narrowed, { type: 'c', major: 1, minor: 5, access: 'r' }), 1);
  t.equal(run(narrowed, { type: 'c', major: 1, minor: 5, access: 'rw' }), 0, 'a request is denied when any bit is');
  t.equal(run([{ allow: true, type: 'b', major: -1, minor: null, access: 'r' }], { type: 'b', major: 259, minor: 1, access: 'r' }), 1, '-1 and null are wildcards');

  // Random rule lists against the reference model.
  const rnd = (n: number): number => crypto.randomInt(n);
  const accesses = ['r', 'w', 'm', 'rw', 'rm', 'wm', 'rwm'];
  let mismatches = 0;
  let checked = 0;
  for (let round = 0; round < 300; round++) {
    const rules: DeviceCgroup[] = Array.from({ length: rnd(7) }, () => ({
      allow: rnd(2) === 0,
      type: (['a', 'b', 'c'] as const)[rnd(3)],
      major: rnd(3) === 0 ? null : rnd(3),
      minor: rnd(3) === 0 ? (rnd(2) ? -1 : undefined) : rnd(3),
      access: accesses[rnd(accesses.length)],
    }));
    const prog = compileDeviceFilter(rules);
    for (const type of ['b', 'c'] as const) {
      for (let major = 0; major < 3; major++) {
        for (let minor = 0; minor < 3; minor++) {
          for (const access of accesses) {
            checked++;
            const req = { type, major, minor, access };
            if (evalDeviceFilter(prog.insns, req) !== model(rules, req)) mismatches++;
          }
        }
      }
    }
    if (prog.allowAll) {
      const all = ['b', 'c'].every((type) => accesses.every((access) => model(rules, { type: type as 'b', major: 1, minor: 1, access }) === 1));
      if (!all) mismatches++;
    }
  }
  t.equal(mismatches, 0, `compiled programs agree with the reference model on ${checked} requests`);
});

t.test('compiler: bad rules are refused, naming the rule', async (t) => {
  t.throws(() => compileDeviceFilter([{ allow: true, type: 'z' as 'c' }]), ConfigError);
  t.throws(() => compileDeviceFilter([{ allow: true }, { allow: true, access: 'rx' }]), { message: /devices\[1\]\.access/ });
  t.throws(() => compileDeviceFilter([{ allow: true, type: 'c', major: 2 ** 32 }]), { message: /devices\[0\]\.major/ });
  t.throws(() => compileDeviceFilter([{ allow: true, type: 'c', major: 1, minor: -5 }]), { message: /devices\[0\]\.minor/ });
});

t.test('isCgroup2Dir', async (t) => {
  t.equal(isCgroup2Dir(os.tmpdir()), false);
  t.equal(isCgroup2Dir('/nonexistent-berth'), false);
});

t.test('a directory that is not on cgroup2 (layout trees): recorded, warned, no bpf()', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-devices-layout-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'berth-layout', 'c1'), { recursive: true });
  const cg = cgroupDriverFor(2, root).open('/berth-layout/c1');
  cg.apply({ devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }] });
  t.match(cg.warnings, [/devices.*not enforced.*not on a cgroup2 filesystem/]);
  const recorded = (cg as unknown as { deviceFilter: DeviceFilterProgram | null }).deviceFilter;
  t.equal(recorded?.insns.length, 14, 'the program that would be attached is recorded');
  const missing = cgroupDriverFor(2, root).open('/berth-layout/nope');
  t.throws(() => missing.apply({ devices: [{ allow: false }] }), { code: 'ECGROUP', message: /does not exist/ });
});

// ---- real kernel -------------------------------------------------------------------------------

const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
const cg2Root = process.env.BERTH_CGROUP2_ROOT
  ?? (detectCgroupVersion(mountinfo, '/sys/fs/cgroup') === 2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified');
const real = detectCgroupVersion(mountinfo, cg2Root) === 2 && process.getuid?.() === 0;

/**
 * A block device this process can open (so denying it is the program's doing), preferring the one
 * holding "/". Some sandboxes deny their own disk from outside; those are skipped.
 */
function openableBlockDevice(tmp: string): { major: number; minor: number } {
  const dev = fs.statSync('/').dev;
  const candidates = [`${(dev >> 8) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}`, ...fs.readdirSync('/sys/dev/block')];
  const probe = path.join(tmp, 'probe');
  for (const c of candidates) {
    if (!fs.existsSync(`/sys/dev/block/${c}`)) continue;
    const [major, minor] = c.split(':').map(Number);
    fs.rmSync(probe, { force: true });
    mknod(probe, S_IFBLK | 0o600, major, minor);
    try {
      fs.closeSync(fs.openSync(probe, 'r'));
      return { major, minor };
    } catch {
      // not openable here at all
    } finally {
      fs.rmSync(probe, { force: true });
    }
  }
  throw new Error('no block device on this host can be opened');
}

function closeFdQuiet(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

const V1_DEVICES_PROCS = '/sys/fs/cgroup/devices/cgroup.procs';

/** Run a shell script in `cg`: the shell waits until it has been moved there, then runs it. */
async function runIn(cg: Cgroup, script: string): Promise<{ code: number | null; out: string }> {
  const prefix = fs.existsSync(V1_DEVICES_PROCS) ? `echo $$ > ${V1_DEVICES_PROCS}; ` : '';
  const child = spawn('sh', ['-c', `read go; ${prefix}${script}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  try {
    cg.addProcess(child.pid!);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  child.stdin.end('go\n');
  return { code: await exited, out };
}

async function gone(id: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (!programExists(id)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

if (!real) {
  t.pass(`no cgroup2 mount at ${cg2Root} or not root: kernel checks skipped`);
} else {
  t.test('kernel: Docker default rules, updates, last match wins', async (t) => {
    t.setTimeout(120_000);
    const parent = `berth-test-${crypto.randomBytes(4).toString('hex')}`;
    const driver = cgroupDriverFor(2, cg2Root);
    const cg = driver.open(`/${parent}/devices`);
    const leaf = cg.paths()[''];
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-devices-'));
    t.teardown(async () => {
      await cg.destroy().catch(() => undefined);
      await driver.open(`/${parent}`).destroy().catch(() => undefined);
      fs.rmSync(tmp, { recursive: true, force: true });
    });
    t.match(fs.readFileSync('/proc/self/cgroup', 'utf8'), /^0::/m);
    cg.create();
    const blk = openableBlockDevice(tmp);
    const node = path.join(tmp, 'disk');
    // Made outside the cgroup, as a host path a container might be given.
    mknod(node, S_IFBLK | 0o600, blk.major, blk.minor);
    t.comment(`block device ${blk.major}:${blk.minor}, cgroup ${leaf}`);

    const before = await runIn(cg, `head -c1 ${node} > /dev/null && echo open-ok`);
    t.match(before.out, /open-ok/, 'without a program the block device opens (the test is meaningful)');

    cg.apply({ devices: dockerDefaults() });
    t.same(cg.warnings, [], 'enforced, no warning');
    const ids1 = queryDeviceFilters(leaf);
    t.equal(ids1.length, 1, 'one program attached');
    const r1 = await runIn(cg, [
      'head -c1 /dev/null && echo null-ok',
      'test "$(head -c1 /dev/zero | wc -c)" = 1 && echo zero-ok',
      'head -c1 /dev/urandom > /dev/null && echo urandom-ok',
      `head -c1 ${node} > /dev/null || echo disk-denied`,
      `mknod ${tmp}/b2 b ${blk.major} ${blk.minor} && echo mknod-ok`,
      `head -c1 ${tmp}/b2 > /dev/null || echo made-denied`,
      `mknod ${tmp}/lc c 10 237 && (head -c1 ${tmp}/lc > /dev/null 2>&1 || echo loop-control-denied)`,
    ].join('; '));
    t.match(r1.out, /null-ok/);
    t.match(r1.out, /zero-ok/);
    t.match(r1.out, /urandom-ok/);
    t.match(r1.out, /disk-denied/, 'reading the host disk is refused');
    t.match(r1.out, /Operation not permitted/, 'with EPERM');
    t.match(r1.out, /mknod-ok/, 'mknod b *:* is allowed (m)');
    t.match(r1.out, /made-denied/, 'but the node it made cannot be opened');
    t.match(r1.out, /loop-control-denied/);

    // Update: also allow reading that disk (read only).
    cg.apply({ devices: dockerDefaults([{ allow: true, type: 'b', major: blk.major, minor: blk.minor, access: 'r' }]) });
    const ids2 = queryDeviceFilters(leaf);
    t.equal(ids2.length, 1, 'the update replaced the program');
    t.not(ids2[0], ids1[0]);
    t.ok(await gone(ids1[0]), 'the replaced program is freed');
    const r2 = await runIn(cg, `head -c1 ${node} > /dev/null && echo read-ok; (exec 3>>${node}) 2>/dev/null || echo write-denied`);
    t.match(r2.out, /read-ok/, 'an update that allows it makes it work');
    t.match(r2.out, /write-denied/, 'only for reading');

    // mknod denied when no rule gives m.
    cg.apply({ devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' }] });
    const r3 = await runIn(cg, `mknod ${tmp}/n3 c 1 3 || echo mknod-denied; head -c1 /dev/null && echo null-ok`);
    t.match(r3.out, /mknod-denied/);
    t.match(r3.out, /null-ok/);
    t.notOk(fs.existsSync(path.join(tmp, 'n3')));

    // Last matching rule wins.
    cg.apply({ devices: [{ allow: true, access: 'rwm' }, { allow: false, type: 'c', major: 1, minor: 3, access: 'rwm' }] });
    const r4 = await runIn(cg, 'head -c1 /dev/null || echo null-denied; test "$(head -c1 /dev/zero | wc -c)" = 1 && echo zero-ok');
    t.match(r4.out, /null-denied/, 'allow-all then deny 1:3: the deny wins');
    t.match(r4.out, /zero-ok/);
    const last = queryDeviceFilters(leaf);
    cg.apply({ devices: [{ allow: false, type: 'c', major: 1, minor: 3, access: 'rwm' }, { allow: true, access: 'rwm' }] });
    t.same(queryDeviceFilters(leaf), [], 'deny 1:3 then allow-all: nothing to enforce, the old program is detached');
    t.ok(await gone(last[0]));
    const r5 = await runIn(cg, `head -c1 /dev/null && echo null-ok; head -c1 ${node} > /dev/null && echo disk-ok`);
    t.match(r5.out, /null-ok/);
    t.match(r5.out, /disk-ok/);

    // Access bits from different rules add up; a later partial deny narrows.
    cg.apply({ devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'r' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'w' }] });
    t.match((await runIn(cg, '(exec 3<>/dev/zero) && echo rdwr-ok')).out, /rdwr-ok/);
    cg.apply({ devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, { allow: false, type: 'c', major: 1, minor: 5, access: 'w' }] });
    const r6 = await runIn(cg, '(exec 3</dev/zero) && echo rd-ok; (exec 3<>/dev/zero) 2>/dev/null || echo rdwr-denied');
    t.match(r6.out, /rd-ok/);
    t.match(r6.out, /rdwr-denied/);

    // A bad update changes nothing.
    const keep = queryDeviceFilters(leaf);
    t.throws(() => cg.apply({ devices: [{ allow: true, type: 'x' as 'c' }] }), ConfigError);
    t.same(queryDeviceFilters(leaf), keep, 'a rejected update leaves the attached program alone');

    // setDeviceFilter directly reports what it did.
    const res = setDeviceFilter(leaf, [{ allow: false, access: 'rwm' }]);
    t.same(res.replaced, keep);
    t.same(queryDeviceFilters(leaf), [res.id]);

    await cg.destroy();
    t.ok(await gone(res.id), 'removing the cgroup frees its program (nothing pinned, no fd kept)');
  });

  t.test('kernel: a program the verifier rejects comes back with its log', async (t) => {
    // "exit" without setting R0.
    const bad: DeviceFilterProgram = { insns: [{ code: OP.EXIT, dst: 0, src: 0, off: 0, imm: 0 }], allowAll: false };
    let err: unknown;
    try {
      closeFdQuiet(loadDeviceFilter(bad));
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof DeviceFilterError);
    const e = err as DeviceFilterError;
    t.equal(e.code, 'EDEVICEFILTER');
    t.equal(e.op, 'BPF_PROG_LOAD');
    t.equal(e.errno, 13, 'EACCES');
    t.match(e.verifierLog, /R0 !read_ok/);
    t.match(e.message, /verifier log:/);
  });

  t.test('kernel: in a user namespace bpf(2) is refused: an error, unless every rule is an rwm allow (as runc)', async (t) => {
    t.setTimeout(60_000);
    const parent = `berth-test-${crypto.randomBytes(4).toString('hex')}`;
    const driver = cgroupDriverFor(2, cg2Root);
    const cg = driver.open(`/${parent}/userns`);
    const scriptDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-devices-userns-'));
    t.teardown(async () => {
      await driver.open(`/${parent}`).destroy().catch(() => undefined);
      fs.rmSync(scriptDir, { recursive: true, force: true });
    });
    cg.create();
    const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    const script = path.join(scriptDir, 'child.ts');
    fs.writeFileSync(script, `
      import { cgroupDriverFor } from ${JSON.stringify(path.join(repo, 'runtime/cgroups/index.js'))};
      const cg = cgroupDriverFor(2, ${JSON.stringify(cg2Root)}).open(${JSON.stringify(cg.path)});
      const out: Record<string, unknown> = {};
      try { cg.apply({ devices: [{ allow: false, access: 'rwm' }] }); out.deny = 'applied'; } catch (e) { out.deny = { code: (e as { code: string }).code, errno: (e as { errno: number }).errno, message: (e as Error).message }; }
      cg.apply({ devices: [{ allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }] });
      out.allowOnly = cg.warnings;
      console.log(JSON.stringify(out));
    `);
    const r = spawnSync('unshare', ['--user', '--map-root-user', process.execPath, '--import', 'tsx', script], { encoding: 'utf8', cwd: repo, timeout: 30_000 });
    t.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { deny: { code: string; errno: number; message: string }; allowOnly: string[] };
    t.equal(out.deny.code, 'EDEVICEFILTER');
    t.equal(out.deny.errno, 1);
    t.match(out.deny.message, /cannot enforce device rules.*CAP_BPF/);
    t.match(out.allowOnly, [/not enforced: bpf\(2\) is not permitted in this user namespace/]);
    t.same(queryDeviceFilters(cg.paths()['']), [], 'nothing attached');
  });

  t.test('kernel: a container with CAP_MKNOD cannot read a host disk', async (t) => {
    t.setTimeout(120_000);
    const { makeEnv } = await import('./helpers/oci.js');
    const { Runtime } = await import('../runtime/oci/runtime.js');
    const env = makeEnv();
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-devices-state-'));
    const rt = new Runtime({ root, warn: () => {}, cgroupDriver: cgroupDriverFor(2, cg2Root) });
    t.teardown(async () => {
      for (const { record } of rt.list()) await rt.delete(record.id, true).catch(() => {});
      fs.rmSync(root, { recursive: true, force: true });
      await env.cleanup();
    });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-devices-'));
    t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
    const blk = openableBlockDevice(tmp);
    const script = `rm -f /tmp/x; mknod /tmp/x b ${blk.major} ${blk.minor} && echo mknod-ok; head -c1 /tmp/x > /dev/null && echo read-ok; head -c1 /dev/null && echo null-ok`;
    const runOne = async (devices: DeviceCgroup[]): Promise<string> => {
      const out = env.output();
      const id = env.id('dev');
      const spec = env.spec(['/bin/sh', '-c', script], (s) => {
        for (const set of ['bounding', 'effective', 'permitted'] as const) s.process!.capabilities![set]!.push('CAP_MKNOD');
        s.linux!.resources = { devices }; // (runc's template has a deny-all)
      });
      await rt.run(id, { bundle: env.bundle, spec, stdio: [-1, out.fd, out.fd] });
      await rt.wait(id);
      await rt.delete(id, true);
      return out.read();
    };
    const open = await runOne([{ allow: true, access: 'rwm' }]);
    t.match(open, /mknod-ok/, 'baseline: CAP_MKNOD makes the node');
    t.match(open, /read-ok/, 'baseline: without device rules the disk is readable');
    const closed = await runOne([{ allow: false, access: 'rwm' }]);
    t.match(closed, /mknod-ok/, 'mknod is still allowed (Docker allows m on b *:*)');
    t.notMatch(closed, /read-ok/, 'reading the disk fails inside the container');
    t.match(closed, /Operation not permitted/);
    t.match(closed, /null-ok/, '/dev/null still works');
  });
}
