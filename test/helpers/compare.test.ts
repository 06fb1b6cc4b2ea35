import { describe, expect, it } from 'vitest';
import { compareGolden, expectGolden } from './compare.js';

describe('compareGolden', () => {
  it('passes within the tolerance, fails outside it', () => {
    expect(compareGolden([1, 2.0005], [1, 2], { max_abs: 1e-3 }).ok).toBe(true);
    expect(compareGolden([1, 2.01], [1, 2], { max_abs: 1e-3 }).ok).toBe(false);
    expect(compareGolden([1, 2.01], [1, 2], { atol: 0, rtol: 0.01 }).ok).toBe(true);
    expect(compareGolden([1, 2.03], [1, 2], { atol: 0, rtol: 0.01 })).toMatchObject({ ok: false, count: 1 });
    expect(compareGolden([1, 2.01], [1, 2], { rel_l2: 1e-3 }).ok).toBe(false);
    expect(compareGolden([1, 2.01], [1, 2], { max_abs_rel: 0.01 }).ok).toBe(true);
  });

  it('a NaN never passes: in ours, in the golden, or in both, whatever the tolerance', () => {
    for (const tol of [{ max_abs: Infinity }, { rel_l2: Infinity }, { atol: Infinity, rtol: 0 }, {}]) {
      expect(compareGolden([NaN, 1], [0, 1], tol).ok, JSON.stringify(tol)).toBe(false);
      expect(compareGolden([0, 1], [NaN, 1], tol).ok, JSON.stringify(tol)).toBe(false);
      expect(compareGolden([NaN, 1], [NaN, 1], tol)).toMatchObject({ ok: false, nan: 1 });
    }
    expect(() => expectGolden('x', [NaN], [NaN], { max_abs: Infinity })).toThrow(/x: .*NaN/);
  });

  it('a length mismatch fails; equal infinities are equal, a finite value is not an infinity', () => {
    expect(compareGolden([1], [1, 2], { max_abs: Infinity }).ok).toBe(false);
    expect(compareGolden([Infinity, -Infinity], [Infinity, -Infinity], { max_abs: 0 }).ok).toBe(true);
    expect(compareGolden([1e30], [Infinity], { max_abs: 1e300 }).ok).toBe(false);
  });
});
