/**
 * `berth bench isolation` experiments for real: containers on the in-process runtime with real
 * cgroup limits on this kernel, a short window (2 s) per run, generous physical bounds (other
 * engineers load the 2 CPUs too). Then the HTML report, and nothing left behind.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runIsolationBench, parseOnly, parseDuration } from '../runtime/bench/runner.js';
import { writeHtmlReport, renderHtml } from '../runtime/bench/report-html.js';
import { formatTable } from '../runtime/bench/table.js';
import { percentile, histogram } from '../runtime/bench/stats.js';
import { devNumbers } from '../runtime/bench/experiments/blkio.js';
import type { BenchReport, ExperimentResult } from '../runtime/bench/types.js';
import { leftoversWithPrefix } from './helpers/leftovers.js';

t.setTimeout(300_000);

const benchLeftovers = (): string[] => leftoversWithPrefix('berth-bench-');

function children(): number[] {
  const me = String(process.pid);
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // The spawn zygote (runtime/linux/zygote.ts) lives as long as this process, by design.
      if (stat.includes('(berth-zygote)')) continue;
      if (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] === me) out.push(Number(p));
    } catch { /* gone */ }
  }
  return out;
}

const before = new Set(benchLeftovers());
let report: BenchReport;
const exp = (id: string): ExperimentResult => {
  const e = report.experiments.find((x) => x.id === id);
  if (!e) throw new Error(`experiment ${id} missing`);
  return e;
};

t.before(async () => {
  report = await runIsolationBench({ durationS: 2 });
});

t.test('the report says what was measured where', async (t) => {
  t.equal(report.tool, 'berth bench isolation');
  t.equal(report.host.cgroupVersion, existsSync('/sys/fs/cgroup/cgroup.controllers') && !existsSync('/sys/fs/cgroup/unified') ? 2 : 1);
  t.equal(report.durationSeconds, 2);
  t.same(report.experiments.map((e) => e.id), ['cpu-quota', 'cpu-weight', 'noisy-neighbour', 'memory', 'pids', 'blkio']);
  for (const e of report.experiments) {
    t.notOk(e.error, `${e.id} ran without error (${e.error ?? ''})`);
    t.ok(e.rows.length > 0, `${e.id} has rows`);
    for (const r of e.rows) {
      t.match(r, { name: String, asked: String, measured: String }, `${e.id} row shape`);
      t.ok(['pass', 'warn', 'fail', 'skipped'].includes(r.verdict));
    }
  }
  const total = report.experiments.reduce((n, e) => n + e.rows.length, 0);
  const s = report.summary;
  t.equal(s.pass + s.warn + s.fail + s.skipped, total, 'summary counts every row');
});

t.test('a 0.5-CPU container used about half a CPU, with throttling', async (t) => {
  const e = exp('cpu-quota');
  t.same(e.rows.map((r) => r.askedValue), [0.25, 0.5, 1, 1.5]);
  const half = e.rows.find((r) => r.askedValue === 0.5)!;
  t.ok(half.measuredValue! >= 0.35 && half.measuredValue! <= 0.65, `0.5 CPU measured ${half.measuredValue}`);
  const quarter = e.rows.find((r) => r.askedValue === 0.25)!;
  t.ok(quarter.measuredValue! >= 0.15 && quarter.measuredValue! <= 0.35, `0.25 CPU measured ${quarter.measuredValue}`);
  for (const r of e.rows) t.ok(r.measuredValue! <= r.askedValue! * 1.15, `never above its quota: ${r.name} ${r.measuredValue}`);
  const runs = e.data.runs as { throttledPeriods: number; periods: number; quotaUs: number }[];
  t.equal(runs[1].quotaUs, 50000);
  t.ok(runs[0].throttledPeriods > 0, 'the 0.25 container was throttled');
  t.equal(e.charts[0].series.length, 4, 'one CPU-over-time series per container');
  t.ok(e.charts[0].series[1].points.length >= 10, 'sampled every ~100 ms');
});

t.test('weights order the CPU split 1024 > 512 > 256', async (t) => {
  const e = exp('cpu-weight');
  const [a, b, c] = e.rows.map((r) => r.measuredValue!);
  t.ok(a > b && b > c, `split ${a} > ${b} > ${c}`);
  t.ok(Math.abs(a - 4 / 7) < 0.15, `1024 got ${a} (expected 0.571)`);
  t.ok(Math.abs(a + b + c - 1) < 0.01);
});

t.test('a noisy neighbour slows the victim, a quota on it helps', async (t) => {
  const e = exp('noisy-neighbour');
  const phases = e.data.phases as { iterations: number; p50Ms: number; p99Ms: number; meanMs: number; slowdown: number; hogCpus: number; victimCpus: number }[];
  t.equal(phases.length, 3);
  for (const p of phases) {
    t.ok(p.iterations >= 20, `enough iterations (${p.iterations})`);
    t.ok(p.p99Ms >= p.p50Ms);
  }
  // > 1.1, not more: when the VM's host is loaded the victim's baseline is slow already and the
  // ratio shrinks (1.18 seen once in a full run); the CPU taken is asserted below
  t.ok(phases[1].slowdown > 1.1 && phases[1].slowdown < 3.5, `hog without quota: ${phases[1].slowdown}x`);
  t.ok(phases[1].hogCpus > 0.25, `unlimited hog took its share (${phases[1].hogCpus})`);
  t.ok(phases[2].hogCpus <= 0.25 * 1.15, `hog held to its 0.25 quota (${phases[2].hogCpus})`);
  t.ok(phases[0].victimCpus > phases[1].victimCpus, 'the hog took CPU from the victim');
  t.ok(e.charts.some((c) => c.kind === 'histogram' && c.series.length === 3), 'latency distributions per phase');
});

t.test('the memory limit OOM-kills within 10% of the limit, without swap', async (t) => {
  const e = exp('memory');
  const d = e.data as { limitBytes: number; maxUsageBytes: number; oomKilled: boolean; oomKills: number; exitSignal: number; survived: boolean; swapUsedBytes: number };
  t.equal(d.limitBytes, 64 * 1024 * 1024);
  t.ok(d.maxUsageBytes >= 0.9 * d.limitBytes && d.maxUsageBytes <= 1.1 * d.limitBytes, `peak ${d.maxUsageBytes}`);
  t.equal(d.oomKilled, true, 'reported as OOM-killed');
  t.ok(d.oomKills >= 1, 'cgroup counted the OOM kill');
  t.equal(d.exitSignal, 9);
  t.equal(d.survived, false);
  t.equal(d.swapUsedBytes, 0);
  t.equal(e.rows[0].verdict, 'pass');
});

t.test('the pids limit holds and the host can still fork', async (t) => {
  const e = exp('pids');
  const d = e.data as { limit: number; peak: number; hostForkOk: boolean; forkFailures: number | null };
  t.equal(d.limit, 32);
  t.ok(d.peak <= d.limit, `peak ${d.peak} <= ${d.limit}`);
  t.ok(d.peak >= d.limit - 2, `limit reached (${d.peak})`);
  t.equal(d.hostForkOk, true);
  t.ok(d.forkFailures === null || d.forkFailures > 0, 'the kernel refused forks');
});

t.test('block I/O is throttled to the limit, or skipped with a reason', async (t) => {
  const e = exp('blkio');
  if (e.skipped) {
    t.match(e.skipped, /\w/);
    t.equal(e.rows[0].verdict, 'skipped');
    return;
  }
  const d = e.data as { limitBps: number; measuredBps: number };
  t.ok(d.measuredBps <= d.limitBps * 1.25 && d.measuredBps >= d.limitBps * 0.5, `write ${d.measuredBps} B/s vs limit ${d.limitBps}`);
});

t.test('table and HTML report', async (t) => {
  const table = formatTable(report);
  t.match(table, /cgroup v[12]/);
  t.match(table, /EXPERIMENT +MEASUREMENT +ASKED +MEASURED +ERROR +VERDICT/);
  t.match(table, /cpu-quota +cpus=0\.5 +0\.50 CPU/);
  const dir = mkdtempSync(join(tmpdir(), 'berth-benchtest-report-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = writeHtmlReport(report, join(dir, 'out'));
  t.equal(file, join(dir, 'out', 'index.html'));
  const html = readFileSync(file, 'utf8');
  t.match(html, /<svg/);
  t.ok((html.match(/<svg/g) ?? []).length >= 6, 'a chart per experiment at least');
  t.notMatch(html, /https?:\/\//, 'no external references');
  t.notMatch(html, /<script|<link|src=/, 'nothing loaded from anywhere');
  t.match(html, /cgroup <b>v[12]<\/b>/);
  t.match(renderHtml({ ...report, rootfs: '<x>' }), /&lt;x&gt;/, 'text is escaped');
});

t.test('helpers and option parsing', async (t) => {
  t.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  t.equal(percentile([1, 2, 3, 4, 100], 99), 100);
  t.same(histogram([0, 1, 2, 3], 2, 0, 4).map((p) => p.v), [2, 2]);
  t.same(devNumbers(0xfe00), { major: 254, minor: 0 });
  t.same(devNumbers(0x803), { major: 8, minor: 3 });
  t.same(parseOnly('pids, cpu-quota'), ['cpu-quota', 'pids'], 'canonical order');
  t.throws(() => parseOnly('cpu'), /unknown experiment "cpu"; choose from cpu-quota/);
  t.throws(() => parseDuration('abc'), /--duration must be a number of seconds/);
  t.throws(() => parseDuration('0'), /from 0.5 to 600/);
});

t.test('nothing is left behind', async (t) => {
  const now = benchLeftovers().filter((x) => !before.has(x));
  t.same(now, [], 'no cgroups, temp dirs or mounts');
  t.same(children(), [], 'no child processes');
});
