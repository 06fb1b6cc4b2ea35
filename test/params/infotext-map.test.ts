import { describe, expect, it } from 'vitest';
import { FIELDS, SETTINGS, type FieldSpec } from '../../src/params/fields.js';
import { INFOTEXT_KEYS } from '../../src/params/infotext-map.js';
import { withDefaults, type GenerationParams } from '../../src/params/generation.js';
import { paramsFromInfotext, paramsToInfotextFields } from '../../src/infotext/infotext-fields.js';
import { formatInfotext, parseInfotext } from '../../src/infotext/infotext.js';

/** Keys the job writes from what it knows beyond the request (no field carries them). */
const JOB_KEYS = ['Lora hashes', 'TI hashes'];

describe('infotext keys ↔ the field table', () => {
  it('every key of the table is claimed by a field or setting, and every claimed key exists', () => {
    const claimed = new Set<string>();
    const specs = [...Object.values(FIELDS), ...Object.values(SETTINGS)] as FieldSpec[];
    for (const spec of specs) for (const k of spec.infotext ?? []) claimed.add(k);
    const keys = INFOTEXT_KEYS.map((k) => k.key);
    expect(new Set(keys).size).toBe(keys.length);
    for (const k of claimed) expect(keys, k).toContain(k);
    for (const k of keys) if (!JOB_KEYS.includes(k)) expect([...claimed], k).toContain(k);
  });

  it('the keys a field claims are the keys that carry it back', () => {
    // Change one field at a time from the defaults; what the written text reads back differs there.
    const base = withDefaults({ prompt: 'p', seed: 3, enable_hr: true, sampler_name: 'Euler a' });
    const cases: [keyof GenerationParams, unknown][] = [
      ['steps', 9],
      ['cfg_scale', 4.5],
      ['width', 96],
      ['subseed_strength', 0.5],
      ['eta', 0.25],
      ['s_churn', 0.5],
      ['s_tmin', 0.2],
      ['s_tmax', 9],
      ['s_noise', 1.1],
      ['hr_scale', 1.5],
      ['hr_second_pass_steps', 3],
      ['hr_upscaler', 'Lanczos'],
      ['hr_sampler_name', 'Euler'],
      ['hr_scheduler', 'Karras'],
      ['hr_prompt', 'q'],
      ['hr_negative_prompt', 'nq'],
      ['tiling', true],
      ['denoising_strength', 0.3],
    ];
    for (const [field, value] of cases) {
      const p = { ...base, [field]: value } as GenerationParams;
      const fields = paramsToInfotextFields(p, { mode: 'txt2img' });
      const written = Object.keys(fields);
      const claimed = (FIELDS[field] as FieldSpec).infotext ?? [];
      expect(
        written.some((k) => claimed.includes(k)),
        `${field} written under ${claimed.join('/')}`,
      ).toBe(true);
      const back = paramsFromInfotext(parseInfotext(formatInfotext({ prompt: p.prompt, params: fields })));
      expect(back[field], field).toEqual(value);
    }
  });
});

describe('schema ↔ infotext round trip', () => {
  const roundTrip = (p: GenerationParams, mode: 'txt2img' | 'img2img', inpaint = false) => {
    const f = paramsToInfotextFields(p, { mode, inpaint });
    const text = formatInfotext({ prompt: p.prompt, negativePrompt: p.negative_prompt, params: f });
    return { text, back: withDefaults(paramsFromInfotext(parseInfotext(text))) };
  };

  it('txt2img with every setting the infotext carries', () => {
    const p = withDefaults({
      prompt: 'a (cat:1.2), b',
      negative_prompt: 'blurry: "x"',
      seed: 123,
      subseed: 9,
      subseed_strength: 0.1,
      seed_resize_from_w: 256,
      seed_resize_from_h: 320,
      steps: 7,
      sampler_name: 'DPM++ 2S a',
      scheduler: 'Exponential',
      cfg_scale: 6.5,
      width: 320,
      height: 448,
      eta: 0.7,
      enable_hr: true,
      hr_resize_x: 640,
      hr_resize_y: 0,
      hr_second_pass_steps: 2,
      denoising_strength: 0.45,
      override_settings: {
        CLIP_stop_at_last_layers: 2,
        eta_noise_seed_delta: 31337,
        randn_source: 'NV',
        token_merging_ratio: 0.3,
        token_merging_ratio_hr: 0.5,
        emphasis: 'No norm',
        s_min_uncond: 1.5,
      },
    });
    const { text, back } = roundTrip(p, 'txt2img');
    expect(text).toContain('RNG: NV, NGMS: 1.5, ');
    expect(text).toContain('Emphasis: No norm');
    // A1111's parser fills the inpainting keys' defaults (Masked content: original, Inpaint area:
    // Whole picture, padding 32), which are the web UI's, not the API's: not part of a txt2img.
    const inpaintKeys = ['inpainting_fill', 'inpaint_full_res', 'inpaint_full_res_padding'];
    const strip = ({ override_settings, ...rest }: GenerationParams) => ({
      o: override_settings,
      rest: Object.fromEntries(Object.entries(rest).filter(([k]) => !inpaintKeys.includes(k))),
    });
    const { o, rest } = strip(back);
    const { o: o0, rest: rest0 } = strip(p);
    expect(rest).toEqual(rest0);
    expect(o).toEqual(o0);
  });

  it('img2img inpainting fields', () => {
    const p = withDefaults({
      prompt: 'x',
      seed: 1,
      mask_blur_x: 3,
      mask_blur_y: 5,
      inpainting_fill: 3,
      inpaint_full_res: true,
      inpaint_full_res_padding: 12,
      inpainting_mask_invert: 1,
      denoising_strength: 0.55,
      initial_noise_multiplier: 1.05,
    });
    const { back } = roundTrip(p, 'img2img', true);
    for (const key of [
      'mask_blur_x',
      'mask_blur_y',
      'inpainting_fill',
      'inpaint_full_res',
      'inpaint_full_res_padding',
      'inpainting_mask_invert',
      'denoising_strength',
      'initial_noise_multiplier',
    ] as const) {
      expect(back[key], key).toEqual(p[key]);
    }
  });

  it('the written text is byte-identical to A1111 layout for a plain job', () => {
    const p = withDefaults({
      prompt: 'a cat',
      steps: 20,
      sampler_name: 'Euler a',
      seed: 5,
      width: 64,
      height: 64,
    });
    const f = paramsToInfotextFields(p, {
      mode: 'txt2img',
      modelHash: 'abcdef0123',
      modelName: 'tiny',
      version: 'v',
    });
    expect(formatInfotext({ prompt: p.prompt, params: f })).toBe(
      'a cat\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 5, Size: 64x64, Model hash: abcdef0123, Model: tiny, Version: v',
    );
  });
});
