/**
 * What the spawn zygote does for Runtime.create beyond cloning (native/spawn.c):
 * - its spare network namespace (berth-zygote --spare-netns): an init that asks for a new netns
 *   gets one of its own that nobody else has or had (fresh: only lo), one without a network
 *   namespace stays in the host's, and one that joins a netns by path ends up there, whatever
 *   spare the zygote holds at the time;
 * - the exec fifo it makes (createExecFifo) has mode 0622 whatever our umask, through the zygote
 *   and without it, so an init running as any user can take the start signal.
 */
import t from 'tap';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Runtime } from '../runtime/oci/runtime.js';
import type { Spec } from '../runtime/oci/spec.js';
import { makeEnv, type TestEnv } from './helpers/oci.js';

t.setTimeout(120_000);
let env: TestEnv;
t.before(() => { env = makeEnv(); });
t.teardown(async () => { await env.cleanup(); });

const netnsOf = (pid: number | string) => statSync(`/proc/${pid}/ns/net`).ino;

/** Create (not start) a container; its init waits at the exec fifo, in its final namespaces. */
async function created(mutate?: Parameters<TestEnv['spec']>[1]): Promise<{ id: string; pid: number }> {
  const id = env.id('netns');
  const { record } = await env.rt.create(id, { bundle: env.bundle, spec: env.spec(['/bin/true'], mutate), stdio: [-1, -1, -1] });
  return { id, pid: record.pid };
}

t.test('each init that asks for a network namespace gets a fresh one of its own', async (t) => {
  const host = netnsOf('self');
  const inits = [];
  for (let i = 0; i < 4; i++) inits.push(await created());
  const seen = new Set<number>();
  for (const { pid } of inits) {
    const ns = netnsOf(pid);
    t.not(ns, host, 'not the host netns');
    t.notOk(seen.has(ns), 'not shared with another container');
    seen.add(ns);
    const devs = readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').slice(2).filter(Boolean).map((l) => l.split(':')[0].trim());
    t.same(devs, ['lo'], 'only lo, as in a new netns');
  }
  for (const { id } of inits) await env.rt.delete(id, true);
});

t.test('an init without a network namespace stays in the host netns, also after spares were made', async (t) => {
  const host = netnsOf('self');
  const a = await created(); // makes the zygote keep a spare from now on
  const b = await created((s) => { s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'network'); });
  t.equal(netnsOf(b.pid), host);
  const c = await created();
  t.not(netnsOf(c.pid), host);
  t.not(netnsOf(c.pid), netnsOf(a.pid));
  for (const { id } of [a, b, c]) await env.rt.delete(id, true);
});

t.test('an init that joins a netns by path is in that netns', async (t) => {
  const a = await created();
  const b = await created((s) => {
    s.linux!.namespaces = s.linux!.namespaces!.map((n) => (n.type === 'network' ? { type: 'network', path: `/proc/${a.pid}/ns/net` } : n));
  });
  t.equal(netnsOf(b.pid), netnsOf(a.pid));
  const c = await created();
  t.not(netnsOf(c.pid), netnsOf(a.pid), 'the next new netns is not the joined one');
  for (const { id } of [b, a, c]) await env.rt.delete(id, true);
});

t.test('the exec fifo is 0622 under a restrictive umask, with and without the zygote and a user namespace, and a non-root init starts', async (t) => {
  const old = process.umask(0o077);
  t.teardown(() => { process.umask(old); });
  chmodSync(env.bundle, 0o755); // mkdtemp made it 0700: the mapped root (uid 200000) must reach the rootfs
  const userns = (s: Spec) => {
    s.linux!.namespaces!.push({ type: 'user' });
    s.linux!.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
    s.linux!.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
  };
  for (const zygote of [true, false]) {
    for (const withUserns of [false, true]) {
      const what = `zygote=${zygote} userns=${withUserns}`;
      const rt = new Runtime({ root: env.root, warn: () => {}, zygote });
      const id = env.id(zygote ? 'fifo-z' : 'fifo-d');
      await rt.create(id, {
        bundle: env.bundle, stdio: [-1, -1, -1],
        spec: env.spec(['/bin/true'], (s) => { s.process!.user = { uid: 1000, gid: 1000 }; if (withUserns) userns(s); }),
      });
      t.equal(statSync(join(env.root, id, 'exec.fifo')).mode & 0o7777, 0o622, what);
      await rt.start(id);
      t.equal((await rt.wait(id)).exitCode, 0, `${what}: the uid 1000 init took the start signal and ran`);
      await rt.delete(id);
    }
  }
});

t.test('the init starts with every signal at its default and none blocked, through the zygote', async (t) => {
  const out = env.output();
  const id = env.id('sig');
  // A process that ignores SIGPIPE (as berth-zygote does) must not pass that on to the container.
  await env.rt.run(id, { bundle: env.bundle, spec: env.spec(['/bin/grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status']), stdio: [-1, out.fd, out.fd] });
  t.equal((await env.rt.wait(id)).exitCode, 0);
  await env.rt.delete(id);
  t.match(out.read(), /SigBlk:\s+0+\n/);
  t.match(out.read(), /SigIgn:\s+0+\n/);
});
