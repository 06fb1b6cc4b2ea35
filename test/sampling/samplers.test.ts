import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleDpmAdaptive, sampleDpmFast } from '../../src/sampling/samplers/dpmSolver.js';
import * as dpmpp from '../../src/sampling/samplers/dpmpp.js';
import * as karras from '../../src/sampling/samplers/karras.js';
import { sampleLcm } from '../../src/sampling/samplers/lcm.js';
import { sampleLms } from '../../src/sampling/samplers/lms.js';
import { sampleRestart } from '../../src/sampling/samplers/restart.js';
import { sampleDdim, samplePlms } from '../../src/sampling/samplers/timesteps.js';
import { sampleUniPc } from '../../src/sampling/samplers/unipc.js';
import type { NoiseSource, SamplerContext, TimestepSamplerContext } from '../../src/sampling/types.js';
import { mismatches, openGoldenSet, readGoldenJson, type GoldenSet } from './golden.js';

interface SamplerCase {
  name: string;
  function: string;
  kwargs: Record<string, unknown>;
  sigmas: string | null;
  timesteps?: string;
  x_in: string;
  out: string;
  noise: string[];
  noise_delivery: string;
  noise_call_args: [number, number][] | null;
  model: 'denoiser' | 'eps';
  n_model_calls: number;
  model_call_sigma_or_t: number[];
}
interface SamplersJson {
  tensor_file: string;
  cases: SamplerCase[];
}

// README: outputs |a-b| <= 1e-4 + 1e-4*|b|; model calls and noise draws must match exactly in number.
const TOL = 1e-4;

/** The README's closed-form models (elementwise). */
function syntheticDenoiser(x: Float32Array, sigma: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++)
    out[i] = x[i]! / (1 + sigma * sigma) + (0.1 * Math.tanh(x[i]!) * sigma) / (1 + sigma);
  return out;
}
function syntheticEps(x: Float32Array, t: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = 0.5 * Math.tanh(x[i]!) + 0.1 * x[i]! * (t / 1000);
  return out;
}

/** snake_case kwargs of the upstream call → our camelCase options. */
function options(kwargs: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(kwargs).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), v]),
  );
}

type Runner = (
  k: SamplerContext,
  t: TimestepSamplerContext,
  x: Float32Array,
  sigmas: number[],
  timesteps: number[],
  o: Record<string, unknown>,
) => Promise<Float32Array>;

/** Upstream function → our implementation. */
const IMPLEMENTATIONS: Record<string, Runner> = {
  'k_diffusion.sampling.sample_euler': (k, _t, x, s, _ts, o) => karras.sampleEuler(k, x, s, o),
  'k_diffusion.sampling.sample_euler_ancestral': (k, _t, x, s, _ts, o) =>
    karras.sampleEulerAncestral(k, x, s, o),
  'k_diffusion.sampling.sample_heun': (k, _t, x, s, _ts, o) => karras.sampleHeun(k, x, s, o),
  'k_diffusion.sampling.sample_dpm_2': (k, _t, x, s, _ts, o) => karras.sampleDpm2(k, x, s, o),
  'k_diffusion.sampling.sample_dpm_2_ancestral': (k, _t, x, s, _ts, o) =>
    karras.sampleDpm2Ancestral(k, x, s, o),
  'k_diffusion.sampling.sample_lms': (k, _t, x, s, _ts, o) => sampleLms(k, x, s, o),
  'k_diffusion.sampling.sample_dpmpp_2s_ancestral': (k, _t, x, s, _ts, o) =>
    dpmpp.sampleDpmpp2sAncestral(k, x, s, o),
  'k_diffusion.sampling.sample_dpmpp_sde': (k, _t, x, s, _ts, o) => dpmpp.sampleDpmppSde(k, x, s, o),
  'k_diffusion.sampling.sample_dpmpp_2m': (k, _t, x, s) => dpmpp.sampleDpmpp2m(k, x, s),
  'k_diffusion.sampling.sample_dpmpp_2m_sde': (k, _t, x, s, _ts, o) => dpmpp.sampleDpmpp2mSde(k, x, s, o),
  'k_diffusion.sampling.sample_dpmpp_3m_sde': (k, _t, x, s, _ts, o) => dpmpp.sampleDpmpp3mSde(k, x, s, o),
  'k_diffusion.sampling.sample_dpm_fast': (k, _t, x, _s, _ts, o) =>
    sampleDpmFast(k, x, o as unknown as Parameters<typeof sampleDpmFast>[2]),
  'k_diffusion.sampling.sample_dpm_adaptive': (k, _t, x, _s, _ts, o) =>
    sampleDpmAdaptive(k, x, o as unknown as Parameters<typeof sampleDpmAdaptive>[2]),
  'modules.sd_samplers_extra.restart_sampler': (k, _t, x, s, _ts, o) => sampleRestart(k, x, s, o),
  'modules.sd_samplers_lcm.sample_lcm': (k, _t, x, s) => sampleLcm(k, x, s),
  'modules.sd_samplers_timesteps_impl.ddim': (_k, t, x, _s, ts, o) => sampleDdim(t, x, ts, o),
  'modules.sd_samplers_timesteps_impl.plms': (_k, t, x, _s, ts) => samplePlms(t, x, ts),
  'modules.sd_samplers_timesteps_impl.unipc': (_k, t, x, _s, ts) => sampleUniPc(t, x, ts),
};

let golden: GoldenSet<SamplersJson>;
let schedules: GoldenSet<{ tensor_file: string; model: { alphas_cumprod: string } }>;
beforeAll(async () => {
  golden = await openGoldenSet('samplers');
  schedules = await openGoldenSet('schedules');
});
afterAll(async () => {
  await golden.close();
  await schedules.close();
});

const samplerCases = readGoldenJson<SamplersJson>('samplers').cases;

describe('samplers replay golden/samplers on the closed-form models', () => {
  it('has cases', () => {
    expect(samplerCases.length).toBeGreaterThan(0);
  });

  for (const c of samplerCases) {
    it(`${c.name}: output, model calls and noise draws match`, async () => {
      const alphasCumprod = await schedules.tensor(schedules.json.model.alphas_cumprod);
      const run = IMPLEMENTATIONS[c.function];
      expect(run, `no implementation mapped for ${c.function}`).toBeDefined();
      const noise = await Promise.all(c.noise.map((n) => golden.tensor(n)));
      let used = 0;
      const noiseArgs: [number, number][] = [];
      const next = (): Float32Array => {
        const n = noise[used++];
        if (!n) throw new Error(`${c.name}: drew more noise than the ${noise.length} recorded tensors`);
        return n;
      };
      const source: NoiseSource = {
        sample: (s, sn) => {
          if (c.noise_delivery !== 'noise_sampler(sigma, sigma_next)')
            throw new Error(`${c.name}: unexpected noise_sampler call`);
          noiseArgs.push([s, sn]);
          return next();
        },
        randnLike: () => {
          if (!c.noise_delivery.endsWith('randn_like(x)'))
            throw new Error(`${c.name}: unexpected randn_like call`);
          return next();
        },
        skipRandnLike: () => {},
      };
      const calls: number[] = [];
      const kctx: SamplerContext = {
        model: async (x, sigma) => (calls.push(sigma), syntheticDenoiser(x, sigma)),
        noise: source,
      };
      const tctx: TimestepSamplerContext = {
        model: async (x, t) => (calls.push(t), syntheticEps(x, t)),
        noise: source,
        alphasCumprod,
      };
      const { timesteps: _ts, ...kw } = c.kwargs;
      const sigmas = c.sigmas ? Array.from(await golden.tensor(c.sigmas)) : [];
      const timesteps = c.timesteps ? Array.from(await golden.tensor(c.timesteps)) : [];
      const out = await run(kctx, tctx, await golden.tensor(c.x_in), sigmas, timesteps, options(kw));

      const bad = mismatches(out, await golden.tensor(c.out), TOL, TOL);
      expect(bad, `${c.name}: ${bad.first.join(', ')}`).toMatchObject({ count: 0 });
      expect(calls.length, `${c.name} model calls`).toBe(c.n_model_calls);
      const callBad = mismatches(calls, c.model_call_sigma_or_t, TOL, TOL);
      expect(callBad, `${c.name} model call sigmas: ${callBad.first.join(', ')}`).toMatchObject({ count: 0 });
      expect(used, `${c.name} noise draws`).toBe(c.noise.length);
      if (c.noise_call_args) {
        const flat = (a: [number, number][]) => a.flat();
        const argBad = mismatches(flat(noiseArgs), flat(c.noise_call_args), TOL, TOL);
        expect(argBad, `${c.name} noise_sampler args: ${argBad.first.join(', ')}`).toMatchObject({
          count: 0,
        });
      }
    });
  }
});
