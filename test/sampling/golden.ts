/** Reading one golden folder of the sampling conformance sets: its cases.json and tensor file. */
import { readFileSync } from 'node:fs';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { compareGolden } from '../helpers/compare.js';
import { goldenPath } from '../helpers/golden.js';

export interface GoldenSet<T> {
  json: T;
  tensor(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

/** A folder's cases.json, read when the test file is collected (so each case can be its own test). */
export function readGoldenJson<T>(folder: string): T {
  return JSON.parse(readFileSync(goldenPath(folder, 'cases.json'), 'utf8')) as T;
}

export async function openGoldenSet<T extends { tensor_file: string }>(
  folder: string,
): Promise<GoldenSet<T>> {
  const json = JSON.parse(readFileSync(goldenPath(folder, 'cases.json'), 'utf8')) as T;
  const source = await openSafetensors(goldenPath(folder, json.tensor_file));
  return { json, tensor: (name) => source.readFloat32(name), close: () => source.close() };
}

/**
 * Elements where |a - b| > atol + rtol·|b| (a NaN never passes), and the first few of them:
 * the shared comparator (test/helpers/compare.ts) with numpy's allclose tolerance.
 */
export function mismatches(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol: number,
): { count: number; first: string[] } {
  const { count, first } = compareGolden(actual, expected, { atol, rtol });
  return { count, first };
}
