/** Shared helpers for `npm run bench`: timing, medians, a table printer, and command runners. */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export async function timeIt(n: number, fn: (i: number) => Promise<void> | void, warmup = 2): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    out.push(performance.now() - t0);
  }
  return out;
}

/** Environment for child CLIs: without NODE_EXTRA_CA_CERTS, as users' nodes run (TEST-ENVIRONMENT.md). */
export function cliEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv(), ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${String(r.stderr ?? '').trim()}`);
}

export function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export interface Row { name: string; samples: number[]; note?: string }

export function printTable(title: string, rows: Row[], baseline?: string): void {
  const base = rows.find((r) => r.name === baseline);
  console.log(`\n${title}`);
  const header = ['', 'median ms', 'p90 ms', 'min ms', 'runs', baseline ? `vs ${baseline}` : ''];
  const lines = rows.map((r) => {
    if (r.samples.length === 0) return [r.name, '-', '-', '-', '0', r.note ?? 'not run'];
    const med = median(r.samples);
    const ratio = base && base.samples.length ? `${(median(base.samples) / med).toFixed(2)}× faster` : '';
    return [r.name, med.toFixed(2), percentile(r.samples, 90).toFixed(2), Math.min(...r.samples).toFixed(2), String(r.samples.length), r.note ?? ratio];
  });
  const all = [header, ...lines];
  const w = header.map((_, i) => Math.max(...all.map((l) => l[i].length)));
  for (const l of all) console.log(l.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  '));
}
