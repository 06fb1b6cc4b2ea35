/** Shared helpers for the adapters conformance tests: cases.json, golden files, tolerance checks. */
import { dirname } from 'node:path';
import { expect } from 'vitest';
import { openModel } from '../../src/formats/open.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { goldenPath, readPythonJson } from '../helpers/golden.js';

export interface Tol {
  max_abs: number;
  rel_l2: number;
}

export interface AdapterCase {
  kind: string;
  name: string;
  [k: string]: unknown;
}

export function adapterCases(): AdapterCase[] {
  return readPythonJson<{ cases: AdapterCase[] }>('adapters', 'cases.json').cases;
}

export function casesOf(kind: string): AdapterCase[] {
  return adapterCases().filter((c) => c.kind === kind);
}

/** A path named in cases.json, relative to the adapters folder. */
export function adapterPath(rel: string): string {
  return goldenPath('adapters', rel);
}

export function adaptersDir(): string {
  return dirname(adapterPath('cases.json'));
}

const opened = new Map<string, Promise<TensorSource>>();

export function openCached(path: string): Promise<TensorSource> {
  let s = opened.get(path);
  if (!s) opened.set(path, (s = openModel(path)));
  return s;
}

export async function closeAll(): Promise<void> {
  for (const s of opened.values()) await (await s).close();
  opened.clear();
}

/** max|a−b| ≤ max_abs and ‖a−b‖/‖b‖ ≤ rel_l2; any NaN fails. */
export function expectClose(
  name: string,
  ours: ArrayLike<number>,
  golden: ArrayLike<number>,
  tol: Tol,
): void {
  expect(ours.length, `${name}: length`).toBe(golden.length);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  let nan = false;
  for (let i = 0; i < golden.length; i++) {
    const a = ours[i]!;
    const b = golden[i]!;
    if (Number.isNaN(a) || Number.isNaN(b)) nan = true;
    const d = Math.abs(a - b);
    if (d > maxAbs) maxAbs = d;
    num += d * d;
    den += b * b;
  }
  expect(nan, `${name}: NaN`).toBe(false);
  const rel = den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
  expect(maxAbs, `${name}: max_abs`).toBeLessThanOrEqual(tol.max_abs);
  expect(rel, `${name}: rel_l2`).toBeLessThanOrEqual(tol.rel_l2);
}
