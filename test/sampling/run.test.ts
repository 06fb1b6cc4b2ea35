import { describe, expect, it } from 'vitest';
import { planSampling, runSampler, SAMPLERS, startLatent, type StepInfo } from '../../src/sampling/index.js';
import { imageRngNoise } from '../../src/sampling/noise.js';
import {
  a1111Sigmas,
  a1111Timesteps,
  DiscreteSchedule,
  exponentialSigmas,
  karrasSigmas,
  lcmSigmas,
  LcmSchedule,
  sdAlphasCumprod,
} from '../../src/sampling/schedules.js';
import { ImageRng } from '../../src/sampling/seeds.js';

const ac = sdAlphasCumprod();
const schedule = new DiscreteSchedule(ac);
const shrink = async (x: Float32Array) => x.map((v) => v * 0.5);

describe('planSampling: what A1111 hands each sampler', () => {
  it('uses the sampler default scheduler, old combined names, and explicit schedule types', () => {
    const { sigmaMin: lo, sigmaMax: hi } = schedule;
    expect(planSampling({ sampler: 'DPM++ 2M', steps: 20, schedule }).sigmas).toEqual(
      karrasSigmas(20, lo, hi),
    );
    expect(planSampling({ sampler: 'Euler', steps: 20, schedule }).sigmas).toEqual(schedule.getSigmas(20));
    expect(
      planSampling({ sampler: 'Euler Karras', steps: 20, schedule, scheduler: 'Automatic' }).sigmas,
    ).toEqual(karrasSigmas(20, lo, hi));
    expect(
      planSampling({ sampler: 'DPM++ 2M', steps: 20, schedule, scheduler: 'Exponential' }).sigmas,
    ).toEqual(exponentialSigmas(20, lo, hi));
    const dpm2 = planSampling({ sampler: 'DPM2', steps: 20, schedule });
    expect(dpm2.sigmas).toEqual(
      a1111Sigmas(schedule, { steps: 20, scheduler: 'karras', discardNextToLastSigma: true }),
    );
    expect(planSampling({ sampler: 'LCM', steps: 4, schedule }).sigmas).toEqual(lcmSigmas(4, ac));
    // LCM with a schedule type: built over the LCM denoiser's own 50-step table, as A1111 does.
    const lcm = new LcmSchedule(ac);
    expect(planSampling({ sampler: 'LCM', steps: 4, schedule, scheduler: 'Karras' }).sigmas).toEqual(
      karrasSigmas(4, lcm.sigmaMin, lcm.sigmaMax),
    );
    expect(planSampling({ sampler: 'DDIM', steps: 20, schedule }).timesteps).toEqual(a1111Timesteps(20));
  });

  it('cuts img2img schedules at the denoising strength', () => {
    const full = planSampling({ sampler: 'Euler a', steps: 20, schedule }).sigmas;
    const half = planSampling({ sampler: 'Euler a', steps: 20, schedule, denoisingStrength: 0.5 });
    expect(half.sigmas).toEqual(full.slice(20 - 10 - 1));
    expect(half.steps).toBe(11);
    const ddim = planSampling({ sampler: 'DDIM', steps: 20, schedule, denoisingStrength: 0.5 });
    expect(ddim.timesteps).toEqual(a1111Timesteps(20).slice(0, 10));
    expect(ddim.img2imgTimestep).toBe(a1111Timesteps(20)[10]);
    const init = new Float32Array(4).fill(1);
    const noise = new Float32Array(4).fill(2);
    expect(startLatent(half, noise, init)[0]).toBeCloseTo(1 + 2 * half.sigmas[0]!, 5);
    const a = ac[ddim.img2imgTimestep!]!;
    expect(startLatent(ddim, noise, init, ac)[0]).toBeCloseTo(Math.sqrt(a) + 2 * Math.sqrt(1 - a), 5);
  });

  it('explains bad requests', () => {
    expect(() => planSampling({ sampler: 'Nope', steps: 20, schedule })).toThrow(/unknown sampler/);
    expect(() => planSampling({ sampler: 'Euler', steps: 20, schedule, scheduler: 'weird' })).toThrow(
      /schedule type/,
    );
    expect(() => planSampling({ sampler: 'Euler', steps: 0, schedule })).toThrow(/steps/);
  });
});

describe('runSampler: callbacks, interrupt and skip', () => {
  const rng = () => new ImageRng({ shape: [1, 2, 2], seeds: [1] });

  it('reports every step and finishes', async () => {
    const plan = planSampling({ sampler: 'Euler a', steps: 6, schedule });
    const r = rng();
    const steps: StepInfo[] = [];
    const res = await runSampler(
      plan,
      { model: shrink, noise: imageRngNoise(r), callback: (s) => steps.push(s) },
      startLatent(plan, r.next()),
    );
    expect(res.stopped).toBeUndefined();
    expect(steps.map((s) => s.i)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(steps.every((s) => s.total === 6)).toBe(true);
  });

  for (const reason of ['interrupt', 'skip'] as const) {
    it(`stops on ${reason} before the next model call and returns the last denoised latent`, async () => {
      for (const sampler of ['Heun', 'DDIM', 'UniPC', 'DPM adaptive']) {
        const plan = planSampling({ sampler, steps: 10, schedule });
        const r = rng();
        let calls = 0;
        let last: Float32Array | undefined;
        const res = await runSampler(
          plan,
          {
            model: async (x) => (calls++, shrink(x)),
            epsModel: async (x) => (calls++, shrink(x)),
            alphasCumprod: ac,
            noise: imageRngNoise(r),
            callback: (s) => (last = s.denoised),
            shouldStop: () => (calls >= 3 ? reason : null),
          },
          startLatent(plan, r.next()),
        );
        expect(res.stopped, sampler).toBe(reason);
        expect(calls, sampler).toBe(3);
        expect(res.x, sampler).toBe(last);
      }
    });
  }
});

describe('every sampler: a callback per step, interrupt and skip between model calls', () => {
  const run = async (label: string, stopAfter: number | null, reason: 'interrupt' | 'skip' = 'interrupt') => {
    const plan = planSampling({ sampler: label, steps: 8, schedule });
    const r = new ImageRng({ shape: [1, 2, 2], seeds: [1] });
    const start = startLatent(plan, r.next());
    let calls = 0;
    let last: Float32Array | undefined;
    const steps: StepInfo[] = [];
    let lastEps: Float32Array | undefined;
    const res = await runSampler(
      plan,
      {
        model: async (x) => (calls++, shrink(x)),
        epsModel: async (x) => (calls++, (lastEps = await shrink(x))),
        // Unguided, the model's eps is also its unconditional one (DDIM CFG++ reads it).
        lastUncond: () => lastEps,
        alphasCumprod: ac,
        noise: imageRngNoise(r),
        callback: (s) => (steps.push(s), (last = s.denoised)),
        shouldStop: () => (stopAfter !== null && calls >= stopAfter ? reason : null),
      },
      start,
    );
    return { res, calls, steps, last, start };
  };

  for (const { label } of SAMPLERS) {
    it(label, async () => {
      const full = await run(label, null);
      expect(full.res.stopped).toBeUndefined();
      expect(full.steps.length).toBeGreaterThan(0);
      expect(full.steps.map((s) => s.i)).toEqual(full.steps.map((_, i) => i));
      expect(full.steps.every((s) => s.total > 0 && s.denoised.length === 4)).toBe(true);
      expect(full.calls).toBeGreaterThan(3);
      for (const reason of ['interrupt', 'skip'] as const) {
        const cut = await run(label, 3, reason);
        expect(cut.res.stopped).toBe(reason);
        expect(cut.calls).toBe(3); // no model call after the check said stop
        expect(cut.res.x).toBe(cut.last ?? cut.start);
      }
    });
  }
});
