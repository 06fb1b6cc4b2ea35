/** Reading the tiny-sd goldens and comparing at a case's tolerance (shared by the engine tests). */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import type { TensorF32 } from '../../src/runtime/sd1.js';
import { compareGolden, expectGolden } from '../helpers/compare.js';
import { goldenPath } from '../helpers/golden.js';

export interface Tolerance {
  max_abs: number;
  /** max|ours − golden| as a fraction of max|golden| (for arithmetic whose error scales with the values). */
  max_abs_rel?: number;
  rel_l2?: number;
  max_fraction_differing?: number;
}

export interface GoldenCase {
  kind: string;
  checkpoint: string;
  config: string;
  file: string;
  name?: string;
  inputs?: Record<string, string>;
  outputs?: Record<string, string | string[]> | string[];
  intermediates?: string[];
  same_inputs_as?: Record<string, string>;
  tolerance: Tolerance | Record<string, Tolerance>;
  [k: string]: unknown;
}

export const TINY = 'tiny-sd';

export function loadCases(): GoldenCase[] {
  const j = JSON.parse(readFileSync(goldenPath(TINY, 'cases.json'), 'utf8')) as { cases: GoldenCase[] };
  return j.cases;
}

/** The ldm `scale_factor` from a checkpoint's yaml sidecar. */
export function scaleFactor(configFile: string): number {
  const y = parseYaml(readFileSync(goldenPath(TINY, configFile), 'utf8')) as {
    model: { params: { scale_factor: number } };
  };
  return y.model.params.scale_factor;
}

const opened = new Map<string, Promise<TensorSource>>();

export function goldenFile(file: string): Promise<TensorSource> {
  let s = opened.get(file);
  if (!s) {
    s = openSafetensors(goldenPath(TINY, file));
    opened.set(file, s);
  }
  return s;
}

export async function closeGoldenFiles(): Promise<void> {
  for (const s of opened.values()) await (await s).close();
  opened.clear();
}

export async function goldenTensor(file: string, name: string): Promise<TensorF32> {
  const src = await goldenFile(file);
  const info = src.info(name);
  if (!info) throw new Error(`${file} has no tensor ${name}`);
  return { data: await src.readFloat32(name), dims: info.shape };
}

export async function goldenIds(file: string, name: string): Promise<{ ids: BigInt64Array; dims: number[] }> {
  const src = await goldenFile(file);
  const t = await src.read(name);
  if (t.dtype !== 'I64') throw new Error(`${file}:${name} is ${t.dtype}, expected I64`);
  return {
    ids: new BigInt64Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)),
    dims: t.shape,
  };
}

/** max|a−b| and ‖a−b‖/‖b‖ (test/helpers/compare.ts); NaN anywhere gives NaN. */
export function errors(ours: Float32Array, ref: Float32Array): { maxAbs: number; relL2: number } {
  const r = compareGolden(ours, ref, {});
  return r.nan > 0 || r.count > 0 ? { maxAbs: NaN, relL2: NaN } : { maxAbs: r.maxAbs, relL2: r.relL2 };
}

export function expectClose(label: string, ours: TensorF32, ref: TensorF32, tol: Tolerance): void {
  expect(ours.dims, `${label}: shape`).toEqual(ref.dims);
  expectGolden(label, ours.data, ref.data, tol);
}
