/** berth containers commands (placeholder until its owner fills it in). */
import type { Command } from 'commander';

export function registerContainerCommands(_program: Command): void {
  // registered by the containers module's owner
}
