/** Entry point for running the CLI from source (`node --import tsx runtime/cli/berth-main.ts …`). */
import { main } from './berth.js';

await main(process.argv);
