/** berth bench commands (placeholder until its owner fills it in). */
import type { Command } from 'commander';

export function registerBenchCommands(_program: Command): void {
  // registered by the bench module's owner
}
