/** Reading one golden folder of the sampling conformance sets: its cases.json and tensor file. */
import { readFileSync } from 'node:fs';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { goldenPath } from '../helpers/golden.js';

export interface GoldenSet<T> {
  json: T;
  tensor(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

export async function openGoldenSet<T extends { tensor_file: string }>(
  folder: string,
): Promise<GoldenSet<T>> {
  const json = JSON.parse(readFileSync(goldenPath(folder, 'cases.json'), 'utf8')) as T;
  const source = await openSafetensors(goldenPath(folder, json.tensor_file));
  return { json, tensor: (name) => source.readFloat32(name), close: () => source.close() };
}

/** Indices where |a - b| > atol + rtol·|b| (a NaN never passes), and the first few of them. */
export function mismatches(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol: number,
): { count: number; first: string[] } {
  const first: string[] = [];
  let count = 0;
  if (actual.length !== expected.length) {
    return {
      count: Math.max(actual.length, expected.length),
      first: [`length ${actual.length} != ${expected.length}`],
    };
  }
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const b = expected[i]!;
    if (!(Math.abs(a - b) <= atol + rtol * Math.abs(b))) {
      count++;
      if (first.length < 5) first.push(`[${i}] ${a} vs ${b}`);
    }
  }
  return { count, first };
}
