/**
 * The HTML report: one self-contained index.html (inline CSS and SVG, no scripts, no external
 * resources), with the results table, each experiment's method, and its charts: line charts of
 * a value over time (CPU per container, memory, pids, write bandwidth) and histograms (latency
 * distributions). Opens offline in any browser.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmtPct } from './stats.js';
import type { BenchReport, Chart } from './types.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A "nice" axis maximum and tick step for values up to max. */
function niceScale(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}

const fmtTick = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString());

/** One chart as an inline <svg>. */
export function chartSvg(chart: Chart, width = 720, height = 300): string {
  const m = { l: 56, r: 16, t: 28, b: 44 };
  const w = width - m.l - m.r;
  const h = height - m.t - m.b;
  const pts = chart.series.flatMap((s) => s.points);
  const xmin = pts.length ? Math.min(...pts.map((p) => p.t)) : 0;
  const xmaxRaw = pts.length ? Math.max(...pts.map((p) => p.t)) : 1;
  const ymaxRaw = Math.max(0, ...pts.map((p) => p.v), ...(chart.refs ?? []).map((r) => r.v));
  const xs = niceScale(xmaxRaw - Math.min(0, xmin));
  const x0 = Math.min(0, xmin);
  const ys = niceScale(ymaxRaw * 1.05);
  const X = (t: number) => m.l + ((t - x0) / (xs.top || 1)) * w;
  const Y = (v: number) => m.t + h - (v / (ys.top || 1)) * h;
  const parts: string[] = [];
  parts.push(`<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(chart.title)}">`);
  parts.push(`<text x="${m.l}" y="18" class="ct">${escapeHtml(chart.title)}</text>`);
  for (let v = 0; v <= ys.top + 1e-9; v += ys.step) {
    parts.push(`<line x1="${m.l}" x2="${m.l + w}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}" class="grid"/><text x="${m.l - 6}" y="${(Y(v) + 4).toFixed(1)}" class="tick" text-anchor="end">${fmtTick(v)}</text>`);
  }
  for (let t = x0; t <= x0 + xs.top + 1e-9; t += xs.step) {
    parts.push(`<text x="${X(t).toFixed(1)}" y="${m.t + h + 16}" class="tick" text-anchor="middle">${fmtTick(t)}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + h}" class="axis"/><line x1="${m.l}" x2="${m.l + w}" y1="${m.t + h}" y2="${m.t + h}" class="axis"/>`);
  parts.push(`<text x="${m.l + w / 2}" y="${height - 6}" class="lbl" text-anchor="middle">${escapeHtml(chart.xLabel)}</text>`);
  parts.push(`<text x="14" y="${m.t + h / 2}" class="lbl" text-anchor="middle" transform="rotate(-90 14 ${m.t + h / 2})">${escapeHtml(chart.yLabel)}</text>`);
  for (const r of chart.refs ?? []) {
    parts.push(`<line x1="${m.l}" x2="${m.l + w}" y1="${Y(r.v).toFixed(1)}" y2="${Y(r.v).toFixed(1)}" class="ref"/><text x="${m.l + w - 2}" y="${(Y(r.v) - 3).toFixed(1)}" class="tick" text-anchor="end">${escapeHtml(r.label)}</text>`);
  }
  chart.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    if (s.points.length === 0) return;
    if (chart.kind === 'line') {
      const d = s.points.map((p) => `${X(p.t).toFixed(1)},${Y(p.v).toFixed(1)}`).join(' ');
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${d}"/>`);
    } else {
      // Histogram: a filled step outline per series, translucent so series overlap readably.
      const half = s.points.length > 1 ? (s.points[1].t - s.points[0].t) / 2 : 0.5;
      let d = `M${X(s.points[0].t - half).toFixed(1)},${Y(0).toFixed(1)}`;
      for (const p of s.points) d += ` L${X(p.t - half).toFixed(1)},${Y(p.v).toFixed(1)} L${X(p.t + half).toFixed(1)},${Y(p.v).toFixed(1)}`;
      d += ` L${X(s.points[s.points.length - 1].t + half).toFixed(1)},${Y(0).toFixed(1)} Z`;
      parts.push(`<path d="${d}" fill="${color}" fill-opacity="0.25" stroke="${color}" stroke-width="1.2"/>`);
    }
    const ly = m.t + 4 + i * 16;
    parts.push(`<rect x="${m.l + 10}" y="${ly}" width="10" height="10" fill="${color}"/><text x="${m.l + 26}" y="${ly + 9}" class="tick">${escapeHtml(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.pass{color:#17803d;font-weight:600}.warn{color:#b26b00;font-weight:600}.fail{color:#c0162b;font-weight:600}.skipped{color:#777}
.ct{font-size:13px;font-weight:600}.tick{font-size:11px;fill:#444}.lbl{font-size:12px;fill:#222}
.grid{stroke:#e6e6e6}.axis{stroke:#888}.ref{stroke:#555;stroke-dasharray:4 3}section{margin:2em 0}.method{color:#555}
code{background:#f5f5f5;padding:0 3px}`;

/** The report as a complete HTML document. */
export function renderHtml(report: BenchReport): string {
  const rows = report.experiments.flatMap((e) =>
    e.error
      ? [`<tr><td>${escapeHtml(e.id)}</td><td colspan="4">error: ${escapeHtml(e.error)}</td><td class="fail">FAIL</td></tr>`]
      : e.rows.map((r) => `<tr><td>${escapeHtml(e.id)}</td><td>${escapeHtml(r.name)}</td><td>${escapeHtml(r.asked)}</td><td title="${escapeHtml(r.detail ?? '')}">${escapeHtml(r.measured)}</td><td>${escapeHtml(fmtPct(r.errorPct))}</td><td class="${r.verdict}">${r.verdict.toUpperCase()}</td></tr>`));
  const sections = report.experiments.map((e) => {
    const details = e.rows.filter((r) => r.detail).map((r) => `<li><b>${escapeHtml(r.name)}</b>: ${escapeHtml(r.detail!)}</li>`).join('');
    return `<section id="${escapeHtml(e.id)}"><h2>${escapeHtml(e.title)}</h2>
<p class="method">${escapeHtml(e.method)}${e.skipped ? ` <b>Skipped:</b> ${escapeHtml(e.skipped)}` : ''}${e.error ? ` <b>Error:</b> ${escapeHtml(e.error)}` : ''}</p>
${details ? `<ul>${details}</ul>` : ''}
${e.charts.map((c) => `<figure>${chartSvg(c)}</figure>`).join('\n')}
</section>`;
  });
  const h = report.host;
  const s = report.summary;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>berth bench isolation</title><style>${CSS}</style></head>
<body><h1>berth bench isolation</h1>
<p>cgroup <b>v${h.cgroupVersion}</b> · kernel ${escapeHtml(h.kernel)} · ${h.cpus} CPUs · load average at start ${h.loadavg.join(' ')} · rootfs ${escapeHtml(report.rootfs)} · ${report.durationSeconds} s per run · ${escapeHtml(report.startedAt)}</p>
<p>${s.pass} pass, ${s.warn} warn, ${s.fail} fail, ${s.skipped} skipped</p>
<table><thead><tr><th>experiment</th><th>measurement</th><th>asked</th><th>measured</th><th>error</th><th>verdict</th></tr></thead><tbody>
${rows.join('\n')}
</tbody></table>
${sections.join('\n')}
</body></html>
`;
}

/** Write dir/index.html (creating dir); returns the file path. */
export function writeHtmlReport(report: BenchReport, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'index.html');
  writeFileSync(file, renderHtml(report));
  return file;
}
