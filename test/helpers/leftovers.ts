/**
 * What berth-made things exist on this machine now: mounts, cgroups, veths, netns files and
 * processes. test/000-baseline.test.ts records it before the suite; test/zzz-nothing-left.test.ts
 * checks that the suite added nothing (so a developer's own containers don't fail CI).
 */
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';

function findBerthCgroups(dir: string, depth: number, out: string[]): void {
  if (depth === 0) return;
  let entries: string[] = [];
  try { entries = readdirSync(dir); } catch { return; }
  for (const e of entries) {
    const p = join(dir, e);
    try { if (!statSync(p).isDirectory()) continue; } catch { continue; }
    if (/berth/i.test(e)) out.push(p);
    else findBerthCgroups(p, depth - 1, out);
  }
}

export interface Leftovers { mounts: string[]; cgroups: string[]; veths: string[]; netns: string[]; procs: string[] }

export function leftovers(): Leftovers {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => /berth/.test(l)).map((l) => l.split(' ')[4]);
  const cgroups: string[] = [];
  for (const h of readdirSync('/sys/fs/cgroup')) findBerthCgroups(join('/sys/fs/cgroup', h), 4, cgroups);
  const veths = execFileSync('ip', ['-o', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.split(':')[1].trim().split('@')[0]);
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  const procs = execFileSync('ps', ['-eo', 'pid,stat,args'], { encoding: 'utf8' }).split('\n')
    .filter((l) => /berth-monitor|docker-registry|berth-oci|berth-zygote/.test(l) && !/ Z/.test(l) && !/ps -eo|\btap\b|\.test\.ts/.test(l))
    .map((l) => l.trim().replace(/^\d+\s+\S+\s+/, ''));
  return { mounts, cgroups, veths, netns, procs };
}

/** One file per tap run (the runner is every test file's parent). */
export const BASELINE_FILE = join(tmpdir(), `berth-test-baseline-${process.ppid}.json`);

export function baseline(): Leftovers {
  try {
    return JSON.parse(readFileSync(BASELINE_FILE, 'utf8')) as Leftovers;
  } catch {
    return { mounts: [], cgroups: [], veths: [], netns: [], procs: [] };
  }
}

/**
 * Names starting with prefix present now: cgroup directories one level below each v1 hierarchy
 * (or at the root of a pure v2 mount), temp dirs, mount points.
 */
export function leftoversWithPrefix(prefix: string): string[] {
  const out: string[] = [];
  for (const h of readdirSync('/sys/fs/cgroup')) {
    if (h.startsWith(prefix)) out.push(`cgroup ${h}`); // pure v2: parents sit at the root
    let names: string[] = [];
    try { names = readdirSync(join('/sys/fs/cgroup', h)); } catch { continue; }
    for (const n of names) if (n.startsWith(prefix)) out.push(`cgroup ${h}/${n}`);
  }
  for (const n of readdirSync(tmpdir())) if (n.startsWith(prefix)) out.push(`tmp ${n}`);
  for (const l of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) if (l.includes(prefix)) out.push(`mount ${l}`);
  return out;
}
