import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pyRound6, TorchsdeBrownianTree, type SeededRandn } from '../../src/sampling/brownian-tree.js';
import { seedSequenceState } from '../../src/sampling/seed-sequence.js';
import { BrownianNoise, imageRngNoise } from '../../src/sampling/noise.js';
import { planSampling, runSampler, startLatent } from '../../src/sampling/index.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../../src/sampling/schedules.js';
import { ImageRng } from '../../src/sampling/seeds.js';
import { repoRoot } from '../helpers/golden.js';

/** The stand-in for torch.randn that make-torchsde-brownian.py gives torchsde's code. */
const standIn: SeededRandn = (seed, n) => {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const k = Number((BigInt(seed) * 2654435761n + BigInt(i) * 2246822519n + 12345n) % 2n ** 32n);
    out[i] = k / 2 ** 30 - 2;
  }
  return out;
};

interface Fixture {
  cases: {
    seed: number;
    numel: number;
    t0: number;
    t1: number;
    queries: [number, number][];
    w: number[][];
  }[];
}
const fixture = JSON.parse(
  readFileSync(join(repoRoot, 'test/sampling/fixtures/torchsde-brownian.json'), 'utf8'),
) as Fixture;

describe("torchsde's BrownianTree", () => {
  it('gives the increments torchsde computes, bit for bit, for every recorded query', () => {
    expect(fixture.cases.length).toBeGreaterThan(0);
    for (const c of fixture.cases) {
      const tree = new TorchsdeBrownianTree(c.numel, c.seed, c.t0, c.t1, standIn);
      c.queries.forEach(([ta, tb], q) => {
        expect(Array.from(tree.increment(ta, tb)), `seed ${c.seed} query ${q}`).toEqual(c.w[q]);
      });
    }
  });

  it('depends only on the seed and the query, not on the order of queries', () => {
    const c = fixture.cases[fixture.cases.length - 1]!;
    const tree = new TorchsdeBrownianTree(c.numel, c.seed, c.t0, c.t1, standIn);
    const order = c.queries.map((_, i) => i).reverse();
    for (const q of order) {
      const got = tree.increment(c.queries[q]![0], c.queries[q]![1]);
      got.forEach((v, i) => expect(v).toBeCloseTo(c.w[q]![i]!, 4));
    }
  });
});

describe('numpy SeedSequence', () => {
  it('is a pure function of entropy and spawn key', () => {
    // numpy.random.SeedSequence(42, spawn_key=(0, 0), pool_size=24).generate_state(4)[:2]
    expect(Array.from(seedSequenceState(42, [0, 0], 24, 4).slice(0, 2))).toEqual([2102017995, 2891809698]);
    expect(seedSequenceState(1, [], 24, 3)).not.toEqual(seedSequenceState(2, [], 24, 3));
  });
});

describe("Python's round(x, 6)", () => {
  it('rounds exact ties to even and everything else to nearest', () => {
    expect(pyRound6(1 / 128)).toBe(0.007812); // 0.0078125 exactly: a tie, even digit kept
    expect(pyRound6(3 / 128)).toBe(0.023438); // 0.0234375: tie, rounds up to even
    expect(pyRound6(14.614643096923828)).toBe(14.614643);
    expect(pyRound6(0.0291675)).toBe(0.029167); // the double is just below ...675
    expect(pyRound6(2.5)).toBe(2.5);
  });
});

describe('BrownianNoise (k-diffusion BrownianTreeNoiseSampler)', () => {
  it('gives unit-variance noise, the same for an image whatever the batch', () => {
    const numel = 4096;
    const one = new BrownianNoise(numel, [7], 0.03, 14.6);
    const two = new BrownianNoise(numel, [7, 8], 0.03, 14.6);
    const a = one.sample(14.6, 9.2);
    const b = two.sample(14.6, 9.2);
    expect(Array.from(b.subarray(0, numel))).toEqual(Array.from(a));
    const mean = a.reduce((s, v) => s + v, 0) / numel;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / numel;
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(Math.abs(variance - 1)).toBeLessThan(0.1);
  });

  it('runs a one-step SDE schedule (both tree ends equal), as A1111 does', async () => {
    const plan = planSampling({
      sampler: 'DPM++ 2M SDE',
      steps: 1,
      schedule: new DiscreteSchedule(sdAlphasCumprod()),
    });
    const positive = plan.sigmas.filter((s) => s > 0);
    const rng = new ImageRng({ shape: [1, 2, 2], seeds: [3] });
    const brownian = new BrownianNoise(4, [3], Math.min(...positive), Math.max(...positive));
    const res = await runSampler(
      plan,
      { model: async (x) => x.map((v) => v * 0.5), noise: imageRngNoise(rng, brownian) },
      startLatent(plan, rng.next()),
    );
    expect(res.x.every(Number.isFinite)).toBe(true);
  });
});
