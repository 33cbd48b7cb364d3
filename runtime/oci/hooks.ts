/**
 * OCI hooks: each runs with the container's state JSON on stdin, its own args/env, and a timeout
 * (default none, as runc). A failing prestart/createRuntime/createContainer/startContainer hook
 * fails the operation; poststart/poststop failures are only warnings.
 */
import { spawn } from 'node:child_process';
import { BerthError } from '../errors.js';
import type { Hook, OciState } from './spec.js';

export class HookError extends BerthError {
  constructor(kind: string, hook: Hook, detail: string) {
    super('EHOOK', `${kind} hook ${hook.path} failed: ${detail}`);
  }
}

export function runHook(kind: string, hook: Hook, state: OciState): Promise<void> {
  return new Promise((resolve, reject) => {
    const argv = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
    const child = spawn(hook.path, argv.slice(1), { argv0: argv[0], env: Object.fromEntries((hook.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])), stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
    child.stdin.on('error', () => {});
    child.stdin.end(JSON.stringify(state));
    let timer: NodeJS.Timeout | undefined;
    if (hook.timeout) timer = setTimeout(() => { child.kill('SIGKILL'); }, hook.timeout * 1000);
    child.on('error', (e) => { if (timer) clearTimeout(timer); reject(new HookError(kind, hook, e.message)); });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0) resolve();
      else if (signal) reject(new HookError(kind, hook, signal === 'SIGKILL' && hook.timeout ? `timed out after ${hook.timeout}s` : `killed by ${signal}`));
      else reject(new HookError(kind, hook, `exit status ${code}${stderr ? `: ${stderr.trim()}` : ''}`));
    });
  });
}

export async function runHooks(kind: string, hooks: Hook[] | undefined, state: OciState): Promise<void> {
  for (const h of hooks ?? []) await runHook(kind, h, state);
}

/** Run hooks whose failures must not stop the operation; returns the errors as warnings. */
export async function runHooksBestEffort(kind: string, hooks: Hook[] | undefined, state: OciState): Promise<string[]> {
  const warnings: string[] = [];
  for (const h of hooks ?? []) {
    try {
      await runHook(kind, h, state);
    } catch (e) {
      warnings.push((e as Error).message);
    }
  }
  return warnings;
}
