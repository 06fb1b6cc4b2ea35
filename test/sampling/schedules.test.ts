import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  a1111Sigmas,
  a1111Timesteps,
  DiscreteSchedule,
  exponentialSigmas,
  findScheduler,
  img2imgSteps,
  karrasSigmas,
  lcmSigmas,
  polyexponentialSigmas,
  sdAlphasCumprod,
  type SchedulerName,
} from '../../src/sampling/schedules.js';
import { findSampler } from '../../src/sampling/index.js';
import { goldenPath } from '../helpers/golden.js';
import { mismatches, openGoldenSet, readGoldenJson, type GoldenSet } from './golden.js';

interface ScheduleCase {
  tensor: string;
  length: number;
  kind: string;
  n?: number;
  steps?: number;
  sigma_min?: number;
  sigma_max?: number;
  rho?: number;
  scheduler?: string;
  sampler?: string;
  discard_next_to_last_sigma?: boolean;
}
interface ScheduleJson {
  tensor_file: string;
  model: { alphas_cumprod: string; sigmas: string; log_sigmas: string; sigma_min: number; sigma_max: number };
  a1111_defaults: { beta_dist_alpha: number; beta_dist_beta: number };
  conversions: Record<string, [string, string]>;
  cases: ScheduleCase[];
}

// README: float32 |a-b| <= 1e-5 + 1e-5*|b| for sigmas and t; timesteps exact; a trailing 0 exactly 0.
const TOL = 1e-5;

const scheduleCases = readGoldenJson<ScheduleJson>('schedules').cases;
let golden: GoldenSet<ScheduleJson>;
let model: DiscreteSchedule;
beforeAll(async () => {
  golden = await openGoldenSet('schedules');
  model = new DiscreteSchedule(await golden.tensor(golden.json.model.alphas_cumprod));
});
afterAll(() => golden.close());

function schedulerName(name: string): SchedulerName {
  const found = findScheduler(name);
  if (!found) throw new Error(`golden names scheduler "${name}" that we do not have`);
  return found.name;
}

/** Our sigmas (or timesteps) for one case, by the case's kind and arguments. */
function compute(c: ScheduleCase, m: DiscreteSchedule): number[] {
  const opts = {
    betaAlpha: golden.json.a1111_defaults.beta_dist_alpha,
    betaBeta: golden.json.a1111_defaults.beta_dist_beta,
  };
  switch (c.kind) {
    case 'compvis_get_sigmas':
      return m.getSigmas(c.n!);
    case 'karras':
      return karrasSigmas(c.n!, c.sigma_min!, c.sigma_max!, c.rho);
    case 'exponential':
      return exponentialSigmas(c.n!, c.sigma_min!, c.sigma_max!);
    case 'polyexponential':
      return polyexponentialSigmas(c.n!, c.sigma_min!, c.sigma_max!, c.rho);
    case 'lcm_get_sigmas':
      return lcmSigmas(c.n!, m.alphasCumprod);
    case 'a1111_timesteps':
      return a1111Timesteps(c.n!);
    case 'a1111_scheduler':
      return a1111Sigmas(m, { ...opts, steps: c.steps!, scheduler: schedulerName(c.scheduler!) });
    case 'a1111_sampler_automatic':
    case 'a1111_sampler_with_scheduler': {
      const found = findSampler(c.sampler!);
      if (!found) throw new Error(`golden names sampler "${c.sampler}" that we do not have`);
      expect(found.sampler.discardNextToLastSigma).toBe(c.discard_next_to_last_sigma);
      return a1111Sigmas(m, {
        ...opts,
        steps: c.steps!,
        scheduler: c.scheduler ? schedulerName(c.scheduler) : 'automatic',
        samplerScheduler: found.sampler.scheduler,
        discardNextToLastSigma: found.sampler.discardNextToLastSigma,
      });
    }
    default:
      throw new Error(`golden case kind "${c.kind}" is not handled by this test`);
  }
}

describe('noise schedules replay golden/schedules', () => {
  it('builds the SD alphas_cumprod, sigmas and log-sigmas', async () => {
    const { model: mj } = golden.json;
    const ac = await golden.tensor(mj.alphas_cumprod);
    expect(mismatches(sdAlphasCumprod(), ac, 0, 1e-6).count).toBe(0);
    expect(mismatches(model.sigmas, await golden.tensor(mj.sigmas), TOL, TOL).count).toBe(0);
    expect(mismatches(model.logSigmas, await golden.tensor(mj.log_sigmas), TOL, TOL).count).toBe(0);
    expect(model.sigmaMin).toBeCloseTo(mj.sigma_min, 6);
    expect(model.sigmaMax).toBeCloseTo(mj.sigma_max, 4);
  });

  it('has cases', () => {
    expect(scheduleCases.length).toBeGreaterThan(0);
  });

  for (const c of scheduleCases) {
    it(`${c.kind} ${c.tensor} matches`, async () => {
      const expected = await golden.tensor(c.tensor);
      const got = compute(c, model);
      expect(got.length, c.tensor).toBe(c.length);
      const exact = c.kind === 'a1111_timesteps';
      const bad = mismatches(got, expected, exact ? 0 : TOL, exact ? 0 : TOL);
      expect(bad, `${c.tensor}: ${bad.first.join(', ')}`).toMatchObject({ count: 0 });
      if (expected[expected.length - 1] === 0) expect(Object.is(got[got.length - 1], 0), c.tensor).toBe(true);
    });
  }

  it('sigma <-> t conversions match', async () => {
    const entries = Object.entries(golden.json.conversions);
    expect(entries.length).toBeGreaterThan(0);
    for (const [kind, [inName, outName]] of entries) {
      const input = await golden.tensor(inName);
      const fn =
        kind === 'sigma_to_t'
          ? (v: number) => model.sigmaToT(v)
          : kind === 't_to_sigma'
            ? (v: number) => model.tToSigma(v)
            : null;
      if (!fn) throw new Error(`conversion "${kind}" is not handled by this test`);
      const bad = mismatches(Array.from(input, fn), await golden.tensor(outName), TOL, TOL);
      expect(bad, `${kind}: ${bad.first.join(', ')}`).toMatchObject({ count: 0 });
    }
  });

  it('every scheduler in samplers_map.json exists with its label, rho and aliases', () => {
    const map = JSON.parse(readFileSync(goldenPath('schedules', 'samplers_map.json'), 'utf8')) as {
      schedulers: { name: string; label: string; default_rho: number; aliases: string[] | null }[];
    };
    for (const s of map.schedulers) {
      const ours = findScheduler(s.name);
      expect(ours, s.name).toBeDefined();
      expect(ours!.label).toBe(s.label);
      expect(ours!.defaultRho).toBe(s.default_rho);
      for (const a of s.aliases ?? []) expect(findScheduler(a)?.name).toBe(s.name);
    }
  });

  it('cuts img2img schedules where A1111 does', () => {
    expect(img2imgSteps(20, 0.75)).toEqual({ steps: 20, tEnc: 15 });
    expect(img2imgSteps(20, 1)).toEqual({ steps: 20, tEnc: 19 });
    expect(img2imgSteps(20, 0.5, true)).toEqual({ steps: 40, tEnc: 19 });
    expect(() => img2imgSteps(20, 1.5)).toThrow(/denoising strength/);
  });

  it('applies sigma min/max and rho overrides', () => {
    const base = a1111Sigmas(model, { steps: 10, scheduler: 'karras' });
    const over = a1111Sigmas(model, { steps: 10, scheduler: 'karras', sigmaMin: 0.1, sigmaMax: 10, rho: 5 });
    expect(over).toEqual(karrasSigmas(10, 0.1, 10, 5));
    expect(over).not.toEqual(base);
    expect(() => a1111Sigmas(model, { steps: 10, scheduler: 'karras', sigmaMin: 20 })).toThrow(/sigma range/);
    expect(() => a1111Sigmas(model, { steps: 0, scheduler: 'karras' })).toThrow(/steps/);
  });
});
