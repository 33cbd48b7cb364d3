/**
 * Helpers for runtime tests: a bundle with a busybox rootfs and a spec derived from the runc
 * template, each with its own state root and cgroup parent, all removed in teardown.
 */
import { mkdtempSync, rmSync, rmdirSync, writeFileSync, openSync, closeSync, readFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeBundleDir } from '../fixtures/rootfs.js';
import { defaultSpec } from '../../runtime/oci/default-spec.js';
import type { Spec } from '../../runtime/oci/spec.js';
import { Runtime } from '../../runtime/oci/runtime.js';

export interface TestEnv {
  root: string;
  bundle: string;
  rootfs: string;
  cgroupParent: string;
  rt: Runtime;
  spec(args: string[], mutate?: (s: Spec) => void): Spec;
  /** A fresh output file to pass as stdout/stderr; read() returns what was written. */
  output(): { fd: number; read(): string; path: string };
  id(prefix?: string): string;
  cleanup(): Promise<void>;
}

export function makeEnv(): TestEnv {
  const b = makeBundleDir('berth-oci-test-');
  const root = mkdtempSync(join(tmpdir(), 'berth-oci-state-'));
  const suffix = randomBytes(4).toString('hex');
  const cgroupParent = `/berth-test-${suffix}`;
  const rt = new Runtime({ root, warn: () => {} });
  const fds: number[] = [];
  let n = 0;
  return {
    root, bundle: b.dir, rootfs: b.rootfs, cgroupParent, rt,
    id: (prefix = 'c') => `${prefix}-${suffix}-${n++}`,
    spec(args, mutate) {
      const s = defaultSpec({ args, terminal: false });
      s.root = { path: 'rootfs', readonly: false };
      s.hostname = 'berth-test';
      s.linux!.cgroupsPath = `${cgroupParent}/${randomBytes(3).toString('hex')}`;
      if (mutate) mutate(s);
      return s;
    },
    output() {
      const path = join(b.dir, `out-${n++}.txt`);
      writeFileSync(path, '');
      const fd = openSync(path, 'a');
      fds.push(fd);
      return { fd, path, read: () => readFileSync(path, 'utf8') };
    },
    async cleanup() {
      for (const { record } of rt.list()) await rt.delete(record.id, true).catch(() => {});
      for (const fd of fds) { try { closeSync(fd); } catch { /* closed */ } }
      // Remove the per-test cgroup parent in every hierarchy (deepest first).
      // v1: one tree per hierarchy; v2 (pure unified host): the parent sits at the root.
      for (const h of readdirSync('/sys/fs/cgroup')) removeCgroupTree(`/sys/fs/cgroup/${h}${cgroupParent}`);
      removeCgroupTree(`/sys/fs/cgroup${cgroupParent}`);
      rmSync(root, { recursive: true, force: true });
      b.cleanup();
    },
  };
}

export function writeSpec(bundle: string, spec: Spec): void {
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
}

/**
 * The directory of a container's cgroup that holds `controller`: on v1 the hierarchy whose key
 * names it (e.g. 'cpu,cpuacct'), on v2 the one unified directory.
 */
export function cgroupDirOf(rec: { cgroupPaths: Record<string, string>; cgroupVersion: 1 | 2 }, controller: string): string {
  if (rec.cgroupVersion === 2) return Object.values(rec.cgroupPaths)[0];
  const hit = Object.entries(rec.cgroupPaths).find(([k]) => k.split(',').includes(controller));
  if (!hit) throw new Error(`no ${controller} hierarchy in ${JSON.stringify(rec.cgroupPaths)}`);
  return hit[1];
}

/** rmdir a cgroup directory and its children, deepest first (cgroupfs refuses recursive rm). */
export function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    try { if (statSync(p).isDirectory()) removeCgroupTree(p); } catch { /* gone */ }
  }
  try { rmdirSync(dir); } catch { /* busy: the leak check at the end will say so */ }
}
