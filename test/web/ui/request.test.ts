import { describe, expect, it } from 'vitest';
import { FIELD_LIST } from '../../../web/src/fields.ts';
import {
  FIELDS as SCHEMA_FIELDS,
  SETTINGS as SCHEMA_SETTINGS,
  type FieldSpec,
} from '../../../src/params/fields.ts';
import { defaultsFor, fromInfotext, fromRequest, normalise, toRequest } from '../../../web/src/request.ts';
import { field } from '../../../web/src/fields.ts';

describe('the form fields come from the request schema (src/params/fields.ts)', () => {
  const all = { ...SCHEMA_FIELDS, ...SCHEMA_SETTINGS } as unknown as Record<string, FieldSpec>;

  it('every form field is a schema field or setting, with its default, bounds and infotext keys', () => {
    for (const f of FIELD_LIST) {
      const spec = all[f.key];
      expect(spec, f.key).toBeDefined();
      expect(f.infotext, f.key).toEqual(spec.infotext);
      expect(f.setting ?? false, f.key).toBe(!(f.key in SCHEMA_FIELDS));
      const json = JSON.parse(JSON.stringify(spec.schema)) as {
        default?: unknown;
        anyOf?: { type?: string; minimum?: number }[];
        minimum?: number;
        maximum?: number;
      };
      const def = spec.uiDefault ?? json.default;
      if (def !== null && def !== undefined) expect(f.default, f.key).toEqual(def);
      if (f.kind === 'int' || f.kind === 'number') {
        // A nullable field is anyOf [null, the number] (null first, for Ajv's coercion).
        const numeric = json.anyOf?.find((s) => s.type !== 'null');
        expect(f.min, f.key).toBe(json.minimum ?? numeric?.minimum);
        expect(f.slider![0], f.key).toBeGreaterThanOrEqual(f.min ?? -Infinity);
        expect(f.slider![1], f.key).toBeLessThanOrEqual(f.max ?? Infinity);
      }
    }
  });

  it("labels, steps and UI defaults are the schema's", () => {
    expect(field('steps')).toMatchObject({ label: SCHEMA_FIELDS.steps.label, default: 20, kind: 'int' });
    expect(field('sampler_name')).toMatchObject({
      label: 'Sampling method',
      default: 'DPM++ 2M',
      kind: 'choice',
    });
    expect(field('width')).toMatchObject({ multipleOf: 8, step: 8, kind: 'int' });
    expect(field('cfg_scale').step).toBe(SCHEMA_FIELDS.cfg_scale.step);
    expect(field('mask_blur').default).toBe(4);
    expect(field('resize_mode').choices?.map((c) => c.value)).toEqual([0, 1, 2, 3]);
    expect(field('CLIP_stop_at_last_layers')).toMatchObject({ setting: true, min: 1, max: 12, default: 1 });
  });
});

describe('form → request', () => {
  it('txt2img defaults are A1111 UI defaults, clip skip goes into override_settings', () => {
    const req = toRequest('txt2img', defaultsFor('txt2img'));
    expect(req).toMatchObject({
      prompt: '',
      negative_prompt: '',
      steps: 20,
      cfg_scale: 7,
      width: 512,
      height: 512,
      seed: -1,
      n_iter: 1,
      batch_size: 1,
      enable_hr: false,
      save_images: true,
      send_images: true,
      override_settings: { CLIP_stop_at_last_layers: 1 },
    });
    expect(req).not.toHaveProperty('CLIP_stop_at_last_layers');
    // img2img-only fields stay out of txt2img, and denoising only with the hires fix.
    expect(req).not.toHaveProperty('mask_blur');
    expect(req).not.toHaveProperty('denoising_strength');
    expect(toRequest('txt2img', { ...defaultsFor('txt2img'), enable_hr: true })).toMatchObject({
      enable_hr: true,
      denoising_strength: 0.7,
      hr_scale: 2,
    });
  });

  it('img2img has its own fields and defaults and no hires fields', () => {
    const req = toRequest('img2img', defaultsFor('img2img'));
    expect(req).toMatchObject({ denoising_strength: 0.75, mask_blur: 4, inpainting_fill: 1, resize_mode: 0 });
    expect(req.inpaint_full_res).toBe(false);
    expect(req).not.toHaveProperty('enable_hr');
  });

  it('every field of the table reaches the request under its own name', () => {
    for (const mode of ['txt2img', 'img2img'] as const) {
      const state = defaultsFor(mode);
      const req = toRequest(mode, { ...state, enable_hr: true });
      for (const f of FIELD_LIST) {
        if (f.modes && !f.modes.includes(mode)) continue;
        const where = f.setting ? (req.override_settings as Record<string, unknown>) : req;
        expect(where, `${mode} ${f.key}`).toHaveProperty(f.key);
      }
    }
  });

  it('values are clamped, rounded and sizes snapped to multiples of 8', () => {
    const s = { ...defaultsFor('txt2img'), width: 513, height: '770', steps: 0, cfg_scale: 'x', seed: 12.7 };
    const req = toRequest('txt2img', s);
    expect(req.width).toBe(512);
    expect(req.height).toBe(768);
    expect(req.steps).toBe(1);
    expect(req.cfg_scale).toBe(7);
    expect(req.seed).toBe(13);
    expect(normalise(field('width'), 99999)).toBe(field('width').max);
    expect(normalise(field('width'), 3)).toBe(8);
    expect(normalise(field('inpainting_fill'), '2')).toBe(2);
  });

  it('styles are sent only when chosen', () => {
    expect(toRequest('txt2img', defaultsFor('txt2img'))).not.toHaveProperty('styles');
    expect(toRequest('txt2img', { ...defaultsFor('txt2img'), styles: ['s1'] }).styles).toEqual(['s1']);
  });
});

describe('infotext / request → form', () => {
  const parsed = {
    Prompt: 'a (cat:1.2)',
    'Negative prompt': 'blurry',
    Steps: '30',
    Sampler: 'DPM++ 2M',
    'Schedule type': 'Karras',
    'CFG scale': '6.5',
    Seed: '1234',
    'Size-1': '640',
    'Size-2': '448',
    'Model hash': 'abcdef0123',
    'Clip skip': '2',
    'Denoising strength': '0.55',
    'Hires upscale': '1.5',
    'Hires upscaler': 'Latent (nearest)',
    'Hires steps': '10',
  };

  it('maps A1111 infotext keys to the txt2img form, hires fix on', () => {
    expect(fromInfotext(parsed, 'txt2img')).toEqual({
      prompt: 'a (cat:1.2)',
      negative_prompt: 'blurry',
      steps: 30,
      sampler_name: 'DPM++ 2M',
      scheduler: 'Karras',
      cfg_scale: 6.5,
      seed: 1234,
      width: 640,
      height: 448,
      CLIP_stop_at_last_layers: 2,
      denoising_strength: 0.55,
      hr_scale: 1.5,
      hr_upscaler: 'Latent (nearest)',
      hr_second_pass_steps: 10,
      enable_hr: true,
    });
  });

  it('without hires keys the hires fix is off; img2img takes the denoising strength', () => {
    const out = fromInfotext({ Prompt: 'x', Steps: '12', 'Denoising strength': '0.4' }, 'txt2img');
    expect(out).toMatchObject({ prompt: 'x', steps: 12, enable_hr: false });
    expect(fromInfotext({ 'Denoising strength': '0.4' }, 'img2img').denoising_strength).toBe(0.4);
  });

  it('splits an old "Sampler Karras" name; inpainting keys reach the img2img form', () => {
    expect(fromInfotext({ Sampler: 'DPM++ 2M Karras' }, 'txt2img')).toMatchObject({
      sampler_name: 'DPM++ 2M',
      scheduler: 'Karras',
    });
    expect(
      fromInfotext(
        {
          'Mask blur': '8',
          'Mask mode': 'Inpaint not masked',
          'Masked content': 'latent noise',
          'Inpaint area': 'Only masked',
        },
        'img2img',
      ),
    ).toEqual({ mask_blur: 8, inpainting_mask_invert: 1, inpainting_fill: 2, inpaint_full_res: true });
  });

  it('a sent request fills the img2img form, settings included', () => {
    const req = toRequest('txt2img', {
      ...defaultsFor('txt2img'),
      prompt: 'p',
      steps: 9,
      CLIP_stop_at_last_layers: 2,
    });
    const form = fromRequest(req, 'img2img');
    expect(form).toMatchObject({ prompt: 'p', steps: 9, CLIP_stop_at_last_layers: 2, width: 512 });
    expect(form).not.toHaveProperty('mask_blur');
  });
});
