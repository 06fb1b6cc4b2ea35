import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  findSampler,
  findScheduler,
  requireSampler,
  resolveSampler,
  SAMPLERS,
  samplersForApi,
  schedulersForApi,
} from '../../src/sampling/index.js';
import { goldenPath } from '../helpers/golden.js';

interface MapEntry {
  label: string;
  function: string;
  aliases: string[];
  default_scheduler?: string;
  discard_next_to_last_sigma?: boolean;
  second_order?: boolean;
  uses_ensd?: boolean;
  brownian_noise?: boolean;
  solver_type?: string | null;
  eta_default?: number | null;
  options: { scheduler?: string };
}
const map = JSON.parse(readFileSync(goldenPath('schedules', 'samplers_map.json'), 'utf8')) as {
  k_diffusion: MapEntry[];
  timesteps: MapEntry[];
  lcm: MapEntry[];
  schedulers: { name: string; label: string }[];
};
// A1111 1.10 added "DDIM CFG++" right after DDIM (sd_samplers_timesteps.py samplers_timesteps); a map
// made from an older A1111 lacks it (its vectors: test/fixtures/ddim-cfgpp).
if (!map.timesteps.some((e) => e.label === 'DDIM CFG++')) {
  const at = map.timesteps.findIndex((e) => e.label === 'DDIM') + 1;
  map.timesteps.splice(at, 0, {
    label: 'DDIM CFG++',
    function: 'modules.sd_samplers_timesteps_impl.ddim_cfgpp',
    aliases: ['ddim_cfgpp'],
    options: {},
    eta_default: 0,
  });
}

describe("sampler registry matches A1111's table (samplers_map.json)", () => {
  const all = [...map.k_diffusion, ...map.timesteps, ...map.lcm];

  it('has every A1111 sampler with its options', () => {
    expect(all.length).toBeGreaterThan(0);
    for (const e of all) {
      const found = findSampler(e.label);
      expect(found, e.label).toBeDefined();
      const s = found!.sampler;
      expect(s.label).toBe(e.label);
      expect(s.functionName, e.label).toBe(e.function.split('.').pop());
      expect(s.scheduler, e.label).toBe(e.options.scheduler);
      if (e.discard_next_to_last_sigma !== undefined)
        expect(s.discardNextToLastSigma, e.label).toBe(e.discard_next_to_last_sigma);
      if (e.second_order !== undefined) expect(s.secondOrder, e.label).toBe(e.second_order);
      if (e.uses_ensd !== undefined) expect(s.usesEnsd, e.label).toBe(e.uses_ensd);
      if (e.brownian_noise !== undefined) expect(s.brownianNoise, e.label).toBe(e.brownian_noise);
      if (e.solver_type !== undefined) expect(s.solverType ?? null, e.label).toBe(e.solver_type);
      // A1111 passes eta to every function that takes one (DPM2 a included, though the map lists null there).
      if (e.eta_default !== undefined && e.eta_default !== null)
        expect(s.etaDefault, e.label).toBe(e.eta_default);
      for (const a of e.aliases) expect(findSampler(a)?.sampler.label, a).toBe(e.label);
    }
    expect(SAMPLERS.length).toBe(all.length);
  });

  it('maps the old "<sampler> <scheduler>" names to sampler + schedule', () => {
    for (const e of map.k_diffusion) {
      for (const sch of map.schedulers) {
        if (sch.name === 'automatic') continue;
        const found = findSampler(`${e.label} ${sch.label}`);
        expect(found?.sampler.label).toBe(e.label);
        expect(found?.scheduler).toBe(sch.name);
      }
    }
    expect(findSampler('k_dpmpp_2m_ka')).toMatchObject({
      sampler: { label: 'DPM++ 2M' },
      scheduler: 'karras',
    });
    expect(() => requireSampler('Nope')).toThrow(/unknown sampler "Nope"; available: .*Euler a/);
  });
});

describe('registry API views (A1111 /sdapi/v1/samplers and /schedulers)', () => {
  const all = [...map.k_diffusion, ...map.timesteps, ...map.lcm];
  const pyStr = (v: unknown) => (v === true ? 'True' : v === false ? 'False' : String(v));

  it('samplersForApi lists every sampler in A1111 order with its stringified options', () => {
    const api = samplersForApi();
    expect(api.map((s) => s.name)).toEqual(all.map((e) => e.label));
    for (const [i, e] of all.entries()) {
      expect(api[i]!.aliases).toEqual(e.aliases);
      const expected = Object.fromEntries(Object.entries(e.options).map(([k, v]) => [k, pyStr(v)]));
      expect(api[i]!.options, e.label).toEqual(expected);
    }
  });

  it('schedulersForApi lists every scheduler with rho, need_inner_model and aliases (null when none)', () => {
    const full = JSON.parse(readFileSync(goldenPath('schedules', 'samplers_map.json'), 'utf8')) as {
      schedulers: {
        name: string;
        label: string;
        default_rho: number;
        need_inner_model: boolean;
        aliases: string[] | null;
      }[];
    };
    expect(schedulersForApi()).toEqual(
      full.schedulers.map((s) => ({
        name: s.name,
        label: s.label,
        aliases: s.aliases,
        default_rho: s.default_rho,
        need_inner_model: s.need_inner_model,
      })),
    );
  });
});

describe('resolveSampler: one resolution for validation, generation and infotext', () => {
  it('matches names, aliases and schedule types case-insensitively', () => {
    for (const s of SAMPLERS) {
      expect(resolveSampler(s.label.toUpperCase()).sampler).toBe(s);
      for (const a of s.aliases) expect(resolveSampler(a.toUpperCase()).sampler).toBe(s);
    }
    expect(resolveSampler('euler a', 'KARRAS').effectiveScheduler.name).toBe('karras');
    expect(resolveSampler('Euler', 'sgmuniform').scheduler.name).toBe('sgm_uniform');
    expect(findScheduler('align your steps')?.name).toBe('align_your_steps');
  });

  it('resolves Automatic to the sampler default and lets a combined name win, as A1111', () => {
    const dpm = resolveSampler('DPM++ 2M');
    expect(dpm.scheduler.name).toBe('automatic');
    expect(dpm.effectiveScheduler.label).toBe('Karras');
    expect(resolveSampler('Euler a').effectiveScheduler.name).toBe('automatic');
    const combined = resolveSampler('DPM++ 2M SDE Karras', 'Exponential');
    expect(combined.sampler.label).toBe('DPM++ 2M SDE');
    expect(combined.effectiveScheduler.name).toBe('karras');
    expect(resolveSampler('Euler SGMUniform').effectiveScheduler.name).toBe('sgm_uniform');
    expect(() => resolveSampler('Euler', 'Nope')).toThrow(/scheduler "Nope" is unknown/);
    expect(() => resolveSampler('Nope', 'Automatic', 'hr_sampler_name')).toThrow(
      /hr_sampler_name "Nope" is unknown/,
    );
  });

  it('each entry runs through its own function (the registry holds the implementation)', async () => {
    const sigmas = [2, 1, 0];
    for (const s of SAMPLERS.filter((x) => x.kind !== 'timesteps')) {
      let calls = 0;
      const out = await s.sample(
        {
          model: async (x) => {
            calls++;
            return x.map(() => 0);
          },
          noise: {
            sample: () => new Float32Array(2),
            randnLike: () => new Float32Array(2),
            skipRandnLike() {},
          },
          callback: () => undefined,
          sigmas,
          timesteps: [],
          img2img: false,
          sigmaMin: 1,
          sigmaMax: 2,
          n: 2,
          eta: 0,
          options: {},
        },
        new Float32Array([1, -1]),
      );
      expect(calls, s.label).toBeGreaterThan(0);
      // A model that always predicts x0 = 0 ends every deterministic (eta 0) walk to sigma 0 at 0.
      if (s.functionName !== 'sample_dpm_fast' && s.functionName !== 'sample_dpm_adaptive')
        for (const v of out) expect(Math.abs(v), s.label).toBeLessThan(1e-6);
    }
  });
});
