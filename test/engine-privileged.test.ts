/**
 * `--privileged` device nodes: hostDevices() lists what `find /dev` sees (minus what Docker
 * skips), and a real container given them (with the allow-all cgroup rule) has the same nodes,
 * same numbers, and can read a host block device.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { devMajorMinor, hostDevices } from '../runtime/engine/host-devices.js';
import { makeEnv } from './helpers/oci.js';

t.test('devMajorMinor decodes dev_t like glibc', async (t) => {
  t.same(devMajorMinor(0x0103n), { major: 1, minor: 3 }); // /dev/null
  t.same(devMajorMinor((259n << 8n) | 5n), { major: 259, minor: 5 });
  // large minor (> 255): minor's high bits live above the major's low 12 bits
  t.same(devMajorMinor(((0x12345n & ~0xffn) << 12n) | (0x45n) | (8n << 8n)), { major: 8, minor: 0x12345 });
});

t.test('hostDevices matches find(1) on /dev, minus pts/shm/mqueue/fd and console', async (t) => {
  const found = execFileSync('find', ['/dev', '(', '-path', '/dev/pts', '-o', '-path', '/dev/shm', '-o', '-path', '/dev/mqueue', '-o', '-path', '/dev/fd', ')', '-prune', '-o', '(', '-type', 'c', '-o', '-type', 'b', ')', '-printf', '%p %Y %M\\n'], { encoding: 'utf8' })
    .split('\n').filter(Boolean).map((l) => l.split(' ')).filter(([p]) => p !== '/dev/console');
  const devs = hostDevices();
  t.same(devs.map((d) => d.path).sort(), found.map(([p]) => p).sort());
  const stats = execFileSync('stat', ['-c', '%n %t %T %a %u %g', ...devs.map((d) => d.path)], { encoding: 'utf8' }).trim().split('\n');
  for (const line of stats) {
    const [p, maj, min, mode, uid, gid] = line.split(' ');
    const d = devs.find((x) => x.path === p)!;
    if (d.major !== parseInt(maj, 16) || d.minor !== parseInt(min, 16) || d.fileMode !== parseInt(mode, 8) || d.uid !== Number(uid) || d.gid !== Number(gid)) {
      t.fail(`${p}: ${JSON.stringify(d)} vs stat ${line}`);
    }
  }
  t.ok(devs.some((d) => d.path === '/dev/null' && d.type === 'c' && d.major === 1 && d.minor === 3));
  t.notOk(devs.some((d) => d.path.startsWith('/dev/pts/')), 'no host ptys');
});

t.test('a container given the host devices sees them and can open a host block device', async (t) => {
  const env = makeEnv();
  t.teardown(() => env.cleanup());
  const devs = hostDevices();
  // A block device this host lets root open (some VMs refuse their disks even to root).
  const blk = devs.filter((d) => d.type === 'b').find((d) => {
    try { closeSync(openSync(d.path, 'r')); return true; } catch { return false; }
  });
  t.ok(blk, `a host block device root can open: ${blk?.path}`);
  if (!blk) return;
  const out = env.output();
  const id = env.id();
  const spec = env.spec(['/bin/sh', '-c', `stat -c '%t %T %a' ${blk.path}; head -c 1 ${blk.path} >/dev/null && echo opened; ls /dev | wc -l`], (s) => {
    s.linux!.devices = devs;
    s.linux!.resources = { ...s.linux!.resources, devices: [{ allow: true, access: 'rwm' }] };
  });
  await env.rt.run(id, { bundle: env.bundle, spec, stdio: [-1, out.fd, out.fd] });
  const ex = await env.rt.wait(id);
  await env.rt.delete(id, true);
  t.equal(ex.exitCode, 0, out.read());
  const [st, opened, count] = out.read().trim().split('\n');
  t.equal(st, `${blk.major!.toString(16)} ${blk.minor!.toString(16)} ${blk.fileMode!.toString(8)}`, 'same numbers and mode as the host node');
  t.equal(opened, 'opened', 'the host block device opens');
  t.ok(Number(count) >= new Set(devs.map((d) => d.path.split('/')[2])).size, `every host node is there (${count} entries in /dev)`);

  // Without them (the default), the same open fails: the node is not there.
  const out2 = env.output();
  const id2 = env.id();
  await env.rt.run(id2, { bundle: env.bundle, spec: env.spec(['/bin/sh', '-c', `head -c 1 ${blk.path}`]), stdio: [-1, out2.fd, out2.fd] });
  const ex2 = await env.rt.wait(id2);
  await env.rt.delete(id2, true);
  t.not(ex2.exitCode, 0, out2.read().trim());
});
