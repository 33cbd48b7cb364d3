/**
 * `berth`: the docker-like CLI. It only parses and prints; each command group lives in its own
 * module and registers itself on the program. Globals: --root (images, containers' metadata),
 * --state (runtime state on tmpfs), --log-level.
 */
import { Command } from 'commander';
import { BerthError } from '../errors.js';
import { registerImageCommands } from './images-cmd.js';
import { registerContainerCommands } from './containers-cmd.js';
import { registerBenchCommands } from './bench-cmd.js';

export function buildProgram(): Command {
  const program = new Command('berth')
    .description('run OCI containers without a daemon')
    .option('--root <dir>', 'storage root (images, snapshots, containers)', process.env.BERTH_ROOT ?? '/var/lib/berth')
    .option('--state <dir>', 'runtime state directory (tmpfs)', process.env.BERTH_STATE ?? '/run/berth')
    .option('--log-level <level>', 'log level (debug, info, warn, error)', 'warn')
    .showHelpAfterError()
    .configureOutput({ outputError: (s, write) => write(s) });
  registerImageCommands(program);
  registerContainerCommands(program);
  registerBenchCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string' && String((e as { code: string }).code).startsWith('commander.')) {
      const ce = e as { exitCode?: number };
      process.exitCode = ce.exitCode ?? 2;
      return;
    }
    if (e instanceof BerthError) {
      process.stderr.write(`berth: ${e.message}\n`);
      process.exitCode = process.exitCode && process.exitCode !== 0 ? process.exitCode : 1;
      return;
    }
    throw e;
  }
}
