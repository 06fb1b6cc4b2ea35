import { describe, expect, it } from 'vitest';
import {
  cfgDenoiser,
  compVisDenoiser,
  condAtStep,
  CondSchedule,
  lcmDenoiser,
  timestepsDenoiser,
} from '../../src/sampling/denoisers.js';
import { DiscreteSchedule, LcmSchedule, sdAlphasCumprod } from '../../src/sampling/schedules.js';
import { mismatches } from './golden.js';

const ac = sdAlphasCumprod();
const schedule = new DiscreteSchedule(ac);
const PER = 16;
const x0 = Float32Array.from({ length: 2 * PER }, (_, i) => Math.sin(i));
const n = Float32Array.from({ length: 2 * PER }, (_, i) => Math.cos(3 * i));
const sigmas = Float32Array.from([2.5, 0.7]);
/** x = x0 + sigma·n per batch item. */
const noisy = x0.map((v, i) => v + sigmas[Math.floor(i / PER)]! * n[i]!);

describe('denoiser wrappers', () => {
  it('eps: an exact noise prediction gives back x0, and the network sees c_in·x at t(sigma)', async () => {
    const seen: number[] = [];
    const den = compVisDenoiser<null>(
      async (xin, t) => {
        seen.push(...t);
        const cIn0 = 1 / Math.sqrt(sigmas[0]! ** 2 + 1);
        expect(xin[0]).toBeCloseTo(noisy[0]! * cIn0, 6);
        return n;
      },
      schedule,
      'eps',
    );
    const out = await den(noisy, sigmas, [null, null]);
    expect(mismatches(out, x0, 1e-5, 1e-5).count).toBe(0);
    expect(seen).toEqual([schedule.sigmaToT(sigmas[0]!), schedule.sigmaToT(sigmas[1]!)].map(Math.fround));
  });

  it('v: an exact v prediction gives back x0', async () => {
    const den = compVisDenoiser<null>(
      async (_xin, _t) =>
        noisy.map((x, i) => {
          const s = sigmas[Math.floor(i / PER)]!;
          const cSkip = 1 / (s * s + 1);
          const cOut = -s / Math.sqrt(s * s + 1);
          return (x0[i]! - cSkip * x) / cOut;
        }),
      schedule,
      'v',
    );
    expect(mismatches(await den(noisy, sigmas, [null, null]), x0, 1e-5, 1e-5).count).toBe(0);
  });

  it('timestep v-prediction is turned into eps', async () => {
    const t = Float32Array.from([500, 20]);
    const vp = x0.map((v, i) => {
      const a = ac[t[Math.floor(i / PER)]!]!;
      return Math.sqrt(a) * v + Math.sqrt(1 - a) * n[i]!;
    });
    const vTarget = x0.map((v, i) => {
      const a = ac[t[Math.floor(i / PER)]!]!;
      return Math.sqrt(a) * n[i]! - Math.sqrt(1 - a) * v;
    });
    const den = timestepsDenoiser<null>(async () => vTarget, ac, 'v');
    expect(mismatches(await den(vp, t, [null, null]), n, 1e-5, 1e-5).count).toBe(0);
  });

  it('LCM applies its boundary condition at the quantized timestep', async () => {
    const lcm = new LcmSchedule(ac);
    const den = lcmDenoiser<null>(async () => n, lcm);
    const out = await den(noisy, sigmas, [null, null]);
    const st = lcm.sigmaToT(sigmas[0]!) * 10;
    const cSkip = 0.25 / (st * st + 0.25);
    const cOut = st / Math.sqrt(st * st + 0.25);
    expect(out[0]).toBeCloseTo(cOut * x0[0]! + cSkip * noisy[0]!, 4);
  });
});

describe('classifier-free guidance (A1111 CFGDenoiser)', () => {
  // The "network" returns a constant per conditioning, so the combination is easy to check.
  const inner = async (x: Float32Array, level: Float32Array, conds: readonly number[]) => {
    expect(level.every((l) => l === 3)).toBe(true);
    const per = x.length / conds.length;
    return Float32Array.from({ length: x.length }, (_, i) => conds[Math.floor(i / per)]! + 0 * x[i]!);
  };

  it('combines uncond + sum of weighted (cond - uncond)·scale per image, also with AND and in chunks', async () => {
    for (const maxBatch of [undefined, 1, 2]) {
      const cfg = cfgDenoiser(inner, {
        conds: [
          [{ cond: 10, weight: 1 }],
          [
            { cond: 20, weight: 0.5 },
            { cond: 30, weight: 1.5 },
          ],
        ],
        uncond: [1, 2],
        scale: 7,
        maxBatch,
      });
      const out = await cfg(new Float32Array(2 * PER), 3);
      expect(out[0]).toBeCloseTo(1 + (10 - 1) * 7, 4);
      expect(out[PER]).toBeCloseTo(2 + (20 - 2) * 0.5 * 7 + (30 - 2) * 1.5 * 7, 4);
    }
  });

  it('skips the uncond pass on every second call below s_min_uncond, unguided', async () => {
    const seen: number[] = [];
    const counting = async (x: Float32Array, level: Float32Array, conds: readonly number[]) => {
      seen.push(conds.length);
      return inner(x, level, conds);
    };
    const cfg = cfgDenoiser(counting, {
      conds: [[{ cond: 10, weight: 1 }], [{ cond: 20, weight: 1 }]],
      uncond: [1, 2],
      scale: 7,
      sMinUncond: 5,
    });
    const x = new Float32Array(2 * PER);
    const first = await cfg(x, 3);
    const second = await cfg(x, 3);
    expect(seen).toEqual([4, 2]);
    expect(first[0]).toBeCloseTo(1 + 9 * 7, 4);
    expect(second[0]).toBeCloseTo(10, 5);
    expect(second[PER]).toBeCloseTo(20, 5);
  });

  it('keeps the unmasked region of the init latent when inpainting', async () => {
    const mask = Float32Array.from({ length: PER }, (_, i) => (i < PER / 2 ? 1 : 0));
    const initLatent = new Float32Array(2 * PER).fill(-4);
    const cfg = cfgDenoiser(inner, {
      conds: [[{ cond: 10, weight: 1 }], [{ cond: 10, weight: 1 }]],
      uncond: [1, 1],
      scale: 1,
      mask: { mask, initLatent },
    });
    const out = await cfg(new Float32Array(2 * PER), 3);
    expect(out[0]).toBe(-4);
    expect(out[PER - 1]).toBeCloseTo(10, 5);
    expect(out[PER]).toBe(-4);
  });

  it('blends the init latent into x before the network for timestep samplers (mask.before)', async () => {
    const mask = Float32Array.from({ length: PER }, (_, i) => (i < PER / 2 ? 1 : 0));
    const initLatent = new Float32Array(PER).fill(-4);
    const seen: number[] = [];
    const echo = async (x: Float32Array) => {
      seen.push(x[0]!, x[PER - 1]!);
      return x.slice();
    };
    const cfg = cfgDenoiser(echo, {
      conds: [[{ cond: 0, weight: 1 }]],
      uncond: [0],
      scale: 1,
      mask: { mask, initLatent, before: true },
    });
    const out = await cfg(new Float32Array(PER).fill(3), 500);
    expect(seen).toEqual([-4, 3]);
    expect(out[0]).toBe(-4);
    expect(out[PER - 1]).toBe(3);
  });

  it('picks prompt-editing schedules per call and runs cond and uncond apart when not joinable', async () => {
    const batches: number[][] = [];
    const rec = async (x: Float32Array, level: Float32Array, conds: readonly number[]) => {
      batches.push([...conds]);
      return inner(x, level, conds);
    };
    const cfg = cfgDenoiser(rec, {
      conds: [
        [
          {
            cond: new CondSchedule([
              { endAtStep: 0, cond: 10 },
              { endAtStep: 1, cond: 20 },
            ]),
            weight: 1,
          },
        ],
      ],
      uncond: [1],
      scale: 1,
      joinable: (c, u) => c[0] !== 20 || u[0] !== 1,
    });
    for (let i = 0; i < 3; i++) await cfg(new Float32Array(PER), 3);
    expect(batches).toEqual([[10, 1], [20], [1], [10, 1]]);
    expect(condAtStep([{ endAtStep: 2 }, { endAtStep: 5 }], 6)).toEqual({ endAtStep: 2 });
  });

  it('refuses a batch without one uncond per image', () => {
    expect(() => cfgDenoiser(inner, { conds: [[{ cond: 1, weight: 1 }]], uncond: [], scale: 7 })).toThrow(
      /uncond/,
    );
  });
});
