/**
 * `npm run bench -- lifecycle`: create+start+wait+delete of /bin/true on one prepared bundle,
 * side by side: berth's in-process API, `berth-oci run`, `runc run`, and crun through the
 * wrapper TEST-ENVIRONMENT.md describes (crun refuses this hybrid cgroup layout otherwise).
 */
import { mkdtempSync, rmSync, writeFileSync, readdirSync, rmdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { populateBusybox } from '../fixtures/rootfs.js';
import { defaultSpec } from '../../runtime/oci/default-spec.js';
import { Runtime } from '../../runtime/oci/runtime.js';
import { timeIt, run, which, printTable, type Row } from './util.js';

const BERTH_OCI = join(import.meta.dirname, '..', '..', 'bin', 'berth-oci.js');

export async function benchLifecycle(n = 50): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-lifecycle-'));
  const rootfs = join(dir, 'rootfs');
  populateBusybox(rootfs);
  const spec = defaultSpec({ args: ['/bin/true'], terminal: false });
  spec.ociVersion = '1.0.2'; // crun 1.8.1 refuses newer versions
  spec.linux!.cgroupsPath = '/berth-bench/lifecycle';
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  const state = (name: string) => join(dir, `state-${name}`);
  const rt = new Runtime({ root: state('inproc'), warn: () => {} });
  // One run of each contender per round, the order rotating, so the load others put on this
  // shared machine falls on all of them alike (sequential blocks of 50 skewed the ratios).
  const contenders: { name: string; note?: string; run?: (i: number) => Promise<void> | void }[] = [
    {
      name: 'berth in-process',
      run: async (i) => {
        const id = `b${i + 10}`;
        await rt.run(id, { bundle: dir, spec, stdio: [-1, -1, -1] });
        await rt.wait(id);
        await rt.delete(id);
      },
    },
    { name: 'berth-oci run', run: (i) => run(process.execPath, [BERTH_OCI, '--root', state('cli'), 'run', '--bundle', dir, `c${i + 10}`]) },
    which('runc')
      ? { name: 'runc run', run: (i) => run('runc', ['--root', state('runc'), 'run', '--bundle', dir, `r${i + 10}`]) }
      : { name: 'runc run', note: 'runc not installed' },
    which('crun')
      ? { name: 'crun run', run: (i) => run('unshare', ['-m', 'sh', '-c', 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"', 'crun', '--root', state('crun'), 'run', '--bundle', dir, `k${i + 10}`]) }
      : { name: 'crun run', note: 'crun not installed' },
  ];
  const samples = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  const rows: Row[] = [];
  try {
    const active = contenders.filter((c) => c.run);
    for (const c of active) for (let w = 0; w < 2; w++) await c.run!(-1 - w);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < active.length; k++) {
        const c = active[(i + k) % active.length];
        samples.get(c.name)!.push((await timeIt(1, () => c.run!(i), 0))[0]);
      }
    }
    for (const c of contenders) rows.push({ name: c.name, samples: samples.get(c.name)!, note: c.note });
    printTable(`lifecycle: create+start+wait+delete of /bin/true, ${n} rounds, contenders interleaved`, rows, 'crun run');
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const h of readdirSync('/sys/fs/cgroup')) {
      const p = `/sys/fs/cgroup/${h}/berth-bench`;
      if (existsSync(p)) {
        for (const c of readdirSync(p, { withFileTypes: true })) if (c.isDirectory()) { try { rmdirSync(join(p, c.name)); } catch { /* busy */ } }
        try { rmdirSync(p); } catch { /* busy */ }
      }
    }
  }
}
