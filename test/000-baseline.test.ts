/** Runs first: records berth-made things that existed before the suite (see helpers/leftovers.ts). */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { leftovers, BASELINE_FILE } from './helpers/leftovers.js';

t.test('record what exists before the suite', async (t) => {
  const now = leftovers();
  writeFileSync(BASELINE_FILE, JSON.stringify(now));
  const n = Object.values(now).reduce((a, l) => a + l.length, 0);
  if (n > 0) t.comment(`already on this machine before the tests (not counted as leaks): ${JSON.stringify(now)}`);
  t.pass('baseline recorded');
});
