/**
 * /etc/hosts on a network follows its members: a container started on it gets an entry for every
 * running peer and every peer gets one for it; a peer that stops or is removed disappears from
 * the others' files (its address may be handed to the next container). Real registry, real CNI
 * bridge, CLI from source, own root/state/cgroup parent/bridge; nothing is left behind.
 */
import t from 'tap';
import { engineCliEnv } from './helpers/engine-cli.js';

t.setTimeout(300000);

const ce = engineCliEnv('hosts');
const { berth } = ce;
let IMG = '';
t.before(async () => { IMG = await ce.setup(); });
t.teardown(() => ce.teardown());


const hostsOf = async (name: string): Promise<string> => {
  const r = await berth(['exec', name, 'cat', '/etc/hosts']);
  if (r.code !== 0) throw new Error(`exec ${name}: ${r.stderr}`);
  return r.stdout;
};
const ipOf = async (name: string): Promise<string> => {
  const r = await berth(['inspect', name]);
  const doc = JSON.parse(r.stdout) as Array<{ NetworkSettings: { IPAddress: string } }>;
  return doc[0].NetworkSettings.IPAddress;
};
const has = (hosts: string, ip: string, name: string): boolean => hosts.split('\n').some((l) => l.split(/\s+/)[0] === ip && l.split(/\s+/).includes(name));

t.test('peers appear in the /etc/hosts of the others and leave it when they stop or are removed', async (t) => {
  for (const n of ['ha', 'hb', 'hc']) {
    const r = await berth(['run', '-d', '--name', n, IMG, 'sleep', '1000']);
    t.equal(r.code, 0, r.stderr);
  }
  const ip = { ha: await ipOf('ha'), hb: await ipOf('hb'), hc: await ipOf('hc') };
  t.ok(Object.values(ip).every((x) => /^\d+\.\d+\.\d+\.\d+$/.test(x)), JSON.stringify(ip));
  let a = await hostsOf('ha');
  t.ok(has(a, ip.hb, 'hb') && has(a, ip.hc, 'hc'), 'ha sees hb and hc');
  t.ok(has(await hostsOf('hc'), ip.ha, 'ha'), 'hc sees ha (added when ha was already running)');

  t.equal((await berth(['rm', '-f', 'hb'])).code, 0);
  a = await hostsOf('ha');
  t.notOk(a.includes('hb'), 'hb is gone from ha after rm -f');
  t.ok(has(a, ip.hc, 'hc'), 'hc is still there');
  t.notOk((await hostsOf('hc')).includes('hb'), 'and from hc');

  t.equal((await berth(['stop', '-t', '0', 'hc'])).code, 0);
  a = await hostsOf('ha');
  t.notOk(a.includes('hc'), 'a stopped peer is gone too');
  t.ok(has(a, ip.ha, 'ha'), 'ha keeps its own entry');

  t.equal((await berth(['start', 'hc'])).code, 0);
  const back = await ipOf('hc');
  t.ok(has(await hostsOf('ha'), back, 'hc'), 'a restarted peer comes back with its address');
  t.equal((await berth(['rm', '-f', 'ha', 'hc'])).code, 0);
});
