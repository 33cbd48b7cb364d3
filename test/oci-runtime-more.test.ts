/**
 * More of the runtime on the real kernel: OCI hooks (state on stdin, order, failure), a user
 * namespace with id maps, sharing a sandbox's namespaces (the pod pattern), and adopting a
 * container from its state after the runtime object that created it is gone.
 */
import t from 'tap';
import { readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cgroupDirOf, makeEnv, type TestEnv } from './helpers/oci.js';
import { Runtime } from '../runtime/oci/runtime.js';

t.setTimeout(120_000);
let env: TestEnv;
t.before(() => { env = makeEnv(); });
t.teardown(async () => { await env.cleanup(); });

t.test('hooks run in order with the state on stdin; a failing createRuntime hook fails create', async (t) => {
  const log = join(env.bundle, 'hooks.log');
  const hook = join(env.bundle, 'hook.sh');
  writeFileSync(hook, `#!/bin/sh\necho "$1 $(cat)" >> ${log}\n`);
  chmodSync(hook, 0o755);
  const id = env.id('hooks');
  const spec = env.spec(['/bin/true'], (s) => {
    s.hooks = {
      prestart: [{ path: hook, args: ['hook', 'prestart'] }],
      createRuntime: [{ path: hook, args: ['hook', 'createRuntime'] }],
      poststart: [{ path: hook, args: ['hook', 'poststart'] }],
      poststop: [{ path: hook, args: ['hook', 'poststop'] }],
    };
  });
  await env.rt.run(id, { bundle: env.bundle, spec, stdio: [-1, -1, -1] });
  await env.rt.wait(id);
  await env.rt.delete(id);
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  t.same(lines.map((l) => l.split(' ')[0]), ['prestart', 'createRuntime', 'poststart', 'poststop']);
  const st = JSON.parse(lines[0].slice(lines[0].indexOf(' ') + 1));
  t.equal(st.id, id);
  t.equal(st.bundle, env.bundle);
  t.ok(st.pid > 0, 'state on stdin carries the pid');

  const bad = join(env.bundle, 'bad.sh');
  writeFileSync(bad, '#!/bin/sh\necho nope >&2\nexit 3\n');
  chmodSync(bad, 0o755);
  const id2 = env.id('badhook');
  await t.rejects(env.rt.create(id2, { bundle: env.bundle, spec: env.spec(['/bin/true'], (s) => { s.hooks = { createRuntime: [{ path: bad }] }; }), stdio: [-1, -1, -1] }),
    /createRuntime hook .*bad\.sh failed: exit status 3: nope/);
  t.notOk(existsSync(join(env.root, id2)), 'nothing left');
});

t.test('a user namespace maps root inside to an unprivileged uid outside', async (t) => {
  chmodSync(env.bundle, 0o755);
  const out = env.output();
  const id = env.id('userns');
  const spec = env.spec(['/bin/sh', '-c', 'id -u; cat /proc/self/uid_map'], (s) => {
    s.linux!.namespaces!.push({ type: 'user' });
    s.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    s.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    // sysfs and the cgroup mount cannot be made in a user namespace without a net ns of its own: bind /sys instead, as runc's rootless spec does.
    s.mounts = s.mounts!.filter((m) => m.destination !== '/sys' && m.destination !== '/sys/fs/cgroup' && m.destination !== '/dev/mqueue');
    s.mounts.push({ destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
    s.mounts = s.mounts.map((m) => (m.destination === '/dev/pts' ? { ...m, options: (m.options ?? []).filter((o) => o !== 'gid=5') } : m));
  });
  await env.rt.run(id, { bundle: env.bundle, spec, stdio: [-1, out.fd, out.fd] });
  const exit = await env.rt.wait(id);
  await env.rt.delete(id);
  t.equal(exit.exitCode, 0, out.read());
  t.match(out.read(), /^0\n\s+0\s+100000\s+65536\n$/);
});

t.test('a second container joins a sandbox\'s namespaces; state survives the runtime object', async (t) => {
  const sandbox = env.id('sandbox');
  await env.rt.run(sandbox, { bundle: env.bundle, spec: env.spec(['/bin/sleep', '1000'], (s) => { s.hostname = 'pod-host'; }), stdio: [-1, -1, -1] });
  t.teardown(() => env.rt.delete(sandbox, true).catch(() => {}));
  const sb = env.rt.load(sandbox);
  const out = env.output();
  const app = env.id('app');
  const spec = env.spec(['/bin/sh', '-c', 'hostname; ps -o pid,args | grep -c "sleep 1000"'], (s) => {
    s.linux!.namespaces = s.linux!.namespaces!.map((n) => (['network', 'ipc', 'uts', 'pid'].includes(n.type) ? { type: n.type, path: sb.namespacePaths[n.type] } : n));
    delete s.hostname;
  });
  await env.rt.run(app, { bundle: env.bundle, spec, stdio: [-1, out.fd, out.fd] });
  await env.rt.wait(app);
  await env.rt.delete(app);
  t.match(out.read(), /^pod-host\n[1-9]\n$/, 'same uts and pid namespace as the sandbox');
  // A new Runtime on the same root (a restarted agent) adopts the sandbox from state.json.
  const adopted = new Runtime({ root: env.root, warn: () => {} });
  t.equal(adopted.state(sandbox).status, 'running');
  t.equal(adopted.state(sandbox).pid, sb.pid);
  adopted.kill(sandbox, 'KILL');
  await env.rt.wait(sandbox);
  t.equal(adopted.state(sandbox).status, 'stopped');
  await adopted.delete(sandbox);
});

t.test('cgroup directories made ahead (prepareCgroup): create takes them over; abandonCgroup removes them', async (t) => {
  const dirsOf = (cgroupsPath: string) => [...new Set(Object.values(env.rt.cgroups.open(cgroupsPath).paths()))];
  // made ahead, then a container: it runs in them, its cpuset is usable, delete removes them
  const id = env.id('ahead');
  const out = env.output();
  const spec = env.spec(['/bin/sh', '-c', 'cat /proc/self/cgroup'], (s) => { s.linux!.resources = { pids: { limit: 42 } }; });
  const path = spec.linux!.cgroupsPath!;
  env.rt.prepareCgroup(path);
  await env.rt.run(id, { bundle: env.bundle, spec, stdio: [-1, out.fd, out.fd] });
  const rec = env.rt.load(id);
  t.equal(readFileSync(join(cgroupDirOf(rec, 'pids'), 'pids.max'), 'utf8').trim(), '42', 'resources applied in the directories made ahead');
  if (env.rt.cgroups.version === 1) {
    // cpuset.cpus/mems start empty in v1: the new chain got its parent's values
    const cs = cgroupDirOf(rec, 'cpuset');
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const want = readFileSync(join('/sys/fs/cgroup/cpuset', f), 'utf8').trim();
      t.equal(readFileSync(join(cs, f), 'utf8').trim(), want, `${f} filled in the container's cpuset`);
      t.equal(readFileSync(join(dirname(cs), f), 'utf8').trim(), want, `${f} filled in its parent`);
    }
  }
  await env.rt.wait(id);
  t.match(out.read(), new RegExp(path.split('/').pop()!), 'the init was in them');
  await env.rt.delete(id);
  t.same(dirsOf(path).filter((d) => existsSync(d)), [], 'delete removed them');
  // made ahead for nothing: abandoned
  const path2 = `${env.cgroupParent}/abandoned`;
  env.rt.prepareCgroup(path2);
  env.rt.prepareCgroup(path2); // twice: one set of directories
  await env.rt.abandonCgroup(path2);
  t.same(dirsOf(path2).filter((d) => existsSync(d)), [], 'abandonCgroup removed every directory it made');
  await env.rt.abandonCgroup(path2); // and again: nothing to do
  // made ahead, then a create that fails before the cgroup is used: nothing left
  const bad = env.spec(['/bin/true'], (s) => { s.linux!.cgroupsPath = `${env.cgroupParent}/failing`; s.root = { path: 'no-such-rootfs' }; });
  env.rt.prepareCgroup(bad.linux!.cgroupsPath!);
  await t.rejects(env.rt.run(env.id('bad'), { bundle: env.bundle, spec: bad, stdio: [-1, -1, -1] }), 'create fails');
  t.same(dirsOf(bad.linux!.cgroupsPath!).filter((d) => existsSync(d)), [], 'and the directories made ahead are gone');
});
