/** `npm run bench -- run`: placeholder until the engine's benchmark lands. */
export async function benchRunCli(): Promise<void> {
  console.log('\nrun: `berth run` benchmark not available yet');
}
