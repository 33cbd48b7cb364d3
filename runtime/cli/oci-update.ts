/** `berth-oci update`: runc's flags (or a LinuxResources JSON on --resources FILE|-) → LinuxResources. */
import { readFileSync } from 'node:fs';
import type { LinuxResources } from '../oci/spec.js';
import { UsageError } from './berth-oci.js';

function num(v: string | boolean | string[] | undefined, flag: string): number | undefined {
  if (typeof v !== 'string') return undefined;
  if (!/^-?\d+$/.test(v)) throw new UsageError(`--${flag} must be an integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

export function resourcesFromFlags(opts: Record<string, string | boolean | string[]>): LinuxResources {
  let r: LinuxResources = {};
  const file = opts.resources;
  if (typeof file === 'string') {
    const text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
    try {
      r = JSON.parse(text) as LinuxResources;
    } catch (e) {
      throw new UsageError(`--resources: invalid JSON: ${(e as Error).message}`);
    }
  }
  const mem = { limit: num(opts.memory, 'memory'), swap: num(opts['memory-swap'], 'memory-swap'), reservation: num(opts['memory-reservation'], 'memory-reservation') };
  if (Object.values(mem).some((v) => v !== undefined)) r.memory = { ...r.memory, ...Object.fromEntries(Object.entries(mem).filter(([, v]) => v !== undefined)) };
  const cpu = {
    shares: num(opts['cpu-shares'], 'cpu-shares'), quota: num(opts['cpu-quota'], 'cpu-quota'), period: num(opts['cpu-period'], 'cpu-period'),
    realtimeRuntime: num(opts['cpu-rt-runtime'], 'cpu-rt-runtime'), realtimePeriod: num(opts['cpu-rt-period'], 'cpu-rt-period'),
    cpus: typeof opts['cpuset-cpus'] === 'string' ? opts['cpuset-cpus'] : undefined, mems: typeof opts['cpuset-mems'] === 'string' ? opts['cpuset-mems'] : undefined,
  };
  if (Object.values(cpu).some((v) => v !== undefined)) r.cpu = { ...r.cpu, ...Object.fromEntries(Object.entries(cpu).filter(([, v]) => v !== undefined)) };
  const pids = num(opts['pids-limit'], 'pids-limit');
  if (pids !== undefined) r.pids = { limit: pids };
  const bw = num(opts['blkio-weight'], 'blkio-weight');
  if (bw !== undefined) r.blockIO = { ...r.blockIO, weight: bw };
  return r;
}
