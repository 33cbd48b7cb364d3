/** berth images commands (placeholder until its owner fills it in). */
import type { Command } from 'commander';

export function registerImageCommands(_program: Command): void {
  // registered by the images module's owner
}
