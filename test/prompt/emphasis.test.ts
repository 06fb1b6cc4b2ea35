import { describe, expect, it } from 'vitest';
import { applyEmphasis } from '../../src/prompt/emphasis.js';

function randomTensor(n: number, seed: number): Float32Array {
  let s = seed;
  const z = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    z[i] = (s / 2 ** 32) * 2 - 0.5;
  }
  return z;
}
const mean = (a: Float32Array) => a.reduce((x, y) => x + y, 0) / a.length;

describe('applyEmphasis', () => {
  const shape = [2, 77, 16] as const;
  const z = randomTensor(2 * 77 * 16, 3);
  const mult = Array.from({ length: 2 * 77 }, (_, i) =>
    i % 5 === 0 ? 1.21 : i % 7 === 0 ? 0.9090909090909091 : 1,
  );

  it('"Original" multiplies each token and restores the original mean', () => {
    const out = applyEmphasis(z, shape, mult, 'Original');
    expect(Math.abs(mean(out) - mean(z))).toBeLessThan(1e-6 * Math.max(1, Math.abs(mean(z))));
    // Each token is its weighted hidden state times one common factor.
    const ratio = out[0] / (z[0] * mult[0]);
    for (let t = 0; t < 2 * 77; t++)
      for (let c = 0; c < 16; c++) {
        const i = t * 16 + c;
        expect(out[i]).toBeCloseTo(z[i] * mult[t] * ratio, 5);
      }
    expect(Number.isNaN(ratio)).toBe(false);
  });

  it('"No norm" only multiplies', () => {
    const out = applyEmphasis(z, shape, mult, 'No norm');
    for (let t = 0; t < 2 * 77; t++)
      expect(out[t * 16 + 3]).toBe(Math.fround(z[t * 16 + 3] * Math.fround(mult[t])));
  });

  it('"None" and "Ignore" leave the values alone, and weights of 1 change nothing', () => {
    expect(applyEmphasis(z, shape, mult, 'None')).toEqual(z);
    expect(applyEmphasis(z, shape, mult, 'Ignore')).toEqual(z);
    expect(applyEmphasis(z, shape, new Array(154).fill(1), 'Original')).toEqual(z);
  });

  it('refuses mismatched shapes', () => {
    expect(() => applyEmphasis(z, [2, 77, 15], mult)).toThrow();
    expect(() => applyEmphasis(z, shape, mult.slice(1))).toThrow();
  });
});
