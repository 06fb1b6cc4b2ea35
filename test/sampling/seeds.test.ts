import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGenerator } from '../../src/sampling/rng.js';
import { batchSeeds, ImageRng, resolveSeed, slerp } from '../../src/sampling/seeds.js';
import { mismatches, openGoldenSet, type GoldenSet } from './golden.js';

interface SeqCase {
  kind: string;
  seed: number;
  shapes?: number[][];
  cpu: string | string[];
  nv: string | string[];
}

let golden: GoldenSet<{ tensor_file: string; cases: SeqCase[] }>;
beforeAll(async () => {
  golden = await openGoldenSet('rng');
});
afterAll(() => golden.close());

const SHAPE: [number, number, number] = [4, 8, 8];
const NUMEL = 4 * 8 * 8;

describe('A1111 seeds (ImageRNG)', () => {
  it('draws the initial latent, then each step noise, from the image generator (golden sequences)', async () => {
    let checked = 0;
    for (const c of golden.json.cases) {
      if (c.kind !== 'sequence' || !c.shapes) continue;
      const first = c.shapes[0]!;
      if (first.length !== 3 || !c.shapes.every((s) => s.join() === first.join())) continue;
      for (const [source, names] of [
        ['NV', c.nv],
        ['CPU', c.cpu],
      ] as const) {
        const rng = new ImageRng({ shape: first as [number, number, number], seeds: [c.seed], source });
        for (const name of names as string[]) {
          const bad = mismatches(rng.next(), await golden.tensor(name), 1e-6, 1e-6);
          expect(bad, `${name}: ${bad.first.join(', ')}`).toMatchObject({ count: 0 });
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('gives batch images their own generators and restarts them at seed + ENSD after the first draw', () => {
    const rng = new ImageRng({ shape: SHAPE, seeds: [100, 101], etaNoiseSeedDelta: 31337 });
    const first = rng.next();
    expect(Array.from(first.subarray(0, NUMEL))).toEqual(
      Array.from(createGenerator('GPU', 100).randn(NUMEL)),
    );
    expect(Array.from(first.subarray(NUMEL))).toEqual(Array.from(createGenerator('GPU', 101).randn(NUMEL)));
    const second = rng.next();
    expect(Array.from(second.subarray(NUMEL))).toEqual(
      Array.from(createGenerator('GPU', 101 + 31337).randn(NUMEL)),
    );
  });

  it('skip() keeps the stream position of next()', () => {
    const a = new ImageRng({ shape: SHAPE, seeds: [5], source: 'CPU' });
    const b = new ImageRng({ shape: SHAPE, seeds: [5], source: 'CPU' });
    a.next();
    a.next();
    b.next();
    b.skip();
    expect(Array.from(b.next())).toEqual(Array.from(a.next()));
  });

  it('blends variation seeds by slerp: strength 1 is the subseed noise, 0.5 lies between', () => {
    const sub = createGenerator('GPU', 7).randn(NUMEL);
    const full = new ImageRng({ shape: SHAPE, seeds: [3], subseeds: [7], subseedStrength: 1 }).next();
    expect(mismatches(full, sub, 1e-6, 1e-5).count).toBe(0);
    const base = createGenerator('GPU', 3).randn(NUMEL);
    const half = new ImageRng({ shape: SHAPE, seeds: [3], subseeds: [7], subseedStrength: 0.5 }).next();
    expect(Array.from(half)).toEqual(Array.from(slerp(0.5, base, sub, SHAPE)));
    expect(mismatches(half, base, 0.05, 0).count).toBeGreaterThan(0);
    expect(mismatches(half, sub, 0.05, 0).count).toBeGreaterThan(0);
  });

  it('resizes seeds by centring the original-size noise', () => {
    // Noise made for 128x128 px (16x16 latent) cropped to the centre of an 8x8 latent.
    const rng = new ImageRng({ shape: SHAPE, seeds: [9], seedResizeFromH: 128, seedResizeFromW: 128 });
    const out = rng.next();
    const big = createGenerator('GPU', 9).randn(4 * 16 * 16);
    for (let c = 0; c < 4; c++) {
      for (let y = 0; y < 8; y++) {
        for (let x = 0; x < 8; x++) expect(out[(c * 8 + y) * 8 + x]).toBe(big[(c * 16 + y + 4) * 16 + x + 4]);
      }
    }
    // From a smaller size: the small noise in the middle, the image's own noise around it.
    const small = new ImageRng({ shape: SHAPE, seeds: [9], seedResizeFromH: 32, seedResizeFromW: 32 }).next();
    const inner = createGenerator('GPU', 9).randn(4 * 4 * 4);
    expect(small[(0 * 8 + 2) * 8 + 2]).toBe(inner[0]);
    expect(small[0]).toBe(createGenerator('GPU', 9).randn(NUMEL)[0]);
  });

  it('numbers batch seeds as A1111 does, and resolves -1 to a random seed', () => {
    expect(batchSeeds(10, 50, 0, 3)).toEqual({ seeds: [10, 11, 12], subseeds: [50, 51, 52] });
    expect(batchSeeds(10, 50, 0.3, 3)).toEqual({ seeds: [10, 10, 10], subseeds: [50, 51, 52] });
    expect(resolveSeed(-1, () => 0.5)).toBe(2147483647);
    expect(resolveSeed(42)).toBe(42);
    const r = resolveSeed(undefined);
    expect(r >= 0 && r < 4294967294).toBe(true);
    expect(() => resolveSeed(-7)).toThrow(/seed -7/);
    expect(() => new ImageRng({ shape: [4, 0, 8], seeds: [1] })).toThrow(/latent shape/);
  });
});
