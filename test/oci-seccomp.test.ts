import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../runtime/errors.js';
import { compileSeccomp, resolveSyscall, SeccompError } from '../runtime/oci/seccomp.js';
import { defaultSeccompProfile } from '../runtime/oci/seccomp-default.js';
import { DEFAULT_CAPS } from '../runtime/oci/caps.js';
import { umount } from '../runtime/linux/libc.js';
import type { Seccomp } from '../runtime/oci/spec.js';

t.setTimeout(120_000);

// A tiny loader: reads a BPF program from a file, sets no_new_privs, installs the filter with
// seccomp(2) and execs argv. This stands in for native/spawn.c's seccomp step.
const LOADER_C = `
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: loader PROG FLAGS CMD...\\n"); return 125; }
  FILE *f = fopen(argv[1], "rb");
  if (!f) { perror("open program"); return 125; }
  static struct sock_filter buf[65536];
  size_t n = fread(buf, sizeof(struct sock_filter), 65536, f);
  fclose(f);
  struct sock_fprog prog = { .len = (unsigned short)n, .filter = buf };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("prctl"); return 125; }
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)strtoul(argv[2], NULL, 0), &prog) != 0) {
    fprintf(stderr, "seccomp: %s\\n", strerror(errno)); return 125;
  }
  execv(argv[3], argv + 3);
  fprintf(stderr, "execv %s: %s\\n", argv[3], strerror(errno));
  return 126;
}
`;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-seccomp-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const loader = path.join(dir, 'loader');
fs.writeFileSync(`${loader}.c`, LOADER_C);
execFileSync('cc', ['-O1', '-Wall', '-Werror', '-o', loader, `${loader}.c`]);

let progN = 0;
function runUnder(profile: Seccomp, argv: string[]): { status: number | null; stderr: string; stdout: string } {
  const { program, flags } = compileSeccomp(profile);
  const file = path.join(dir, `prog-${progN++}.bpf`);
  fs.writeFileSync(file, program);
  const r = spawnSync(loader, [file, String(flags), ...argv], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

const BB = '/bin/busybox';

t.test('the Docker default profile compiles to a BPF program', async (t) => {
  const r = compileSeccomp(defaultSeccompProfile([...DEFAULT_CAPS]));
  t.ok(r.program.length > 0, 'non-empty');
  t.equal(r.program.length % 8, 0, 'whole sock_filter instructions');
  t.equal(r.flags, 0);
  t.same(r.skipped, [], 'libseccomp 2.5.4 knows every name of the profile');
  r.program.fill(0);
  const again = compileSeccomp(defaultSeccompProfile([...DEFAULT_CAPS]));
  t.ok(again.program.some((b) => b !== 0), 'a cached result is a copy: mutating one leaves the next intact');
  t.equal(again.program.length, r.program.length);
});

t.test('ERRNO(EPERM) for mkdir makes busybox mkdir fail; other calls still work', async (t) => {
  const profile: Seccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }],
  };
  const target = path.join(dir, 'x');
  const r = runUnder(profile, [BB, 'mkdir', target]);
  t.not(r.status, 0, 'mkdir fails');
  t.match(r.stderr, /Operation not permitted/);
  t.notOk(fs.existsSync(target));
  const ok = runUnder(profile, [BB, 'touch', path.join(dir, 'file')]);
  t.equal(ok.status, 0, 'open/creat is not filtered');
  // control: without the filter the same command works
  execFileSync(BB, ['mkdir', target]);
  t.ok(fs.existsSync(target));
});

t.test('errnoRet and argument conditions are honoured', async (t) => {
  const profile: Seccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      // two conditions on the same argument: each becomes its own rule (OR), as runc does
      { names: ['chmod', 'fchmodat'], action: 'SCMP_ACT_ERRNO', errnoRet: 28, args: [{ index: 1, value: 0o700, op: 'SCMP_CMP_EQ' }, { index: 1, value: 0o711, op: 'SCMP_CMP_EQ' }] },
    ],
  };
  const a = runUnder(profile, [BB, 'mkdir', '-m', '700', path.join(dir, 'm700')]);
  t.not(a.status, 0);
  t.match(a.stderr, /No space left on device/, 'ENOSPC from errnoRet 28');
  const b = runUnder(profile, [BB, 'mkdir', '-m', '711', path.join(dir, 'm711')]);
  t.not(b.status, 0);
  const c = runUnder(profile, [BB, 'mkdir', '-m', '755', path.join(dir, 'm755')]);
  t.equal(c.status, 0, c.stderr);
  t.equal(fs.statSync(path.join(dir, 'm755')).mode & 0o777, 0o755);
});

t.test('Docker default: ordinary programs run, privileged calls depend on caps', async (t) => {
  const withoutAdmin = defaultSeccompProfile([...DEFAULT_CAPS]);
  const r = runUnder(withoutAdmin, [BB, 'true']);
  t.equal(r.status, 0, `true runs: ${r.stderr}`);
  const sh = runUnder(withoutAdmin, [BB, 'sh', '-c', `echo hi > ${dir}/hi && cat ${dir}/hi`]);
  t.equal(sh.status, 0, sh.stderr);
  t.equal(sh.stdout, 'hi\n', 'sh forks (clone without namespace flags) and execs');

  const us = runUnder(withoutAdmin, [BB, 'unshare', '-U', BB, 'true']);
  t.not(us.status, 0, 'unshare refused without CAP_SYS_ADMIN');
  t.match(us.stderr, /Operation not permitted/);

  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  t.teardown(() => { umount(mnt, 2); });
  const m = runUnder(withoutAdmin, [BB, 'mount', '-t', 'tmpfs', 'berth-seccomp-test', mnt]);
  t.not(m.status, 0, 'mount refused without CAP_SYS_ADMIN');
  t.match(m.stderr, /Operation not permitted|permission denied/i);

  const ch = runUnder(withoutAdmin, [BB, 'chroot', '/', BB, 'true']);
  t.equal(ch.status, 0, 'chroot allowed: CAP_SYS_CHROOT is a default cap');
  const noChroot = runUnder(defaultSeccompProfile(DEFAULT_CAPS.filter((c) => c !== 'CAP_SYS_CHROOT')), [BB, 'chroot', '/', BB, 'true']);
  t.not(noChroot.status, 0, 'chroot refused without CAP_SYS_CHROOT');

  const withAdmin = defaultSeccompProfile([...DEFAULT_CAPS, 'CAP_SYS_ADMIN']);
  const us2 = runUnder(withAdmin, [BB, 'unshare', '-U', BB, 'true']);
  t.equal(us2.status, 0, `unshare allowed with CAP_SYS_ADMIN: ${us2.stderr}`);
});

t.test('profile shape follows Docker: EPERM default, clone3 ENOSYS, arch sub-filters', async (t) => {
  const p = defaultSeccompProfile([...DEFAULT_CAPS], { goarch: 'amd64', kernel: '6.1.0' });
  t.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  t.equal(p.defaultErrnoRet, 1);
  t.same(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const clone3 = p.syscalls?.find((s) => s.names.includes('clone3'));
  t.same(clone3, { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  t.ok(p.syscalls?.some((s) => s.names.includes('arch_prctl')), 'amd64 rule kept');
  t.notOk(p.syscalls?.some((s) => s.names.includes('riscv_flush_icache')), 'riscv rule dropped');
  t.notOk(p.syscalls?.some((s) => s.names.includes('mount')), 'mount needs CAP_SYS_ADMIN');
  const admin = defaultSeccompProfile(['CAP_SYS_ADMIN'], { goarch: 'amd64', kernel: '6.1.0' });
  t.notOk(admin.syscalls?.some((s) => s.names.includes('clone3') && s.action === 'SCMP_ACT_ERRNO'), 'clone3 allowed with CAP_SYS_ADMIN');
  t.ok(admin.syscalls?.some((s) => s.names.includes('mount')));
  const old = defaultSeccompProfile([], { goarch: 'amd64', kernel: '4.4.0' });
  t.notOk(old.syscalls?.some((s) => s.names.includes('ptrace')), 'ptrace needs kernel 4.8 without CAP_SYS_PTRACE');
});

t.test('flags, unknown names and rules equal to the default action', async (t) => {
  const r = compileSeccomp({
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64'],
    flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
    syscalls: [
      { names: ['read', 'no_such_syscall_berth', 'write'], action: 'SCMP_ACT_ALLOW' },
      { names: ['mkdir'], action: 'SCMP_ACT_ERRNO' },
      { names: ['getpid'], action: 'SCMP_ACT_LOG' },
      { names: ['kill'], action: 'SCMP_ACT_KILL_PROCESS' },
      { names: ['tkill'], action: 'SCMP_ACT_TRAP' },
      { names: ['ptrace'], action: 'SCMP_ACT_TRACE', errnoRet: 3 },
    ],
  });
  t.equal(r.flags, 2 | 4);
  t.same(r.skipped, ['no_such_syscall_berth']);
  t.ok(r.program.length > 0 && r.program.length % 8 === 0);
  t.equal(resolveSyscall('no_such_syscall_berth'), null);
  t.ok((resolveSyscall('mkdir') ?? -1) > 0);

  // The flags pass through seccomp(2) for real.
  const withFlags = runUnder({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_LOG'] }, [BB, 'true']);
  t.equal(withFlags.status, 0, withFlags.stderr);
});

t.test('bad profiles name the JSON path at fault', async (t) => {
  const bad = (p: unknown): Seccomp => p as Seccomp;
  t.throws(() => compileSeccomp(bad({ defaultAction: 'SCMP_ACT_NOPE' })), { constructor: ConfigError, code: 'EINVALIDCONFIG', path: 'linux.seccomp.defaultAction' });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO' }, { names: ['write'], action: 'SCMP_ACT_NOTIFY' }] }),
    { constructor: ConfigError, code: 'EINVALIDCONFIG', path: 'linux.seccomp.syscalls[1].action', message: /not supported/ });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/x.sock' }), { code: 'EINVALIDCONFIG', path: 'linux.seccomp.listenerPath' });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_PDP11'] }), { code: 'EINVALIDCONFIG', path: 'linux.seccomp.architectures[0]' });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_S390X'] }),
    { constructor: SeccompError, code: 'ESECCOMP', path: 'linux.seccomp.architectures[1]', errno: 33 });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_NOPE'] }), { code: 'EINVALIDCONFIG', path: 'linux.seccomp.flags[0]' });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_ABOUT' }] }] }),
    { code: 'EINVALIDCONFIG', path: 'linux.seccomp.syscalls[0].args[0].op' });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }] }),
    { code: 'EINVALIDCONFIG', path: 'linux.seccomp.syscalls[0].args[0].index' });
  t.throws(() => compileSeccomp(bad({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read', 7], action: 'SCMP_ACT_ERRNO' }] })),
    { code: 'EINVALIDCONFIG', path: 'linux.seccomp.syscalls[0].names[1]' });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', errnoRet: 70000 }] }),
    { code: 'EINVALIDCONFIG', path: 'linux.seccomp.syscalls[0].errnoRet' });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: [], action: 'SCMP_ACT_ERRNO' }] }, { path: 'process.seccomp' }),
    { code: 'EINVALIDCONFIG', path: 'process.seccomp.syscalls[0].names' });
});
