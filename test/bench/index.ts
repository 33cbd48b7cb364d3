/**
 * `npm run bench [-- NAME...]`: benchmarks against the anchors installed here, side by side in one
 * run. Not tests: nothing here asserts on time. NAME: lifecycle, pull, run (default: all).
 */
const which = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const all = which.length === 0;
const known = ['lifecycle', 'pull', 'run'];
for (const w of which) if (!known.includes(w)) { console.error(`unknown benchmark ${w}; known: ${known.join(', ')}`); process.exit(2); }
if (all || which.includes('lifecycle')) await (await import('./lifecycle.js')).benchLifecycle(Number(process.env.BENCH_RUNS ?? 50));
if (all || which.includes('pull')) await (await import('./pull.js')).benchPull();
if (all || which.includes('run')) await (await import('./run.js')).benchRunCli();
process.exit(0);
