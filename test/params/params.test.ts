import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  SAMPLERS,
  defaultParams,
  fixSeed,
  hiresTargetSize,
  jobSeeds,
  resolveSampler,
  withDefaults,
} from '../../src/params/generation.js';
import { paramsFromInfotext, paramsToInfotextFields } from '../../src/infotext/infotext-fields.js';
import { UserError } from '../../src/util/errors.js';
import { SAMPLERS as REGISTRY } from '../../src/sampling/index.js';
import { formatInfotext, parseInfotext } from '../../src/infotext/infotext.js';
import { goldenPath } from '../helpers/golden.js';

function expectUserError(fn: () => unknown, field: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UserError);
  expect((err as Error).message).toMatch(field);
}

describe('withDefaults', () => {
  it('fills A1111 API defaults', () => {
    const p = withDefaults({});
    expect(p).toEqual(defaultParams());
    expect(p.steps).toBe(50);
    expect(p.cfg_scale).toBe(7);
    expect(p.width).toBe(512);
    expect(p.seed).toBe(-1);
    expect(p.inpaint_full_res).toBe(true);
    expect(p.mask_blur_x).toBe(4);
  });

  it('treats null as absent, ignores unknown keys, honours sampler_index and mask_blur', () => {
    const p = withDefaults({ steps: null, url: 'x', sampler_index: 'Euler a', mask_blur: 9 } as Record<
      string,
      unknown
    >);
    expect(p.steps).toBe(50);
    expect(p.sampler_name).toBe('Euler a');
    expect(p.mask_blur_x).toBe(9);
    expect(p.mask_blur_y).toBe(9);
    expect('url' in p).toBe(false);
  });

  it('coerces numeric strings and 0/1 booleans, keeps the input object untouched', () => {
    const input = { steps: '12', inpainting_mask_invert: true, tiling: 1 } as Record<string, unknown>;
    const p = withDefaults(input);
    expect(p.steps).toBe(12);
    expect(p.inpainting_mask_invert).toBe(1);
    expect(p.tiling).toBe(true);
    expect(input.steps).toBe('12');
  });

  it.each([
    [{ width: 65 }, /width.*multiple of 8/],
    [{ height: 0 }, /height/],
    [{ width: 1e9 }, /width/],
    [{ steps: 0 }, /steps/],
    [{ steps: 1.5 }, /steps/],
    [{ steps: 'many' }, /steps must be a number/],
    [{ cfg_scale: Number.NaN }, /cfg_scale/],
    [{ batch_size: 0 }, /batch_size/],
    [{ n_iter: -1 }, /n_iter/],
    [{ seed: -2 }, /seed/],
    [{ denoising_strength: 1.5 }, /denoising_strength/],
    [{ sampler_name: 'Eulerr' }, /sampler_name "Eulerr" is unknown/],
    [{ scheduler: 'fast' }, /scheduler "fast"/],
    [{ inpainting_fill: 4 }, /inpainting_fill/],
    [{ resize_mode: 7 }, /resize_mode/],
    [{ styles: 'a' }, /styles/],
    [{ prompt: 5 }, /prompt must be a string/],
    [{ enable_hr: true, hr_upscaler: 'ESRGAN_9x' }, /hr_upscaler/],
    [{ enable_hr: true, hr_scale: 8, width: 2048 }, /hires fix target/],
    [{ override_settings: { CLIP_stop_at_last_layers: 0 } }, /clip skip/],
    [{ override_settings: { randn_source: 'TPU' } }, /randn_source/],
  ] as [Record<string, unknown>, RegExp][])('rejects %j naming the field', (input, re) => {
    expectUserError(() => withDefaults(input), re);
  });

  it('A1111 API leniencies: seed "" is random, unknown sampler may fall back to DPM++ 2M', () => {
    expect(withDefaults({ seed: '', subseed: 'abc' } as Record<string, unknown>).seed).toBe(-1);
    expect(withDefaults({ sampler_name: 'k_nope' }, { unknownSampler: 'fallback' }).sampler_name).toBe(
      'DPM++ 2M',
    );
  });

  it('rejects a non-object', () => {
    expectUserError(() => withDefaults([] as unknown as Record<string, unknown>), /object/);
  });
});

describe('resolveSampler', () => {
  it('lists exactly the samplers the sampling registry runs', () => {
    expect(SAMPLERS.map((s) => s.name).sort()).toEqual(REGISTRY.map((s) => s.label).sort());
    for (const s of SAMPLERS) {
      const r = REGISTRY.find((x) => x.label === s.name)!;
      expect(s.defaultScheduler?.toLowerCase(), s.name).toBe(r.scheduler);
      expect(!!s.usesEnsd, s.name).toBe(r.usesEnsd);
    }
  });

  it('knows every A1111 sampler by name and alias', () => {
    for (const s of SAMPLERS) {
      expect(resolveSampler(s.name, 'Automatic').sampler).toBe(s.name);
      for (const a of s.aliases) expect(resolveSampler(a, 'Automatic').sampler).toBe(s.name);
    }
  });

  it('splits a schedule suffix and resolves Automatic to the default schedule', () => {
    expect(resolveSampler('DPM++ 2M Karras', 'Automatic')).toEqual({
      sampler: 'DPM++ 2M',
      scheduleLabel: 'Karras',
      schedulerName: 'karras',
    });
    expect(resolveSampler('DPM++ 2M', 'Automatic').scheduleLabel).toBe('Karras');
    expect(resolveSampler('Euler a', 'Automatic').scheduleLabel).toBe('Automatic');
    expect(resolveSampler('Euler', 'exponential').scheduleLabel).toBe('Exponential');
  });
});

describe('hires target size (A1111 calculate_target_resolution)', () => {
  it('scales, keeps aspect with one side, covers and crops with both', () => {
    const base = withDefaults({ width: 512, height: 768, enable_hr: true });
    expect(hiresTargetSize({ ...base, hr_scale: 1.5 })).toEqual({
      width: 768,
      height: 1152,
      truncateX: 0,
      truncateY: 0,
    });
    expect(hiresTargetSize({ ...base, hr_resize_x: 1024 })).toMatchObject({ width: 1024, height: 1536 });
    expect(hiresTargetSize({ ...base, hr_resize_y: 1000 })).toMatchObject({ width: 666, height: 1000 });
    expect(hiresTargetSize({ ...base, hr_resize_x: 1024, hr_resize_y: 1024 })).toEqual({
      width: 1024,
      height: 1536,
      truncateX: 0,
      truncateY: 64,
    });
  });
});

describe('seeds', () => {
  it('-1 draws a seed in A1111 range; job seeds are seed+i, or constant with variations', () => {
    const s = fixSeed(-1);
    expect(Number.isInteger(s) && s >= 0 && s < 4294967294).toBe(true);
    expect(fixSeed(42)).toBe(42);
    const p = withDefaults({ batch_size: 2, n_iter: 2 });
    expect(jobSeeds(p, 10, 20)).toEqual({ seeds: [10, 11, 12, 13], subseeds: [20, 21, 22, 23] });
    expect(jobSeeds({ ...p, subseed_strength: 0.5 }, 10, 20).seeds).toEqual([10, 10, 10, 10]);
  });
});

describe('infotext fields', () => {
  it('writes keys in A1111 order and omits defaults', () => {
    const p = withDefaults({
      prompt: 'a cat',
      steps: 20,
      sampler_name: 'DPM++ 2M',
      seed: 5,
      width: 64,
      height: 64,
    });
    const f = paramsToInfotextFields(p, { mode: 'txt2img', modelHash: 'abcdef0123', modelName: 'tiny' });
    expect(Object.keys(f)).toEqual([
      'Steps',
      'Sampler',
      'Schedule type',
      'CFG scale',
      'Seed',
      'Size',
      'Model hash',
      'Model',
    ]);
    expect(f['Schedule type']).toBe('Karras');
    expect(f.Size).toBe('64x64');
  });

  it('records hires fix, inpaint and settings, and reads them back', () => {
    const txt = withDefaults({
      prompt: 'p',
      negative_prompt: 'n',
      seed: 7,
      steps: 9,
      cfg_scale: 5.5,
      width: 64,
      height: 96,
      sampler_name: 'Euler a',
      scheduler: 'Karras',
      subseed: 3,
      subseed_strength: 0.25,
      enable_hr: true,
      hr_scale: 1.5,
      hr_upscaler: 'Lanczos',
      hr_second_pass_steps: 4,
      denoising_strength: 0.6,
      hr_prompt: 'q',
      tiling: true,
      eta: 0.5,
      override_settings: { CLIP_stop_at_last_layers: 2, eta_noise_seed_delta: 31337, randn_source: 'CPU' },
    });
    const f = paramsToInfotextFields(txt, { mode: 'txt2img' });
    const back = paramsFromInfotext(
      parseInfotext(formatInfotext({ prompt: txt.prompt, negativePrompt: txt.negative_prompt, params: f })),
    );
    const merged = withDefaults({ ...back });
    for (const key of [
      'prompt',
      'negative_prompt',
      'seed',
      'steps',
      'cfg_scale',
      'width',
      'height',
      'sampler_name',
      'scheduler',
      'subseed',
      'subseed_strength',
      'enable_hr',
      'hr_scale',
      'hr_upscaler',
      'hr_second_pass_steps',
      'denoising_strength',
      'hr_prompt',
      'tiling',
      'eta',
    ] as const) {
      expect(merged[key], key).toEqual(txt[key]);
    }
    expect(merged.override_settings).toMatchObject(txt.override_settings);

    const inp = withDefaults({
      prompt: 'x',
      seed: 1,
      mask_blur: 6,
      inpainting_fill: 2,
      inpaint_full_res: true,
      inpaint_full_res_padding: 24,
      inpainting_mask_invert: 1,
      denoising_strength: 0.4,
    });
    const g = paramsToInfotextFields(inp, { mode: 'img2img', inpaint: true });
    const back2 = withDefaults(paramsFromInfotext(parseInfotext(formatInfotext({ prompt: 'x', params: g }))));
    for (const key of [
      'mask_blur_x',
      'mask_blur_y',
      'inpainting_fill',
      'inpaint_full_res',
      'inpaint_full_res_padding',
      'inpainting_mask_invert',
      'denoising_strength',
    ] as const) {
      expect(back2[key], key).toEqual(inp[key]);
    }
  });

  it('maps every golden A1111 parse result without throwing, to values withDefaults accepts or names', () => {
    const file = JSON.parse(readFileSync(goldenPath('infotext', 'infotexts.json'), 'utf8')) as {
      cases: { result: Record<string, unknown> }[];
    };
    expect(file.cases.length).toBeGreaterThan(0);
    for (const c of file.cases) {
      const p = paramsFromInfotext(c.result);
      if (typeof c.result.Steps === 'string' && /^\d+$/.test(c.result.Steps))
        expect(p.steps).toBe(Number(c.result.Steps));
      if (typeof c.result.Prompt === 'string') expect(p.prompt).toBe(c.result.Prompt);
      try {
        withDefaults(p);
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
      }
    }
  });
});
