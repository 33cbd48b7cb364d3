import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultSpec, isCgroup2Unified } from '../runtime/oci/default-spec.js';
import { currentHardLimit } from '../runtime/oci/rlimits.js';
import { capsToMask } from '../runtime/oci/caps.js';
import type { Spec } from '../runtime/oci/spec.js';

/** `runc spec [--rootless]` in a fresh temp dir, parsed. */
function runcSpec(rootless: boolean, teardown: (fn: () => void) => void): Spec {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-runc-spec-'));
  teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync('runc', ['spec', ...(rootless ? ['--rootless'] : [])], { cwd: dir });
  return JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Spec;
}

// runc's current template (specconv/example.go on main) differs from the Debian runc 1.1.5
// installed here in three ways: /sys/devices/virtual/tpm is masked too, ambient caps are no
// longer granted, and a cgroup namespace is added on a pure cgroup v2 host.
const NEWER_MASKED = ['/sys/devices/virtual/tpm'];

for (const rootless of [false, true]) {
  t.test(`defaultSpec${rootless ? ' (rootless)' : ''} matches runc spec`, async (t) => {
    const ref = runcSpec(rootless, (fn) => t.teardown(fn));
    const ours = defaultSpec({ rootless });
    t.equal(ours.ociVersion, '1.2.0');
    t.same(ours.mounts, ref.mounts, 'mounts');
    t.same(ours.linux?.maskedPaths, [...(ref.linux?.maskedPaths ?? []), ...NEWER_MASKED], 'maskedPaths');
    t.same(ours.linux?.readonlyPaths, ref.linux?.readonlyPaths, 'readonlyPaths');
    const refNs = ref.linux?.namespaces ?? [];
    const expectNs = isCgroup2Unified() && !refNs.some((n) => n.type === 'cgroup')
      ? [...refNs.filter((n) => n.type !== 'user'), { type: 'cgroup' }, ...refNs.filter((n) => n.type === 'user')]
      : refNs;
    t.same(ours.linux?.namespaces, expectNs, 'namespaces');
    const rc = ref.process?.capabilities;
    const oc = ours.process?.capabilities;
    t.same(oc?.bounding, rc?.bounding, 'bounding');
    t.same(oc?.effective, rc?.effective, 'effective');
    t.same(oc?.permitted, rc?.permitted, 'permitted');
    t.equal(oc?.ambient, undefined, 'no ambient caps (runc dropped them from the template)');
    t.same(ours.linux?.resources, ref.linux?.resources, 'resources');
    t.same(ours.root, ref.root);
    t.equal(ours.hostname, ref.hostname);
    t.same(ours.process?.args, ref.process?.args);
    t.same(ours.process?.env, ref.process?.env);
    t.equal(ours.process?.cwd, ref.process?.cwd);
    t.same(ours.process?.user, ref.process?.user);
    t.equal(ours.process?.noNewPrivileges, ref.process?.noNewPrivileges);
    t.equal(ours.process?.terminal, ref.process?.terminal);
    if (currentHardLimit('RLIMIT_NOFILE') >= 1024) t.same(ours.process?.rlimits, ref.process?.rlimits, 'rlimits');
    if (rootless) {
      t.same(ours.linux?.uidMappings, ref.linux?.uidMappings);
      t.same(ours.linux?.gidMappings, ref.linux?.gidMappings);
    }
  });
}

t.test('options and independence of copies', async (t) => {
  const a = defaultSpec({ args: ['/bin/busybox', 'true'], terminal: false, cgroupns: true });
  t.same(a.process?.args, ['/bin/busybox', 'true']);
  t.equal(a.process?.terminal, false);
  t.ok(a.linux?.namespaces?.some((n) => n.type === 'cgroup'));
  t.notOk(defaultSpec({ cgroupns: false }).linux?.namespaces?.some((n) => n.type === 'cgroup'));
  a.mounts!.pop();
  a.process!.capabilities!.bounding!.push('CAP_SYS_ADMIN');
  const b = defaultSpec();
  t.equal(b.mounts?.length, 7, 'mutating one spec leaves the next untouched');
  t.equal(b.process?.capabilities?.bounding?.length, 3);
  t.doesNotThrow(() => capsToMask(b.process!.capabilities!.bounding!, 'process.capabilities.bounding'));
  for (const r of b.process?.rlimits ?? []) t.ok(r.hard <= currentHardLimit(r.type));
});
