/**
 * `berth bench isolation`: runs the isolation experiments (runtime/bench) in real containers
 * with real cgroup limits and prints asked vs. measured as a table, as JSON (--json), and/or as
 * an offline HTML report with SVG charts (--report DIR).
 */
import type { Command } from 'commander';
import { runIsolationBench, parseDuration, parseOnly } from '../bench/runner.js';
import { formatTable } from '../bench/table.js';
import { writeHtmlReport } from '../bench/report-html.js';
import { EXPERIMENT_IDS } from '../bench/types.js';

interface IsolationFlags {
  image?: string;
  duration: string;
  json?: boolean;
  report?: string;
  only?: string;
}

export function registerBenchCommands(program: Command): void {
  const bench = program.command('bench').description('measure how well containers are isolated on this host');
  bench
    .command('isolation')
    .description('run CPU quota, CPU weight, noisy neighbour, memory, pids and block I/O experiments and report measured vs. asked')
    .option('--image <ref>', 'run the experiments on this pulled image instead of a busybox rootfs (needs sh, head, tr, dd)')
    .option('--duration <seconds>', 'measurement window per run', '5')
    .option('--json', 'print one JSON document instead of the table')
    .option('--report <dir>', 'write an HTML report with charts to <dir>/index.html')
    .option('--only <list>', `comma-separated subset of: ${EXPERIMENT_IDS.join(', ')}`)
    .action(async (flags: IsolationFlags) => {
      const globals = program.opts<{ root: string }>();
      const durationS = parseDuration(flags.duration);
      const only = flags.only ? parseOnly(flags.only) : undefined;
      const report = await runIsolationBench({
        durationS, only, image: flags.image, storeRoot: globals.root, handleSignals: true,
        progress: flags.json ? undefined : (m) => process.stderr.write(`… ${m}\n`),
      });
      if (flags.report) {
        const file = writeHtmlReport(report, flags.report);
        if (!flags.json) process.stderr.write(`report: ${file}\n`);
      }
      process.stdout.write(flags.json ? JSON.stringify(report, null, 2) + '\n' : formatTable(report));
    });
}
