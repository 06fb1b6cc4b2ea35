/**
 * The one CFG denoiser as the pipeline uses it: s_min_uncond (A1111 NGMS), A1111's LCM denoiser for
 * the LCM sampler, v-prediction, prompt editing past the last scheduled step, and the same through
 * `generate` on the tiny checkpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { paramsFromInfotext } from '../../src/infotext/infotext-fields.js';
import { withDefaults } from '../../src/params/generation.js';
import { CfgDenoiser, type ImageConditioning, type UNetFn } from '../../src/pipeline/denoiser.js';
import { generate } from '../../src/pipeline/generate.js';
import type { LoadedModel } from '../../src/pipeline/model.js';
import type { TensorF32 } from '../../src/runtime/sd1.js';
import { planSampling } from '../../src/sampling/index.js';
import { DiscreteSchedule, LcmSchedule, sdAlphasCumprod } from '../../src/sampling/schedules.js';
import { loadTinyModel } from '../helpers/tiny-model.js';

const ac = sdAlphasCumprod();
const schedule = new DiscreteSchedule(ac);
const shape = [1, 2, 2] as const;
const PER = 4;

/** A conditioning whose every value is `v` (one 77-token chunk of width 2). */
const cond = (v: number, tokens = 77): TensorF32 => ({
  data: new Float32Array(tokens * 2).fill(v),
  dims: [tokens, 2],
});

interface Call {
  rows: number;
  t: number[];
  /** The first context value of each row: which conditioning it got. */
  contexts: number[];
}

/** A fake UNet: its prediction for each row is the row's context value (and it records the call). */
function fakeUnet(calls: Call[]): UNetFn {
  return async (x, t, context) => {
    const rows = x.dims[0]!;
    const per = context.data.length / rows;
    const contexts = Array.from({ length: rows }, (_, r) => context.data[r * per]!);
    calls.push({ rows, t: Array.from(t.data), contexts });
    const out = new Float32Array(rows * PER);
    for (let r = 0; r < rows; r++) out.fill(contexts[r]!, r * PER, (r + 1) * PER);
    return { data: out, dims: [rows, 1, 2, 2] };
  };
}

const single = (c: number, u: number): ImageConditioning => ({
  parts: [{ schedule: [{ endAtStep: 100, cond: cond(c) }], weight: 1 }],
  uncond: [{ endAtStep: 100, cond: cond(u) }],
});

describe('CfgDenoiser: s_min_uncond (A1111 NGMS)', () => {
  it('skips the uncond rows on every second call below s_min_uncond and leaves the prompt unguided', async () => {
    const calls: Call[] = [];
    const d = new CfgDenoiser({
      unet: fakeUnet(calls),
      schedule,
      latentShape: shape,
      images: [single(0.5, 0.25)],
      cfgScale: 7,
      sMinUncond: 5,
    });
    const x = new Float32Array(PER).fill(1);
    const sigma = 2;
    const outs = [];
    for (let i = 0; i < 4; i++) outs.push(await d.model(x, sigma));
    // A1111: `self.step % 2 and sigma < s_min_uncond` — calls 1 and 3 run without the uncond row.
    expect(calls.map((c) => c.rows)).toEqual([2, 1, 2, 1]);
    const x0 = (eps: number) => 1 - sigma * eps;
    const guided = x0(0.25) + (x0(0.5) - x0(0.25)) * 7;
    expect(outs[0]![0]).toBeCloseTo(guided, 5);
    expect(outs[1]![0]).toBeCloseTo(x0(0.5), 5);
    expect(outs[2]![0]).toBeCloseTo(guided, 5);
  });

  it('skips on every call below it with the "NGMS all steps" setting', async () => {
    const calls: Call[] = [];
    const d = new CfgDenoiser({
      unet: fakeUnet(calls),
      schedule,
      latentShape: shape,
      images: [single(0.5, 0.25)],
      cfgScale: 7,
      sMinUncond: 5,
      sMinUncondAll: true,
    });
    for (let i = 0; i < 3; i++) await d.model(new Float32Array(PER), 2);
    await d.model(new Float32Array(PER), 6);
    expect(calls.map((c) => c.rows)).toEqual([1, 1, 1, 2]);
  });

  it('keeps the uncond pass at or above s_min_uncond, and always when it is 0', async () => {
    for (const [sMinUncond, sigma] of [
      [5, 5],
      [0, 0.1],
    ] as const) {
      const calls: Call[] = [];
      const d = new CfgDenoiser({
        unet: fakeUnet(calls),
        schedule,
        latentShape: shape,
        images: [single(0.5, 0.25)],
        cfgScale: 7,
        sMinUncond,
      });
      for (let i = 0; i < 4; i++) await d.model(new Float32Array(PER), sigma);
      expect(calls.map((c) => c.rows)).toEqual([2, 2, 2, 2]);
    }
  });
});

describe('CfgDenoiser: the LCM sampler runs with A1111 LCMCompVisDenoiser', () => {
  it('quantises the timestep to the LCM table and applies the boundary condition', async () => {
    const calls: Call[] = [];
    const lcm = new LcmSchedule(ac);
    const d = new CfgDenoiser({
      unet: fakeUnet(calls),
      schedule,
      latentShape: shape,
      images: [single(0.5, 0.5)],
      cfgScale: 1,
      lcm: true,
    });
    // A sigma between two entries of the LCM table.
    const sigma = Math.sqrt(lcm.sigmas[10]! * lcm.sigmas[11]!) * 1.01;
    const x = new Float32Array(PER).fill(2);
    const out = await d.model(x, sigma);
    const t = lcm.sigmaToT(sigma);
    expect(t % 20).toBe(19);
    expect(calls[0]!.t).toEqual([t, t]);
    const st = t * 10;
    const cSkip = 0.25 / (st * st + 0.25);
    const cOut = st / Math.sqrt(st * st + 0.25);
    expect(out[0]).toBeCloseTo(cOut * (2 - sigma * 0.5) + cSkip * 2, 5);

    // Without the LCM flag the same call is k-diffusion's CompVisDenoiser (fractional t, x - σ·eps).
    const plain: Call[] = [];
    const e = new CfgDenoiser({
      unet: fakeUnet(plain),
      schedule,
      latentShape: shape,
      images: [single(0.5, 0.5)],
      cfgScale: 1,
    });
    expect((await e.model(x, sigma))[0]).toBeCloseTo(2 - sigma * 0.5, 5);
    expect(plain[0]!.t[0]).not.toBe(t);
  });
});

describe('CfgDenoiser: v-prediction (SD2 768-v)', () => {
  it("wraps the UNet as k-diffusion's CompVisVDenoiser and the timestep samplers' v→eps", async () => {
    const calls: Call[] = [];
    const d = new CfgDenoiser({
      unet: fakeUnet(calls),
      schedule,
      latentShape: shape,
      images: [single(0.5, 0.5)],
      cfgScale: 3,
      prediction: 'v',
    });
    const sigma = 1.5;
    const x = new Float32Array(PER).fill(2);
    const s2 = sigma * sigma + 1;
    expect((await d.model(x, sigma))[0]).toBeCloseTo(2 / s2 - (sigma / Math.sqrt(s2)) * 0.5, 5);
    const a = ac[500]!;
    expect((await d.epsModel(x, 500))[0]).toBeCloseTo(Math.sqrt(a) * 0.5 + Math.sqrt(1 - a) * 2, 5);
  });
});

describe('CfgDenoiser: vector conditioning (SDXL y)', () => {
  it('hands the UNet one vector row per context row, in the rows order', async () => {
    const ys: number[][] = [];
    const unet: UNetFn = async (x, _t, _context, y) => {
      ys.push(Array.from(y!.data));
      return { data: new Float32Array(x.data.length), dims: x.dims };
    };
    const vec = (v: number) => ({ data: Float32Array.from([v, v]), dims: [2] });
    const d = new CfgDenoiser({
      unet,
      schedule,
      latentShape: shape,
      images: [
        {
          parts: [{ schedule: [{ endAtStep: 9, cond: cond(0.5), y: vec(1) }], weight: 1 }],
          uncond: [{ endAtStep: 9, cond: cond(0.25), y: vec(2) }],
        },
      ],
      cfgScale: 3,
    });
    await d.model(new Float32Array(PER), 1);
    expect(ys).toEqual([[1, 1, 2, 2]]);
  });
});

describe('prompt editing past the last scheduled step (A1111 reconstruct_cond_batch)', () => {
  it('falls back to the first entry once the model is called more often than the schedule covers', async () => {
    const calls: Call[] = [];
    const d = new CfgDenoiser({
      unet: fakeUnet(calls),
      schedule,
      latentShape: shape,
      images: [
        {
          parts: [
            {
              schedule: [
                { endAtStep: 1, cond: cond(0.1) },
                { endAtStep: 3, cond: cond(0.2) },
              ],
              weight: 1,
            },
          ],
          uncond: [{ endAtStep: 3, cond: cond(0.9) }],
        },
      ],
      cfgScale: 7,
    });
    for (let i = 0; i < 6; i++) await d.model(new Float32Array(PER), 1);
    const promptRow = calls.map((c) => Math.fround(c.contexts[0]!));
    expect(promptRow).toEqual([0.1, 0.1, 0.2, 0.2, 0.1, 0.1].map(Math.fround));
  });

  it('runs cond and uncond apart when their token counts differ, padding AND parts among themselves', async () => {
    const calls: Call[] = [];
    const d = new CfgDenoiser({
      unet: fakeUnet(calls),
      schedule,
      latentShape: shape,
      images: [
        {
          parts: [
            { schedule: [{ endAtStep: 9, cond: cond(0.5, 154) }], weight: 1 },
            { schedule: [{ endAtStep: 9, cond: cond(0.75) }], weight: 0.5 },
          ],
          uncond: [{ endAtStep: 9, cond: cond(0.25) }],
        },
      ],
      cfgScale: 2,
    });
    const out = await d.model(new Float32Array(PER).fill(1), 1);
    expect(calls.map((c) => c.rows)).toEqual([2, 1]);
    const x0 = (eps: number) => 1 - eps;
    expect(out[0]).toBeCloseTo(x0(0.25) + (x0(0.5) - x0(0.25)) * 2 + (x0(0.75) - x0(0.25)) * 0.5 * 2, 5);
  });
});

describe('through generate (tiny checkpoint)', () => {
  let model: LoadedModel;
  beforeAll(async () => {
    model = await loadTinyModel();
  });
  afterAll(async () => {
    await model?.release();
  });

  /** The model with its UNet calls recorded (batch rows and timesteps). */
  function recording(): { model: LoadedModel; calls: { rows: number; t: number[] }[] } {
    const calls: { rows: number; t: number[] }[] = [];
    const engine = Object.create(model.engine) as LoadedModel['engine'];
    engine.unet = (inp) => {
      calls.push({ rows: inp.x.dims[0]!, t: Array.from(inp.t.data) });
      return model.engine.unet(inp);
    };
    return { model: { ...model, engine }, calls };
  }

  const base = {
    width: 64,
    height: 64,
    steps: 4,
    cfg_scale: 5,
    seed: 99,
    prompt: 'a cube',
    sampler_name: 'Euler',
  };

  it('s_min_uncond skips uncond rows as A1111, changes the image, and is written as NGMS', async () => {
    const off = recording();
    const a = await generate(off.model, withDefaults(base), 'txt2img');
    expect(off.calls.map((c) => c.rows)).toEqual([2, 2, 2, 2]);

    const on = recording();
    const p = withDefaults({ ...base, s_min_uncond: 1000 });
    const b = await generate(on.model, p, 'txt2img');
    expect(on.calls.map((c) => c.rows)).toEqual([2, 1, 2, 1]);
    expect(Buffer.from(a.images[0]!.image.data).equals(Buffer.from(b.images[0]!.image.data))).toBe(false);
    expect(parseInfotext(b.images[0]!.infotext)['NGMS']).toBe('1000');
    expect(parseInfotext(a.images[0]!.infotext)['NGMS']).toBeUndefined();

    // An infotext's NGMS is A1111's s_min_uncond setting: reading it back gives the same run.
    const back = withDefaults(paramsFromInfotext(parseInfotext(b.images[0]!.infotext)));
    const again = recording();
    const c = await generate(again.model, back, 'txt2img');
    expect(again.calls.map((x) => x.rows)).toEqual([2, 1, 2, 1]);
    expect(Buffer.from(c.images[0]!.image.data).equals(Buffer.from(b.images[0]!.image.data))).toBe(true);
  });

  it('the emphasis setting reaches the text conditioning and the infotext', async () => {
    const p = { ...base, prompt: 'a (cube:1.6), [sphere]' };
    const a = await generate(model, withDefaults(p), 'txt2img');
    const b = await generate(
      model,
      withDefaults({ ...p, override_settings: { emphasis: 'No norm' } }),
      'txt2img',
    );
    expect(Buffer.from(a.images[0]!.image.data).equals(Buffer.from(b.images[0]!.image.data))).toBe(false);
    expect(parseInfotext(b.images[0]!.infotext)['Emphasis']).toBe('No norm');
    expect(a.images[0]!.infotext).not.toContain('Emphasis');
  });

  it("the LCM sampler calls the UNet at A1111's quantised LCM timesteps", async () => {
    // With a Karras schedule the sigmas fall between the LCM table's entries.
    const p = withDefaults({ ...base, sampler_name: 'LCM', scheduler: 'Karras', cfg_scale: 1.5 });
    const plan = planSampling({ sampler: 'LCM', scheduler: 'Karras', steps: 4, schedule: model.schedule });
    const lcm = new LcmSchedule(model.schedule.alphasCumprod);
    const rec = recording();
    await generate(rec.model, p, 'txt2img');
    const ts = rec.calls.map((c) => c.t[0]!);
    expect(ts).toEqual(plan.sigmas.slice(0, -1).map((s) => lcm.sigmaToT(s)));
    for (const t of ts) expect(t % 20).toBe(19);
  });
});
