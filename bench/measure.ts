/** Small measuring helpers shared by bench/run.ts, its probes and bench/experiments. */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** This process's peak resident set size so far, in MB (maxRSS is reported in KiB). */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export interface Timed<T> {
  value: T;
  wall_s: number;
  /** Process CPU time (user + system) over the call: ≈ wall × threads when the cores were ours. */
  cpu_s: number;
}

export async function timed<T>(fn: () => Promise<T>): Promise<Timed<T>> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wall_s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { value, wall_s, cpu_s: (c.user + c.system) / 1e6 };
}

export interface MachineInfo {
  cores: number;
  cpu_model: string;
  memory_gb: number;
  platform: string;
  node: string;
  /** 1-minute load average when the benchmark started: > cores means others competed for the CPU. */
  load_avg_1m: number;
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    cores: c.length,
    cpu_model: c[0]?.model.trim() ?? 'unknown',
    memory_gb: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
    load_avg_1m: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/**
 * Run `node --import tsx script ...args` in a fresh process (clean peak RSS, a fresh onnxruntime
 * with no warm memory) and parse the last line of its stdout as JSON. Its stderr is passed through.
 */
export function runChild<T>(script: string, args: string[], env: NodeJS.ProcessEnv = process.env): T {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${script} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${script} ${args.join(' ')} printed no JSON result (last line: ${line.slice(0, 200)})`);
  }
}
