/** Shared helpers for format tests: golden state_dict.json entries and tensor comparison. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { goldenPath } from '../helpers/golden.js';
import { toFloat32 } from '../../src/formats/dtype.js';
import type { DType, Tensor } from '../../src/formats/tensor.js';

export const TORCH_DTYPES: Record<string, DType> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

export interface GoldenTensorEntry {
  kind: 'tensor';
  dtype: string;
  shape: number[];
  values: (number | boolean)[];
  contiguous_bytes_sha256: string;
}
export type GoldenEntry = GoldenTensorEntry | { kind: string; value: unknown };

export function stateDictJson(): { entries: Record<string, GoldenEntry>; files: Record<string, unknown> } {
  return JSON.parse(readFileSync(goldenPath('formats', 'state_dict.json'), 'utf8'));
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The tensor equals the golden entry exactly: dtype, shape, bytes hash and every value. */
export function expectTensorMatches(name: string, t: Tensor, g: GoldenTensorEntry): void {
  expect(t.dtype, name).toBe(TORCH_DTYPES[g.dtype]);
  expect(t.shape, name).toEqual(g.shape);
  expect(sha256(t.data), name).toBe(g.contiguous_bytes_sha256);
  const values = exactValues(t);
  expect(values.length, name).toBe(g.values.length);
  const got = Array.from(values);
  expect(got.some(Number.isNaN), `${name} has NaN`).toBe(false);
  expect(got, name).toEqual(g.values.map((v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v)));
}

/** Element values without any rounding (integers exact, F64 as doubles). */
function exactValues(t: Tensor): ArrayLike<number> {
  const buf = t.data.slice().buffer;
  switch (t.dtype) {
    case 'F64':
      return new Float64Array(buf);
    case 'I64':
      return Array.from(new BigInt64Array(buf), Number);
    case 'I32':
      return new Int32Array(buf);
    case 'I16':
      return new Int16Array(buf);
    case 'I8':
      return new Int8Array(buf);
    default:
      return toFloat32(t);
  }
}
