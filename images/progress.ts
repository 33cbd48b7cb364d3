/**
 * Pull progress rendering, like docker: one line per layer with a bar on a TTY (redrawn in
 * place, at most every 100 ms), one plain line per status change otherwise, nothing in quiet
 * mode. The store emits PullEvents; this module only formats them.
 */
export type LayerStatus = 'waiting' | 'exists' | 'downloading' | 'verifying' | 'complete' | 'failed';

export type PullEvent =
  | { type: 'resolving'; ref: string }
  | { type: 'resolved'; ref: string; manifestDigest: string; layers: { digest: string; size: number }[] }
  | { type: 'layer'; digest: string; status: LayerStatus; current: number; total: number }
  | { type: 'done'; ref: string; manifestDigest: string; imageId: string; downloaded: boolean };

export type ProgressMode = 'tty' | 'plain' | 'quiet';

interface Writable { write(s: string): unknown; isTTY?: boolean; columns?: number }

const LABEL: Record<LayerStatus, string> = {
  waiting: 'Waiting', exists: 'Already exists', downloading: 'Downloading', verifying: 'Verifying',
  complete: 'Pull complete', failed: 'Failed',
};

export function formatBytes(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[i]}`;
}

export function shortDigest(d: string): string {
  return d.replace(/^sha256:/, '').slice(0, 12);
}

export function bar(current: number, total: number, width = 50): string {
  const frac = total > 0 ? Math.min(1, current / total) : 0;
  const full = Math.floor(frac * width);
  return '[' + '='.repeat(Math.max(0, full - 1)) + (full > 0 ? '>' : '') + ' '.repeat(width - full) + ']';
}

export class PullProgress {
  private readonly order: string[] = [];
  private readonly state = new Map<string, { status: LayerStatus; current: number; total: number }>();
  private drawn = 0;
  private lastDraw = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly out: Writable, readonly mode: ProgressMode = out.isTTY ? 'tty' : 'plain') {}

  /** The renderer for a CLI: quiet wins, then TTY detection. */
  static forStream(out: Writable, quiet: boolean): PullProgress {
    return new PullProgress(out, quiet ? 'quiet' : out.isTTY ? 'tty' : 'plain');
  }

  handle = (ev: PullEvent): void => {
    if (this.mode === 'quiet') return;
    switch (ev.type) {
      case 'resolving':
        return;
      case 'resolved':
        this.out.write(`${ev.ref}: Pulling (${ev.layers.length} layer${ev.layers.length === 1 ? '' : 's'})\n`);
        for (const l of ev.layers) {
          if (!this.state.has(l.digest)) {
            this.order.push(l.digest);
            this.state.set(l.digest, { status: 'waiting', current: 0, total: l.size });
          }
        }
        if (this.mode === 'tty') this.draw(true);
        return;
      case 'layer': {
        const prev = this.state.get(ev.digest);
        if (!prev) { this.order.push(ev.digest); }
        const changed = !prev || prev.status !== ev.status;
        this.state.set(ev.digest, { status: ev.status, current: ev.current, total: ev.total });
        if (this.mode === 'plain') {
          if (changed && ev.status !== 'waiting') this.out.write(`${shortDigest(ev.digest)}: ${LABEL[ev.status]}${ev.status === 'downloading' ? ` ${formatBytes(ev.total)}` : ''}\n`);
        } else {
          this.draw(changed);
        }
        return;
      }
      case 'done':
        if (this.mode === 'tty') this.draw(true);
        this.out.write(`Digest: ${ev.manifestDigest}\nStatus: ${ev.downloaded ? 'Downloaded newer image' : 'Image is up to date'} for ${ev.ref}\n`);
        return;
    }
  };

  private line(d: string): string {
    const s = this.state.get(d)!;
    const id = shortDigest(d);
    if (s.status === 'downloading') return `${id}: ${LABEL[s.status]} ${bar(s.current, s.total)} ${formatBytes(s.current)}/${formatBytes(s.total)}`;
    return `${id}: ${LABEL[s.status]}`;
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) {
      if (!this.timer) this.timer = setTimeout(() => { this.timer = null; this.draw(true); }, 100);
      return;
    }
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.lastDraw = now;
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const d of this.order) s += `\x1b[2K${this.line(d)}\n`;
    this.drawn = this.order.length;
    this.out.write(s);
  }

  /** Stop any pending redraw (call when the pull ends, successfully or not). */
  close(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }
}
