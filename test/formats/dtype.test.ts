import { describe, expect, it } from 'vitest';
import {
  bf16BitsToFloat32,
  castFloats,
  convertTensor,
  float16BitsToFloat32,
  float32ArrayToTensor,
  float32ToBF16Bits,
  float32ToFloat16Bits,
  toFloat32,
} from '../../src/formats/dtype.js';
import type { Tensor } from '../../src/formats/tensor.js';

/** Half value from its fields, by the IEEE formula (independent of the code under test). */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Nearest half to x by search over all finite positive halves, ties to even mantissa. */
function nearestHalf(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // 65504 + half an ulp (16) rounds to even = inf
  let lo = 0;
  let hi = 0x7bff;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (halfValue(mid) <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - halfValue(lo);
  const dh = halfValue(hi) - a;
  const pick = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
  return sign | pick;
}

function f32bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}
function bitsF32(b: number): number {
  return new Float32Array(new Uint32Array([b >>> 0]).buffer)[0]!;
}

/** Deterministic pseudo-random float32 bit patterns covering all exponents. */
function randomFloats(n: number): Float32Array {
  const out = new Uint32Array(n);
  let s = 0x12345678;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s >>> 0;
  }
  return new Float32Array(out.buffer);
}

describe('float16', () => {
  it('decodes every half bit pattern exactly', () => {
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const want = halfValue(h);
      const got = float16BitsToFloat32(h);
      if (Number.isNaN(want) ? !Number.isNaN(got) : !Object.is(got, want)) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it('round-trips every finite half', () => {
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      if (((h >> 10) & 31) === 31) continue;
      if (float32ToFloat16Bits(float16BitsToFloat32(h)) !== h) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it('rounds to nearest even at the edges', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65519.99)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // tie, rounds to even = inf
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-1e6)).toBe(0xfc00);
    expect(float32ToFloat16Bits(Infinity)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    // subnormals: 2^-24 is the smallest; 2^-25 is a tie between 0 and it -> 0 (even)
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000);
    expect(float32ToFloat16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(float32ToFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp tie -> 2 (even)
    expect(float32ToFloat16Bits(5 * 2 ** -25)).toBe(0x0002); // 2.5 ulp tie -> 2 (even)
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up into the normals
    // normal ties: 1 + 2^-11 is halfway between 1 and 1+2^-10 -> 1 (even); 1 + 3*2^-11 -> 1 + 2^-9
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
  });

  it('keeps NaN as NaN (never inf)', () => {
    for (const bits of [0x7fc00000, 0x7f800001, 0xffc00000, 0x7f802000]) {
      const h = float32ToFloat16Bits(bitsF32(bits));
      expect(h & 0x7c00).toBe(0x7c00);
      expect(h & 0x3ff).not.toBe(0);
      expect(Number.isNaN(float16BitsToFloat32(h))).toBe(true);
    }
  });

  it('matches an exhaustive-search oracle on random floats', () => {
    const wrong: number[] = [];
    for (const x of randomFloats(20000)) {
      if (!Number.isNaN(x) && float32ToFloat16Bits(x) !== nearestHalf(x)) wrong.push(x);
    }
    expect(wrong).toEqual([]);
  });
});

describe('bfloat16', () => {
  function nearestBF16(x: number): number {
    const b = f32bits(x);
    const lo = b & 0xffff0000;
    const hi = (lo + 0x10000) >>> 0;
    const dl = Math.abs(x - bitsF32(lo));
    const vh = bitsF32(hi);
    const dh = Number.isNaN(vh) ? Infinity : Math.abs(vh - x);
    const pick = dl < dh ? lo : dh < dl ? hi : (lo >>> 16) % 2 === 0 ? lo : hi;
    return (pick >>> 16) & 0xffff;
  }

  it('rounds to nearest even, overflows to inf, keeps NaN', () => {
    expect(float32ToBF16Bits(1)).toBe(0x3f80);
    expect(float32ToBF16Bits(bitsF32(0x3f808000))).toBe(0x3f80); // tie -> even
    expect(float32ToBF16Bits(bitsF32(0x3f818000))).toBe(0x3f82); // tie -> even (up)
    expect(float32ToBF16Bits(bitsF32(0x3f808001))).toBe(0x3f81);
    expect(float32ToBF16Bits(bitsF32(0x7f7fffff))).toBe(0x7f80); // max float32 -> inf
    expect(float32ToBF16Bits(-Infinity)).toBe(0xff80);
    expect(float32ToBF16Bits(bitsF32(0x00008000))).toBe(0x0000); // subnormal tie -> 0
    expect(float32ToBF16Bits(bitsF32(0x00018000))).toBe(0x0002);
    for (const bits of [0x7fc00000, 0x7f800001, 0xff800001]) {
      expect(Number.isNaN(bf16BitsToFloat32(float32ToBF16Bits(bitsF32(bits))))).toBe(true);
    }
  });

  it('matches a nearest-value oracle on random floats', () => {
    const wrong: number[] = [];
    for (const x of randomFloats(20000)) {
      if (Number.isNaN(x)) continue;
      const got = float32ToBF16Bits(x);
      if (got !== nearestBF16(x) || !Object.is(bf16BitsToFloat32(got), bitsF32(got << 16))) wrong.push(x);
    }
    expect(wrong).toEqual([]);
  });
});

describe('tensor conversion', () => {
  const values = new Float32Array([0, -1.5, 65520, 1e-8, 3.14159, -0, 2 ** -24, 1 + 2 ** -11]);

  it('converts float32 arrays to each float dtype and back, elementwise equal to the scalar functions', () => {
    const f16 = float32ArrayToTensor(values, [2, 4], 'F16');
    expect(f16.data.byteLength).toBe(16);
    const back16 = toFloat32(f16);
    values.forEach((v, i) => expect(back16[i]).toBe(float16BitsToFloat32(float32ToFloat16Bits(v))));
    const bf = float32ArrayToTensor(values, [8], 'BF16');
    const backbf = toFloat32(bf);
    values.forEach((v, i) => expect(backbf[i]).toBe(bf16BitsToFloat32(float32ToBF16Bits(v))));
    const f64 = convertTensor(float32ArrayToTensor(values, [8]), 'F64');
    expect(Array.from(new Float64Array(f64.data.slice().buffer))).toEqual(Array.from(values));
    expect(toFloat32(convertTensor(f64, 'F32'))).toEqual(values);
  });

  it('decodes integer and bool tensors', () => {
    const i64: Tensor = {
      dtype: 'I64',
      shape: [3],
      data: new Uint8Array(new BigInt64Array([-3n, 0n, 77n]).buffer),
    };
    expect(Array.from(toFloat32(i64))).toEqual([-3, 0, 77]);
    const i32: Tensor = { dtype: 'I32', shape: [2], data: new Uint8Array(new Int32Array([-7, 9]).buffer) };
    expect(Array.from(toFloat32(i32))).toEqual([-7, 9]);
    const b: Tensor = { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) };
    expect(Array.from(toFloat32(b))).toEqual([1, 0, 1]);
    const i8: Tensor = { dtype: 'I8', shape: [2], data: new Uint8Array([0xff, 5]) };
    expect(Array.from(toFloat32(i8))).toEqual([-1, 5]);
  });

  it('reads unaligned tensor bytes', () => {
    const buf = new Uint8Array(9);
    buf.set(new Uint8Array(new Float32Array([1.25, -2]).buffer), 1);
    expect(Array.from(toFloat32({ dtype: 'F32', shape: [2], data: buf.subarray(1) }))).toEqual([1.25, -2]);
    const h = new Uint8Array(5);
    h.set(new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer), 1);
    expect(Array.from(toFloat32({ dtype: 'F16', shape: [2], data: h.subarray(1) }))).toEqual([1, -2]);
  });

  it('castFloats leaves integer tensors unchanged and converts float ones', () => {
    const ids: Tensor = {
      dtype: 'I64',
      shape: [2],
      data: new Uint8Array(new BigInt64Array([1n, 2n]).buffer),
    };
    expect(castFloats(ids, 'F16')).toBe(ids);
    const w = float32ArrayToTensor(new Float32Array([1, 2]), [2]);
    expect(castFloats(w, 'F16').dtype).toBe('F16');
    expect(castFloats(w, 'F32')).toBe(w);
  });

  it('converts to integer dtypes exactly (I64 without float rounding)', () => {
    const big: Tensor = {
      dtype: 'I64',
      shape: [1],
      data: new Uint8Array(new BigInt64Array([2n ** 60n + 1n]).buffer),
    };
    const same = convertTensor(convertTensor(big, 'I64'), 'I64');
    expect(new BigInt64Array(same.data.buffer)[0]).toBe(2n ** 60n + 1n);
    const f = float32ArrayToTensor(new Float32Array([-2.7, 3.9, 0]), [3]);
    expect(Array.from(new Int32Array(convertTensor(f, 'I32').data.buffer))).toEqual([-2, 3, 0]);
    expect(Array.from(convertTensor(f, 'BOOL').data)).toEqual([1, 1, 0]);
    const i16 = float32ArrayToTensor(new Float32Array([-2.7, 300]), [2], 'I16');
    expect(Array.from(new Int16Array(i16.data.buffer))).toEqual([-2, 300]);
  });

  it('rejects a tensor whose bytes do not match its shape', () => {
    expect(() => toFloat32({ dtype: 'F32', shape: [3], data: new Uint8Array(8) })).toThrow(/needs 12/);
  });

  it('converts millions of elements per second', () => {
    const n = 4_000_000;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = Math.sin(i);
    const t0 = performance.now();
    const h = float32ArrayToTensor(x, [n], 'F16');
    const back = toFloat32(h);
    const ms = performance.now() - t0;
    expect(back.length).toBe(n);
    expect(ms).toBeLessThan(4000);
  });
});
