/**
 * `berth bench isolation` through the berth CLI entry: --json structure with --only, bad
 * options and a missing image fail clearly, and Ctrl-C (SIGINT) mid-run cleans up and exits 130.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { leftoversWithPrefix } from './helpers/leftovers.js';

t.setTimeout(180_000);

const ENTRY = ['--import', 'tsx', 'runtime/cli/berth-main.ts'];

function berth(args: string[], opts: { onStderr?: (s: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...ENTRY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); opts.onStderr?.(stderr, child); });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const benchLeftovers = (): string[] => leftoversWithPrefix('berth-bench-');
const before = new Set(benchLeftovers());
const leaked = () => benchLeftovers().filter((x) => !before.has(x));

t.test('--json prints one document with the selected experiment', async (t) => {
  const r = await berth(['bench', 'isolation', '--duration', '1', '--json', '--only', 'cpu-quota']);
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as Record<string, unknown> & { experiments: { id: string; rows: { askedValue: number; measuredValue: number; verdict: string; errorPct: number }[]; charts: unknown[] }[]; host: { cgroupVersion: number }; summary: Record<string, number> };
  t.equal(doc.tool, 'berth bench isolation');
  t.ok(doc.host.cgroupVersion === 1 || doc.host.cgroupVersion === 2);
  t.equal(doc.durationSeconds, 1);
  t.same(doc.experiments.map((e) => e.id), ['cpu-quota']);
  const rows = doc.experiments[0].rows;
  t.same(rows.map((x) => x.askedValue), [0.25, 0.5, 1, 1.5]);
  for (const x of rows) {
    t.type(x.measuredValue, 'number');
    t.type(x.errorPct, 'number');
    t.ok(['pass', 'warn', 'fail'].includes(x.verdict));
  }
  const half = rows[1].measuredValue;
  t.ok(half >= 0.35 && half <= 0.65, `0.5 CPU measured ${half}`);
  t.ok(doc.experiments[0].charts.length >= 1);
  t.same(Object.keys(doc.summary).sort(), ['fail', 'pass', 'skipped', 'warn']);
  t.same(leaked(), []);
});

t.test('the table and --report, on a quick experiment', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-benchtest-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await berth(['bench', 'isolation', '--duration', '1', '--only', 'pids', '--report', dir]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /cgroup v[12]/);
  t.match(r.stdout, /pids +pids\.max=32 +32 pids/);
  t.match(r.stdout, /host fork at limit/);
  t.match(r.stderr, /report: .*index\.html/);
  const html = readFileSync(join(dir, 'index.html'), 'utf8');
  t.match(html, /<svg/);
  t.notMatch(html, /https?:\/\//);
  t.same(leaked(), []);
});

t.test('bad options and a missing image are clear errors', async (t) => {
  const a = await berth(['bench', 'isolation', '--only', 'cpu']);
  t.equal(a.code, 1);
  t.match(a.stderr, /berth: unknown experiment "cpu"; choose from cpu-quota, cpu-weight/);
  const b = await berth(['bench', 'isolation', '--duration', 'soon']);
  t.equal(b.code, 1);
  t.match(b.stderr, /--duration must be a number of seconds/);
  const store = mkdtempSync(join(tmpdir(), 'berth-benchtest-store-'));
  t.teardown(() => rmSync(store, { recursive: true, force: true }));
  const c = await berth(['--root', store, 'bench', 'isolation', '--image', 'nosuch/image:1', '--only', 'pids']);
  t.equal(c.code, 1);
  t.match(c.stderr, /berth: image nosuch\/image:1 is not in the store at .*: run `berth pull nosuch\/image:1` first/);
  t.same(leaked(), []);
});

t.test('SIGINT mid-run cleans up and exits 130', async (t) => {
  let sent = false;
  const r = await berth(['bench', 'isolation', '--duration', '5', '--only', 'cpu-weight'], {
    onStderr: (s, child) => {
      if (!sent && /cpu-weight: shares/.test(s)) {
        sent = true;
        // Let the containers start, then interrupt.
        setTimeout(() => child.kill('SIGINT'), 1500);
      }
    },
  });
  t.ok(sent, 'the run started');
  t.equal(r.code, 130, r.stderr);
  t.match(r.stderr, /SIGINT, cleaning up/);
  t.same(leaked(), [], 'no cgroups, temp dirs or mounts left');
});
