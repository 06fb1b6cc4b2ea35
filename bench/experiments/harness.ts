/**
 * Shared helpers for the design experiments in bench/experiments: time an onnxruntime session on
 * fixed inputs, and run each variant in its own child process so peak RSS is the variant's own.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import type { TensorSource } from '../../src/formats/tensor.js';
import type { GraphBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { median, peakRssMb } from '../measure.js';

export interface Timing {
  variant: string;
  create_s: number;
  first_run_s: number;
  median_s: number;
  runs_s: number[];
  peak_rss_mb: number;
}

export { median, peakRssMb } from '../measure.js';

export function randomTensor(dims: number[], seed = 1): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = x / 2147483648 - 1;
  }
  return new ort.Tensor('float32', data, dims);
}

/** The model bytes of `g` with its float32 params read from `source` and stored inline. */
export async function encodeWithParams(g: GraphBuilder, source: TensorSource): Promise<Uint8Array> {
  const data = new Map<string, Float32Array>();
  for (const p of g.params.values()) data.set(p.name, await source.readFloat32(p.key));
  return encodeModel(
    g.toModel((p) => ({
      name: p.name,
      dims: p.dims,
      dataType: 1,
      rawData: new Uint8Array(data.get(p.name)!.buffer),
    })),
  );
}

/** Deterministic UNet inputs of one SD 1.5 step at 512², batch 2 (latent, timesteps, context). */
export function unet512Inputs() {
  const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));
  return {
    x: { data: wave(2 * 4 * 64 * 64, 0.37), dims: [2, 4, 64, 64] },
    t: { data: new Float32Array([500, 700]), dims: [2] },
    context: { data: wave(2 * 77 * 768, 0.11), dims: [2, 77, 768] },
  };
}

/** Create a session (from bytes or a file path), run it once cold and `runs` more times. */
export async function timeModel(
  variant: string,
  model: Uint8Array | string,
  feeds: Record<string, ort.Tensor>,
  runs: number,
  options: ort.InferenceSession.SessionOptions = {},
): Promise<Timing> {
  // SDSTUDIO_ORT_PROFILE=1: onnxruntime's per-node profile, summed by op type, on stderr.
  const profiling = process.env.SDSTUDIO_ORT_PROFILE === '1';
  const profilePrefix = join(tmpdir(), `sdstudio-ort-profile-${process.pid}`);
  if (profiling) options = { ...options, enableProfiling: true, profileFilePrefix: profilePrefix };
  let t = performance.now();
  const session =
    typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  const create_s = (performance.now() - t) / 1000;
  t = performance.now();
  await session.run(feeds);
  const first_run_s = (performance.now() - t) / 1000;
  const runs_s: number[] = [];
  for (let i = 0; i < runs; i++) {
    t = performance.now();
    await session.run(feeds);
    runs_s.push((performance.now() - t) / 1000);
  }
  if (profiling) {
    session.endProfiling();
  }
  await session.release();
  if (profiling) printProfile(profilePrefix);
  return { variant, create_s, first_run_s, median_s: median(runs_s), runs_s, peak_rss_mb: peakRssMb() };
}

/** Run `script --variant V ...args` in a fresh process per variant; each prints one JSON line. */
export function runVariantsIsolated(script: string, variants: string[], args: string[] = []): Timing[] {
  const out: Timing[] = [];
  for (const v of variants) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--variant', v, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (r.status !== 0) throw new Error(`variant ${v} failed (exit ${r.status})`);
    const line = r.stdout.trim().split('\n').pop()!;
    const t = JSON.parse(line) as Timing;
    process.stderr.write(
      `${v.padEnd(28)} create ${t.create_s.toFixed(2)} s  first ${t.first_run_s.toFixed(3)} s  ` +
        `median ${t.median_s.toFixed(3)} s  peak RSS ${t.peak_rss_mb.toFixed(0)} MB\n`,
    );
    out.push(t);
  }
  return out;
}

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string };
}

/** Sum onnxruntime's per-node "kernel_time" events by op type (all runs, cold one included). */
function printProfile(prefix: string): void {
  const dir = tmpdir();
  const base = prefix.slice(dir.length + 1);
  for (const f of readdirSync(dir).filter((n) => n.startsWith(base) && n.endsWith('.json'))) {
    const events = JSON.parse(readFileSync(join(dir, f), 'utf8')) as ProfileEvent[];
    const byOp = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const op = e.args?.op_name ?? '?';
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
    }
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1])) {
      process.stderr.write(
        `  ${op.padEnd(28)} ${(us / 1e6).toFixed(3)} s  ${((100 * us) / total).toFixed(1)}%\n`,
      );
    }
    if (process.env.SDSTUDIO_ORT_PROFILE_KEEP !== '1') rmSync(join(dir, f));
  }
}
