/**
 * The SDXL refiner switch (pipeline/refiner.ts) as A1111's apply_refiner judges progress: by the
 * timestep nearest each call's sigma, (999 − t) / 1000, handing over for good at the first call at
 * or past "Refiner switch at"; and the CFG denoiser handing each UNet call the refiner's rows
 * (ScheduledCond.alt) beside the base's.
 */
import { describe, expect, it } from 'vitest';
import { CfgDenoiser, type AltConditioning, type ScheduledCond } from '../../src/pipeline/denoiser.js';
import { refinerCompletedRatio, refinerGate, refinerStepGate } from '../../src/pipeline/refiner.js';
import { planSampling } from '../../src/sampling/index.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../../src/sampling/schedules.js';

const schedule = new DiscreteSchedule(sdAlphasCumprod());

describe('refiner switch', () => {
  it("each timestep's own sigma gives (999 − t) / 1000", () => {
    for (const t of [0, 1, 199, 500, 799, 998, 999]) {
      expect(refinerCompletedRatio(schedule, schedule.sigmas[t]!)).toBeCloseTo((999 - t) / 1000, 12);
    }
  });

  for (const switchAt of [0.2, 0.5, 0.8, 1]) {
    it(`switch at ${switchAt}: closed until a call's progress reaches it, then open to the end`, () => {
      let told = 0;
      const gate = refinerGate(schedule, switchAt, () => told++);
      const plan = planSampling({ sampler: 'Euler', steps: 10, schedule });
      const sigmas = plan.sigmas.slice(0, -1);
      const open = sigmas.map((s) => gate(schedule.sigmaToT(s)));
      const reached = sigmas.map((s) => refinerCompletedRatio(schedule, s) >= switchAt);
      expect(open).toEqual(reached);
      const first = open.indexOf(true);
      if (first >= 0) expect(open.slice(first).every(Boolean)).toBe(true);
      expect(told).toBe(first >= 0 ? 1 : 0);
      // Once open it stays open, even for a noisier call (A1111 keeps the refiner loaded).
      if (first >= 0) expect(gate(999)).toBe(true);
    });
  }

  it('the timestep samplers switch by their own timestep', () => {
    const gate = refinerGate(schedule, 0.5, () => undefined);
    expect([999, 700, 501, 499, 100].map((t) => gate(t))).toEqual([false, false, false, true, true]);
  });

  it("the CFG denoiser hands the UNet the refiner's rows and vectors beside the base's", async () => {
    const cond = (v: number, y: number) => ({
      cond: { data: new Float32Array(4).fill(v), dims: [1, 4] },
      y: { data: Float32Array.of(y, y), dims: [2] },
    });
    const c0: ScheduledCond = { endAtStep: 10, ...cond(1, 10), alt: cond(2, 20) };
    const u0: ScheduledCond = { endAtStep: 10, ...cond(3, 30), alt: cond(4, 40) };
    const seen: { y?: (typeof c0)['y']; alt?: AltConditioning }[] = [];
    const contexts: number[][] = [];
    const d = new CfgDenoiser({
      unet: async (x, _t, context, y, alt) => {
        seen.push({ y, alt });
        contexts.push([...context.data]);
        return { data: new Float32Array(x.data.length), dims: x.dims };
      },
      schedule,
      latentShape: [1, 1, 1],
      images: [
        {
          parts: [{ schedule: [c0], weight: 1 }],
          uncond: [u0],
        },
      ],
      cfgScale: 5,
    });
    await d.model(Float32Array.of(0.5), 1);
    expect(contexts[0]).toEqual([1, 1, 1, 1, 3, 3, 3, 3]);
    expect([...seen[0]!.y!.data]).toEqual([10, 10, 30, 30]);
    expect([...seen[0]!.alt!.context.data]).toEqual([2, 2, 2, 2, 4, 4, 4, 4]);
    expect([...seen[0]!.alt!.y!.data]).toEqual([20, 20, 40, 40]);
  });
});

describe('refiner switch by sampling steps (A1111 refiner_switch_by_sample_steps)', () => {
  for (const [total, switchAt, first] of [
    [10, 0.8, 8],
    [10, 0.25, 3],
    [20, 0.5, 10],
    [4, 1, -1],
  ] as const) {
    it(`${total} model calls, switch at ${switchAt}: the refiner from call ${first}`, () => {
      let told = 0;
      const gate = refinerStepGate(total, switchAt, () => told++);
      const open = Array.from({ length: total }, (_, step) => gate(step));
      expect(open.indexOf(true)).toBe(first);
      if (first >= 0) expect(open.slice(first).every(Boolean)).toBe(true);
      expect(told).toBe(first >= 0 ? 1 : 0);
    });
  }
});
