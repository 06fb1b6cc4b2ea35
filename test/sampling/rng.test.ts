import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGenerator, PhiloxGenerator, type RandomSource } from '../../src/sampling/rng.js';
import { mismatches, openGoldenSet, readGoldenJson, type GoldenSet } from './golden.js';

interface RngCase {
  kind: 'single' | 'sequence';
  seed: number;
  shape?: number[];
  shapes?: number[][];
  cpu: string | string[];
  cpu_generator?: string[];
  nv: string | string[];
  nv_offset_before_each_call?: number[];
  nv_offset_after?: number;
}

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
// README: |a-b| <= 1e-6 + 1e-6*|b| for both sources.
const TOL = 1e-6;

let golden: GoldenSet<{ tensor_file: string; cases: RngCase[] }>;
beforeAll(async () => {
  golden = await openGoldenSet('rng');
});
afterAll(() => golden.close());

const rngCases = readGoldenJson<{ cases: RngCase[] }>('rng').cases;

describe('random sources replay golden/rng', () => {
  it('has cases', () => {
    expect(rngCases.length).toBeGreaterThan(0);
  });

  for (const [label, source, field] of [
    ['CPU (torch mt19937)', 'CPU', 'cpu'],
    ['CPU (torch.Generator)', 'CPU', 'cpu_generator'],
    ['NV (Philox)', 'NV', 'nv'],
    ['GPU (= NV)', 'GPU', 'nv'],
  ] as [string, RandomSource, 'cpu' | 'cpu_generator' | 'nv'][]) {
    it(`${label}: the cases have draws of this source`, () => {
      expect(rngCases.filter((c) => c[field] !== undefined).length).toBeGreaterThan(0);
    });
    for (const [n, c] of rngCases.entries()) {
      if (c[field] === undefined) continue;
      it(`${label}: case ${n} (${c.kind}, seed ${c.seed}), consecutive draws continuing one stream`, async () => {
        const shapes = c.kind === 'single' ? [c.shape!] : c.shapes!;
        const raw = c[field]!;
        const names = typeof raw === 'string' ? [raw] : raw;
        expect(names.length).toBe(shapes.length);
        const gen = createGenerator(source, c.seed);
        for (let k = 0; k < shapes.length; k++) {
          if (gen instanceof PhiloxGenerator && c.nv_offset_before_each_call) {
            expect(gen.offset).toBe(c.nv_offset_before_each_call[k]);
          }
          const got = gen.randn(numel(shapes[k]!));
          const bad = mismatches(got, await golden.tensor(names[k]!), TOL, TOL);
          expect(bad, `seed ${c.seed} ${names[k]}: ${bad.first.join(', ')}`).toMatchObject({ count: 0 });
        }
        if (gen instanceof PhiloxGenerator && c.nv_offset_after !== undefined)
          expect(gen.offset).toBe(c.nv_offset_after);
      });
    }
  }

  it('skip() advances a stream exactly like randn()', () => {
    for (const source of ['CPU', 'NV'] as const) {
      for (const n of [3, 7, 16, 17, 256]) {
        const a = createGenerator(source, 1234);
        const b = createGenerator(source, 1234);
        a.randn(n);
        b.skip(n);
        expect(Array.from(b.randn(20))).toEqual(Array.from(a.randn(20)));
      }
    }
  });

  it('refuses bad seeds and sizes with a clear error', () => {
    expect(() => createGenerator('NV', -5)).toThrow(/seed -5/);
    expect(() => createGenerator('CPU', 1.5)).toThrow(/seed 1.5/);
    expect(() => createGenerator('NV', 1).randn(-1)).toThrow(/cannot draw/);
    expect(() => createGenerator('bogus' as RandomSource, 1)).toThrow(/random source/);
  });
});
