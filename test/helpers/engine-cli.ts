/**
 * One engine test environment driven through the berth CLI (from source): its own temp dir,
 * --root and --state, cgroup parent, default bridge and a /24 the host does not use, the real
 * registry with the busybox base image pulled, and a teardown that removes containers, mounts,
 * cgroups, the bridge and the registry even when the test failed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRegistry, type TestRegistry } from '../fixtures/registry.js';
import { detectCgroupDriver } from '../../runtime/cgroups/index.js';
import { baseImage, pushTestImage } from '../fixtures/images.js';

export interface CliResult { code: number; stdout: string; stderr: string }

/** Run `berth --root root --state state ARGS` from source with env; killed after timeoutMs. */
export function runBerthCli(root: string, state: string, env: NodeJS.ProcessEnv, args: string[], timeoutMs = 120000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/berth-main.ts', '--root', root, '--state', state, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`berth ${args.join(' ')} timed out`)); }, timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

/** A /24 the host does not use (no address or route in it). */
export function freeSubnet(): string {
  const used = execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' }) + execFileSync('ip', ['-o', 'route'], { encoding: 'utf8' });
  for (;;) {
    const s = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`${s}.`)) return `${s}.0/24`;
  }
}

/** Mount points at or below p. */
export const mountsUnder = (p: string): string[] =>
  readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(p));

export interface EngineCliEnv {
  rand: string; dir: string; root: string; state: string; cgParent: string; bridge: string; subnet: string;
  env: NodeJS.ProcessEnv;
  berth(args: string[]): Promise<CliResult>;
  /** Start the registry, push and pull the base image; returns its reference. */
  setup(): Promise<string>;
  teardown(): Promise<void>;
}

/** name: a short word for the temp dir and cgroup parent (berth-<name>-…). */
export function engineCliEnv(name: string): EngineCliEnv {
  const rand = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), `berth-${name}-`));
  const root = join(dir, 'root');
  const state = join(dir, 's');
  const cgParent = `berth-${name}test-${rand}`;
  const bridge = `berth${rand}`;
  const subnet = freeSubnet();
  const env = { ...process.env, BERTH_CGROUP_PARENT: cgParent, BERTH_DEFAULT_BRIDGE: bridge, BERTH_DEFAULT_SUBNET: subnet };
  const berth = (args: string[]): Promise<CliResult> => runBerthCli(root, state, env, args);
  let reg: TestRegistry | undefined;
  let tornDown = false;
  return {
    rand, dir, root, state, cgParent, bridge, subnet, env, berth,
    async setup() {
      reg = await startRegistry();
      const img = (await pushTestImage(reg.host, 'berth/busybox', 'latest', await baseImage())).ref;
      const p = await berth(['pull', img]);
      if (p.code !== 0) throw new Error(`pull: ${p.stderr}`);
      return img;
    },
    async teardown() {
      if (tornDown) return; // a test may check what teardown leaves, before tap runs it again
      tornDown = true;
      try {
        const ids = (await berth(['ps', '-a', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean);
        if (ids.length) await berth(['rm', '-f', ...ids]);
      } finally {
        for (const m of mountsUnder(dir).reverse()) { try { execFileSync('umount', ['-l', m]); } catch { /* gone */ } }
        // the whole tree under the parent, in every hierarchy: what a failed test left inside it too
        await detectCgroupDriver().open(`/${cgParent}`).destroy().catch(() => { /* reported by the leftover checks */ });
        try { execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* never made */ }
        await reg?.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
