/**
 * Read and follow the CRI-format container logs the monitor writes
 * (`<RFC3339Nano> <stdout|stderr> <P|F> <msg>`, rotated to `<log>.1`). Partial chunks (P) are
 * joined with the entry that completes them, so --tail counts whole lines like `docker logs`.
 */
import { closeSync, fstatSync, openSync, readSync, readFileSync, statSync } from 'node:fs';
import { BerthError } from '../errors.js';

export type LogStream = 'stdout' | 'stderr';

/** One logical line: P chunks joined; `complete` is false for an unterminated tail. */
export interface LogLine {
  time: string;
  stream: LogStream;
  message: Buffer;
  complete: boolean;
}

export interface LogReadOptions {
  /** Only the last N lines (docker --tail N); undefined = all. */
  tail?: number;
  /** Prefix each line with its RFC3339Nano timestamp (docker --timestamps). */
  timestamps?: boolean;
}

const LINE_RE = /^(\S+) (stdout|stderr) ([PF]) /;

/** Parse one CRI log record (without its trailing newline); null when malformed. */
export function parseCriLine(line: Buffer): { time: string; stream: LogStream; partial: boolean; message: Buffer } | null {
  const head = line.subarray(0, Math.min(line.length, 64)).toString('latin1');
  const m = LINE_RE.exec(head);
  if (!m) return null;
  return { time: m[1], stream: m[2] as LogStream, partial: m[3] === 'P', message: line.subarray(m[0].length) };
}

/** Stateful parser: feed raw file bytes, get completed logical lines per stream. */
export class CriLogParser {
  private rest: Buffer = Buffer.alloc(0);
  private readonly pending = new Map<LogStream, { time: string; parts: Buffer[] }>();

  feed(chunk: Buffer): LogLine[] {
    const data = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const out: LogLine[] = [];
    let start = 0;
    for (let nl = data.indexOf(10, start); nl >= 0; nl = data.indexOf(10, start)) {
      const rec = parseCriLine(data.subarray(start, nl));
      start = nl + 1;
      if (!rec) continue;
      const p = this.pending.get(rec.stream);
      if (rec.partial) {
        if (p) p.parts.push(rec.message);
        else this.pending.set(rec.stream, { time: rec.time, parts: [rec.message] });
        continue;
      }
      this.pending.delete(rec.stream);
      out.push({ time: p?.time ?? rec.time, stream: rec.stream, message: p ? Buffer.concat([...p.parts, rec.message]) : Buffer.from(rec.message), complete: true });
    }
    this.rest = Buffer.from(data.subarray(start));
    return out;
  }

  /** Unterminated tails (P chunks never completed), e.g. `printf abc` before exit. */
  flush(): LogLine[] {
    const out: LogLine[] = [];
    for (const [stream, p] of this.pending) out.push({ time: p.time, stream, message: Buffer.concat(p.parts), complete: false });
    this.pending.clear();
    return out;
  }
}

function readIfExists(file: string): Buffer {
  try { return readFileSync(file); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw e;
  }
}

/** All lines of the log (the rotated `.1` first), optionally only the last N. */
export function readLogs(file: string, opts: LogReadOptions = {}): LogLine[] {
  if (opts.tail !== undefined && (!Number.isInteger(opts.tail) || opts.tail < 0)) throw new BerthError('EINVALIDCONFIG', `--tail ${opts.tail}: want a whole number of lines`);
  const parser = new CriLogParser();
  const lines = [...parser.feed(readIfExists(`${file}.1`)), ...parser.feed(readIfExists(file)), ...parser.flush()];
  return opts.tail === undefined ? lines : opts.tail === 0 ? [] : lines.slice(-opts.tail);
}

/** The bytes `docker logs` would print for one line. */
export function formatLine(l: LogLine, opts: LogReadOptions = {}): Buffer {
  const parts: Buffer[] = [];
  if (opts.timestamps) parts.push(Buffer.from(`${l.time} `));
  parts.push(l.message);
  if (l.complete) parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

export interface LogSinks {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface FollowOptions extends LogReadOptions {
  /** Stop following once this returns true (checked after each poll; e.g. container exited). */
  until?: () => boolean;
  signal?: AbortSignal;
  pollMs?: number;
}

/**
 * Print the log (respecting tail/timestamps), then keep printing new lines as they are written,
 * across rotations, until `until()` is true (after a final read) or the signal aborts.
 */
export async function followLogs(file: string, sinks: LogSinks, opts: FollowOptions = {}): Promise<void> {
  const emit = (l: LogLine): void => { (l.stream === 'stderr' ? sinks.stderr : sinks.stdout).write(formatLine(l, opts)); };
  // Snapshot the current file's identity and size, print history up to there.
  const parser = new CriLogParser();
  let ino = -1;
  let offset = 0;
  const history: LogLine[] = [...parser.feed(readIfExists(`${file}.1`))];
  try {
    const fd = openSync(file, 'r');
    try {
      const st = fstatSync(fd);
      ino = st.ino;
      const buf = Buffer.alloc(st.size);
      const n = st.size ? readSync(fd, buf, 0, st.size, 0) : 0;
      offset = n;
      history.push(...parser.feed(buf.subarray(0, n)));
    } finally { closeSync(fd); }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const shown = opts.tail === undefined ? history : opts.tail === 0 ? [] : history.slice(-opts.tail);
  for (const l of shown) emit(l);

  const readFrom = (path: string, from: number): number => {
    let fd: number;
    try { fd = openSync(path, 'r'); } catch { return from; }
    try {
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, from);
        if (n <= 0) break;
        from += n;
        for (const l of parser.feed(buf.subarray(0, n))) emit(l);
      }
    } finally { closeSync(fd); }
    return from;
  };

  for (;;) {
    let st: { ino: number; size: number } | null = null;
    try { st = statSync(file); } catch { st = null; }
    if (st && st.ino !== ino) {
      // Rotated: finish the old file (now <file>.1), then start the new one from 0.
      if (ino !== -1) {
        try { if (statSync(`${file}.1`).ino === ino) readFrom(`${file}.1`, offset); } catch { /* gone */ }
      }
      ino = st.ino;
      offset = 0;
    }
    if (st) offset = readFrom(file, offset);
    if (opts.signal?.aborted) break;
    if (opts.until?.()) {
      if (st) offset = readFrom(file, offset);
      break;
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
  }
  for (const l of parser.flush()) emit(l);
}
