/** runtime/engine/logs.ts: CRI log reading, --tail, --timestamps, partial lines, follow across rotation. */
import t, { type Test } from 'tap';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { followLogs, readLogs, formatLine } from '../runtime/engine/logs.js';

function tmp(tt: Test): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-logs-'));
  tt.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const ts = (n: number): string => `2026-01-02T03:04:05.${String(n).padStart(9, '0')}Z`;

t.test('reads both streams, joins P chunks, tail and timestamps', async (tt) => {
  const log = join(tmp(tt), 'c.log');
  writeFileSync(`${log}.1`, `${ts(1)} stdout F one\n`);
  writeFileSync(log, [
    `${ts(2)} stderr F two`,
    `${ts(3)} stdout P thr`,
    `${ts(4)} stderr F four`,
    `${ts(5)} stdout F ee`,
    'garbage line',
    `${ts(6)} stdout P tail-no-newline`,
  ].join('\n') + '\n');
  const all = readLogs(log);
  tt.same(all.map((l) => [l.stream, l.message.toString(), l.complete]), [
    ['stdout', 'one', true], ['stderr', 'two', true], ['stderr', 'four', true], ['stdout', 'three', true], ['stdout', 'tail-no-newline', false],
  ]);
  tt.equal(all[3].time, ts(3), 'a joined line keeps its first chunk\'s time');
  const last2 = readLogs(log, { tail: 2 });
  tt.same(last2.map((l) => l.message.toString()), ['three', 'tail-no-newline']);
  tt.same(readLogs(log, { tail: 0 }), []);
  tt.equal(formatLine(all[0], { timestamps: true }).toString(), `${ts(1)} one\n`);
  tt.equal(formatLine(all[4]).toString(), 'tail-no-newline', 'no newline for an unterminated tail');
  tt.throws(() => readLogs(log, { tail: -1 }), /--tail -1/);
  tt.same(readLogs(join(tmp(tt), 'missing.log')), [], 'a missing log is empty');
});

t.test('follow prints history, new lines and survives rotation', async (tt) => {
  const log = join(tmp(tt), 'c.log');
  writeFileSync(log, `${ts(1)} stdout F a\n${ts(2)} stdout F b\n`);
  const out = new PassThrough(), err = new PassThrough();
  let o = '', e = '';
  out.on('data', (d) => { o += d; });
  err.on('data', (d) => { e += d; });
  let stop = false;
  const done = followLogs(log, { stdout: out, stderr: err }, { tail: 1, pollMs: 10, until: () => stop });
  await new Promise((r) => setTimeout(r, 50));
  tt.equal(o, 'b\n', 'tail 1 of the history');
  appendFileSync(log, `${ts(3)} stderr F c\n${ts(4)} stdout P d1`);
  await new Promise((r) => setTimeout(r, 50));
  appendFileSync(log, `\n${ts(5)} stdout F d2\n`);
  // rotate like the monitor: rename to .1, new file
  renameSync(log, `${log}.1`);
  appendFileSync(`${log}.1`, `${ts(6)} stdout F before-rotate\n`);
  writeFileSync(log, `${ts(7)} stdout F after-rotate\n`);
  await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await done;
  tt.equal(o, 'b\nd1d2\nbefore-rotate\nafter-rotate\n');
  tt.equal(e, 'c\n');
});
