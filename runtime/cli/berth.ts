/**
 * `berth`: the docker-like CLI. It only parses and prints; each command group lives in its own
 * module and registers itself on the program. Globals: --root (images, containers' metadata),
 * --state (runtime state on tmpfs), --log-level.
 */
import { Command } from 'commander';
import { BerthError } from '../errors.js';
import { VERSION } from '../version.js';

const IMAGE_VERBS = new Set(['pull', 'push', 'images', 'image', 'tag', 'rmi', 'save', 'load', 'login', 'logout']);
const GLOBAL_WITH_VALUE = new Set(['--root', '--state', '--log-level']);

/** The first command word in argv (after node, the script and global options), if any. */
export function commandWord(argv: string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (GLOBAL_WITH_VALUE.has(a)) { i++; continue; }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

/**
 * Every call pays Node's start-up, so only the command group that argv names is imported:
 * `berth pull` never loads the engine, `berth ps` never loads the bench. Help and unknown words
 * load everything.
 */
export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const word = commandWord(argv);
  const images = !word || word !== 'bench';
  const containers = !word || (!IMAGE_VERBS.has(word) && word !== 'bench');
  const bench = !word || word === 'bench' || (!IMAGE_VERBS.has(word) && !containers);
  const program = new Command('berth')
    .description('run OCI containers without a daemon')
    .option('--root <dir>', 'storage root (images, snapshots, containers)', process.env.BERTH_ROOT ?? '/var/lib/berth')
    .option('--state <dir>', 'runtime state directory (tmpfs)', process.env.BERTH_STATE ?? '/run/berth')
    .option('--log-level <level>', 'log level (debug, info, warn, error)', 'warn')
    .version(`berth version ${VERSION}`, '--version', 'print the version and exit')
    .showHelpAfterError()
    .configureOutput({ outputError: (s, write) => write(s) });
  // containers-cmd adds an inspect fallback to images-cmd's `inspect`, so images load first.
  if (images) (await import('./images-cmd.js')).registerImageCommands(program);
  if (containers) (await import('./containers-cmd.js')).registerContainerCommands(program);
  if (bench) (await import('./bench-cmd.js')).registerBenchCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = await buildProgram(argv);
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
