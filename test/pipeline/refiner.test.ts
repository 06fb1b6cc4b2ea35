/**
 * The SDXL refiner switch (pipeline/refiner.ts) as A1111's apply_refiner judges progress: by the
 * timestep nearest each call's sigma, (999 − t) / 1000, handing over for good at the first call at
 * or past "Refiner switch at", with the prompt-editing step counter carried over.
 */
import { describe, expect, it } from 'vitest';
import { CfgDenoiser } from '../../src/pipeline/denoiser.js';
import { refinerCompletedRatio, refinerSwitch } from '../../src/pipeline/refiner.js';
import { planSampling } from '../../src/sampling/index.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../../src/sampling/schedules.js';

const schedule = new DiscreteSchedule(sdAlphasCumprod());

/** A denoiser whose UNet answers with a constant, so the output says which model ran. */
function constant(value: number, calls: number[]): CfgDenoiser {
  const cond = { data: new Float32Array(2), dims: [1, 2] };
  return new CfgDenoiser({
    unet: async (x) => {
      calls.push(value);
      return { data: new Float32Array(x.data.length).fill(value), dims: x.dims };
    },
    schedule,
    latentShape: [1, 1, 1],
    images: [
      { parts: [{ schedule: [{ endAtStep: 100, cond }], weight: 1 }], uncond: [{ endAtStep: 100, cond }] },
    ],
    cfgScale: 1,
  });
}

describe('refiner switch', () => {
  it("each timestep's own sigma gives (999 − t) / 1000", () => {
    for (const t of [0, 1, 199, 500, 799, 998, 999]) {
      expect(refinerCompletedRatio(schedule, schedule.sigmas[t]!)).toBeCloseTo((999 - t) / 1000, 12);
    }
  });

  for (const switchAt of [0.2, 0.5, 0.8, 1]) {
    it(`switch at ${switchAt}: the base until a call's progress reaches it, then the refiner to the end`, async () => {
      const calls: number[] = [];
      const base = constant(1, calls);
      const refiner = constant(2, calls);
      let told = 0;
      const fns = refinerSwitch(base, refiner, switchAt, schedule, () => told++);
      const plan = planSampling({ sampler: 'Euler', steps: 10, schedule });
      const sigmas = plan.sigmas.slice(0, -1);
      for (const s of sigmas) await fns.model(Float32Array.of(0), s);
      const expected = sigmas.map((s) => (refinerCompletedRatio(schedule, s) >= switchAt ? 2 : 1));
      // Progress only grows, so the refiner's calls are one run at the end.
      expect(calls).toEqual(expected.map((v, i) => (expected.slice(0, i + 1).includes(2) ? 2 : v)));
      expect(told).toBe(expected.includes(2) ? 1 : 0);
      // The refiner continued the base's per-call step counter (prompt editing keeps its place).
      if (expected.includes(2)) expect(refiner.step).toBe(calls.length);
    });
  }

  it('the timestep samplers switch by their own timestep', async () => {
    const calls: number[] = [];
    const fns = refinerSwitch(constant(1, calls), constant(2, calls), 0.5, schedule, () => undefined);
    for (const t of [999, 700, 501, 499, 100]) await fns.epsModel(Float32Array.of(0), t);
    expect(calls).toEqual([1, 1, 1, 2, 2]);
  });
});
