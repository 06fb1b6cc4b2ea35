/**
 * A1111's "DDIM CFG++" (`ddim_cfgpp`) against vectors made by running the upstream function on a
 * stand-in CFG denoiser and network (test/fixtures/ddim-cfgpp/README.md). Each case goes through
 * the pipeline's CFG denoiser, the registry's plan and `runSampler`, as a generation does; then the
 * sampler through the front doors' shared pieces: the API list, validation and the infotext.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { paramsFromInfotext, paramsToInfotextFields } from '../../src/infotext/infotext-fields.js';
import { formatInfotext, parseInfotext } from '../../src/infotext/infotext.js';
import { withDefaults } from '../../src/params/generation.js';
import { validateParams } from '../../src/params/validate.js';
import { CfgDenoiser, type ImageConditioning, type UNetFn } from '../../src/pipeline/denoiser.js';
import { planSampling, resolveSampler, runSampler, samplersForApi } from '../../src/sampling/index.js';
import { DiscreteSchedule } from '../../src/sampling/schedules.js';
import type { NoiseSource } from '../../src/sampling/types.js';
import { mismatches } from './golden.js';

interface Case {
  name: string;
  steps: number;
  eta: number;
  cfg_scale: number;
  s_min_uncond: number;
  images: { parts: { cond: number; weight: number }[]; uncond: number }[];
  timesteps: number[];
  x_in: number[];
  noise: number[][];
  model_calls: { t: number; skip_uncond: boolean }[];
  out: number[];
}
const fixture = JSON.parse(
  readFileSync(new URL('../fixtures/ddim-cfgpp/cases.json', import.meta.url), 'utf8'),
) as { shape_per_image: [number, number, number]; alphas_cumprod: number[]; cases: Case[] };
const TOL = 1e-4;

/** The fixture's stand-in network: eps per row from its latent, timestep and conditioning id c. */
const unet: UNetFn = async (x, t, context) => {
  const [b] = x.dims as [number];
  const per = x.data.length / b;
  const tokens = context.data.length / b; // one token of width 1 per row: the conditioning id
  const out = new Float32Array(x.data.length);
  for (let r = 0; r < b; r++) {
    const c = context.data[r * tokens]!;
    const tt = t.data[r]! / 1000;
    for (let i = r * per; i < (r + 1) * per; i++) {
      const v = x.data[i]!;
      out[i] = 0.5 * Math.tanh(v + 0.1 * c) + 0.1 * v * tt + 0.05 * c;
    }
  }
  return { data: out, dims: x.dims };
};

const id = (c: number) => [{ endAtStep: 1e9, cond: { data: new Float32Array([c]), dims: [1, 1] } }];

async function run(c: Case, sampler: string) {
  const schedule = new DiscreteSchedule(Float32Array.from(fixture.alphas_cumprod));
  const plan = planSampling({ sampler, steps: c.steps, schedule });
  const calls: { t: number; skipUncond: boolean }[] = [];
  const images: ImageConditioning[] = c.images.map((img) => ({
    parts: img.parts.map((p) => ({ schedule: id(p.cond), weight: p.weight })),
    uncond: id(img.uncond),
  }));
  const denoiser = new CfgDenoiser({
    unet,
    schedule,
    latentShape: fixture.shape_per_image,
    images,
    cfgScale: c.cfg_scale,
    cfgScaleMultiplier: plan.sampler.cfgScaleMultiplier,
    sMinUncond: c.s_min_uncond,
    onModelCall: ({ t, skipUncond }) => calls.push({ t, skipUncond }),
  });
  let drawn = 0;
  const noise: NoiseSource = {
    sample: () => {
      throw new Error('DDIM draws its noise with randn_like');
    },
    randnLike: () => {
      const n = c.noise[drawn++];
      if (!n) throw new Error(`drew more noise than the ${c.noise.length} recorded tensors`);
      return Float32Array.from(n);
    },
    skipRandnLike: () => {},
  };
  const r = await runSampler(
    plan,
    {
      epsModel: denoiser.epsModel,
      lastUncond: denoiser.lastUncond,
      alphasCumprod: schedule.alphasCumprod,
      noise,
    },
    Float32Array.from(c.x_in),
    { eta: c.eta },
  );
  return { x: r.x, plan, calls, drawn };
}

describe('DDIM CFG++ replays A1111 ddim_cfgpp (test/fixtures/ddim-cfgpp)', () => {
  it('has cases', () => {
    expect(fixture.cases.length).toBeGreaterThan(0);
  });

  for (const c of fixture.cases) {
    it(`${c.name}: timesteps, model calls, noise draws and output match`, async () => {
      const { x, plan, calls, drawn } = await run(c, 'DDIM CFG++');
      expect(plan.timesteps).toEqual(c.timesteps);
      expect(calls.map((k) => k.t)).toEqual(c.model_calls.map((k) => k.t));
      expect(calls.map((k) => k.skipUncond)).toEqual(c.model_calls.map((k) => k.skip_uncond));
      expect(drawn).toBe(c.noise.length);
      const bad = mismatches(x, c.out, TOL, TOL);
      expect(bad, bad.first.join(', ')).toMatchObject({ count: 0 });
      // Plain DDIM on the same inputs lands elsewhere: the vectors do tell the two apart.
      const ddim = await run(c, 'DDIM');
      expect(mismatches(ddim.x, c.out, TOL, TOL).count).toBeGreaterThan(0);
    });
  }
});

describe('DDIM CFG++ in the registry and at the front doors', () => {
  it('resolves by label and alias, with DDIM’s eta and schedule, and CFG scaled by 1/12.5', () => {
    const s = resolveSampler('ddim_cfgpp').sampler;
    expect(s.label).toBe('DDIM CFG++');
    expect(resolveSampler('DDIM CFG++').sampler).toBe(s);
    expect(s).toMatchObject({
      kind: 'timesteps',
      etaDefault: 0,
      etaInfotextKey: 'Eta DDIM',
      params: ['eta'],
    });
    expect(s.cfgScaleMultiplier).toBeCloseTo(1 / 12.5, 12);
    expect(resolveSampler('DDIM').sampler.cfgScaleMultiplier).toBe(1);
  });

  it('is listed by /sdapi/v1/samplers right after DDIM, as in A1111 1.10', () => {
    const names = samplersForApi().map((s) => s.name);
    expect(names[names.indexOf('DDIM') + 1]).toBe('DDIM CFG++');
    expect(samplersForApi().find((s) => s.name === 'DDIM CFG++')).toEqual({
      name: 'DDIM CFG++',
      aliases: ['ddim_cfgpp'],
      options: {},
    });
  });

  it('is accepted by request validation and round-trips through the infotext with its eta', () => {
    const params = withDefaults({ seed: 1, sampler_name: 'ddim_cfgpp', eta: 0.3, cfg_scale: 6 });
    expect(() => validateParams(params)).not.toThrow();
    const fields = paramsToInfotextFields(params, { mode: 'txt2img' });
    expect(fields.Sampler).toBe('DDIM CFG++');
    expect(fields['Eta DDIM']).toBe(0.3);
    expect(fields['CFG scale']).toBe(6); // the scale asked for, not the divided one
    const text = formatInfotext({ prompt: 'a cat', negativePrompt: '', params: fields });
    const back = withDefaults(paramsFromInfotext(parseInfotext(text)));
    expect(resolveSampler(back.sampler_name!).sampler.label).toBe('DDIM CFG++');
    expect(back.eta).toBe(0.3);
  });
});
