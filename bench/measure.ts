/** Small measuring helpers shared by bench/run.ts, its probes and bench/experiments. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/**
 * Resident memory now, split as Linux reports it (/proc/self/status): anonymous (activations,
 * prepacked weights, JS heap) vs file-backed (weights onnxruntime maps from the checkpoint — clean
 * page cache the kernel can drop and re-read). Undefined where /proc is not available.
 */
export function rssBreakdownMb(): { anon_mb: number; file_mb: number } | undefined {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    const anon = kb('RssAnon');
    const file = kb('RssFile');
    if (!Number.isFinite(anon) || !Number.isFinite(file)) return undefined;
    return { anon_mb: Math.round(anon / 1024), file_mb: Math.round(file / 1024) };
  } catch {
    return undefined;
  }
}
