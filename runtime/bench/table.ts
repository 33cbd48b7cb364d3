/** The terminal table: one line per measurement (experiment, name, asked, measured, error, verdict). */
import { fmtPct } from './stats.js';
import type { BenchReport } from './types.js';

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

/** Plain-text table of a report, with a header line naming the host and cgroup version. */
export function formatTable(report: BenchReport, opts: { details?: boolean } = {}): string {
  const head = ['EXPERIMENT', 'MEASUREMENT', 'ASKED', 'MEASURED', 'ERROR', 'VERDICT'];
  const lines: string[][] = [];
  const notes: string[] = [];
  for (const e of report.experiments) {
    if (e.error) {
      lines.push([e.id, '-', '-', '-', '-', 'FAIL']);
      notes.push(`${e.id}: error: ${e.error}`);
      continue;
    }
    for (const r of e.rows) {
      lines.push([e.id, r.name, r.asked, r.measured, fmtPct(r.errorPct), r.verdict.toUpperCase()]);
      if (opts.details !== false && r.detail) notes.push(`${e.id} ${r.name}: ${r.detail}`);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (l: string[]) => l.map((c, i) => (i === l.length - 1 ? c : pad(c, widths[i]))).join('  ');
  const s = report.summary;
  const out = [
    `berth bench isolation — cgroup v${report.host.cgroupVersion}, kernel ${report.host.kernel}, ${report.host.cpus} CPUs, rootfs ${report.rootfs}, ${report.durationSeconds} s per run`,
    '',
    fmt(head),
    ...lines.map(fmt),
    '',
    `${s.pass} pass, ${s.warn} warn, ${s.fail} fail, ${s.skipped} skipped`,
  ];
  if (notes.length) out.push('', ...notes.map((n) => `  ${n}`));
  return out.join('\n') + '\n';
}
