/**
 * The one comparator of the conformance tests: ours against a golden at a stated tolerance. A NaN
 * never passes — in ours, in the golden, or in both — and neither does a length mismatch.
 */
import { expect } from 'vitest';

export interface GoldenTolerance {
  /** max|ours − golden| (Infinity: no bound). */
  max_abs?: number;
  /** max|ours − golden| as a fraction of max|golden|. */
  max_abs_rel?: number;
  /** ‖ours − golden‖ / ‖golden‖. */
  rel_l2?: number;
  /** Per element: |ours − golden| ≤ atol + rtol·|golden| (numpy's allclose). */
  atol?: number;
  rtol?: number;
}

export interface Comparison {
  ok: boolean;
  /** Elements that are NaN on either side, or outside atol/rtol. */
  count: number;
  nan: number;
  maxAbs: number;
  relL2: number;
  /** What failed, for the message: the first few elements and the bounds exceeded. */
  first: string[];
}

export function compareGolden(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: GoldenTolerance,
): Comparison {
  if (actual.length !== expected.length) {
    return {
      ok: false,
      count: Math.max(actual.length, expected.length),
      nan: 0,
      maxAbs: NaN,
      relL2: NaN,
      first: [`length ${actual.length} != ${expected.length}`],
    };
  }
  const first: string[] = [];
  const elementwise = tol.atol !== undefined || tol.rtol !== undefined;
  const atol = tol.atol ?? 0;
  const rtol = tol.rtol ?? 0;
  let count = 0;
  let nan = 0;
  let maxAbs = 0;
  let peak = 0;
  let d2 = 0;
  let r2 = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const b = expected[i]!;
    if (Number.isNaN(a) || Number.isNaN(b)) {
      nan++;
      count++;
      if (first.length < 5) first.push(`[${i}] ${a} vs ${b} (NaN)`);
      continue;
    }
    const d = a === b ? 0 : Math.abs(a - b); // equal infinities are equal
    maxAbs = Math.max(maxAbs, d);
    peak = Math.max(peak, Math.abs(b));
    d2 += d * d;
    r2 += b * b;
    if (elementwise && !(d <= atol + rtol * Math.abs(b))) {
      count++;
      if (first.length < 5) first.push(`[${i}] ${a} vs ${b}`);
    }
  }
  const relL2 = r2 > 0 ? Math.sqrt(d2 / r2) : Math.sqrt(d2);
  let ok = nan === 0 && count === 0;
  if (nan > 0) maxAbs = NaN;
  if (tol.max_abs !== undefined && !(maxAbs <= tol.max_abs)) {
    ok = false;
    first.push(`max_abs ${maxAbs} > ${tol.max_abs}`);
  }
  if (tol.max_abs_rel !== undefined && !(maxAbs <= tol.max_abs_rel * peak)) {
    ok = false;
    first.push(`max_abs ${maxAbs} > ${tol.max_abs_rel} × max|golden| ${peak}`);
  }
  if (tol.rel_l2 !== undefined && !(relL2 <= tol.rel_l2)) {
    ok = false;
    first.push(`rel_l2 ${relL2} > ${tol.rel_l2}`);
  }
  return { ok, count, nan, maxAbs, relL2, first };
}

/** Fails the test (naming `label` and what was exceeded) unless ours matches the golden. */
export function expectGolden(
  label: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: GoldenTolerance,
): void {
  const r = compareGolden(actual, expected, tol);
  expect(r.ok, `${label}: ${r.first.join(', ')}`).toBe(true);
}
