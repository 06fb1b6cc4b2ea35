import { describe, expect, it } from 'vitest';
import { Value } from 'typebox/value';
import {
  GenerationParamsSchema,
  GenerationRequestSchema,
  Img2ImgRequestSchema,
  OverrideSettingsSchema,
  Txt2ImgRequestSchema,
} from '../../src/params/schema.js';
import { FIELDS, SETTINGS } from '../../src/params/fields.js';
import {
  defaultParams,
  uiDefaults,
  validateGenerationRequest,
  withDefaults,
  MAX_TOKEN_MERGE_RATIO,
} from '../../src/params/generation.js';
import { MAX_TOKEN_MERGE_RATIO as MODEL_MAX_TOKEN_MERGE_RATIO } from '../../src/models/token-merging.js';

describe('GenerationParams schema', () => {
  it('defaults come from the schema and pass it; the filled request is schema-valid', () => {
    const d = defaultParams();
    expect(Object.keys(d)).toEqual(Object.keys(FIELDS));
    expect(Value.Check(GenerationParamsSchema, d)).toBe(true);
    // TypeBox fills the same defaults; override_settings gets the settings' own (A1111 /options) defaults.
    const filled = Value.Default(GenerationParamsSchema, {}) as typeof d;
    expect({ ...filled, override_settings: {} }).toEqual(d);
    expect(filled.override_settings).toMatchObject({
      CLIP_stop_at_last_layers: 1,
      emphasis: 'Original',
      s_min_uncond: 0,
    });
    const p = withDefaults({
      steps: '12',
      eta: 0.5,
      sampler_name: 'euler A',
      override_settings: { CLIP_stop_at_last_layers: '2', emphasis: 'no norm', custom: 'kept' },
    });
    expect(
      Value.Check(GenerationParamsSchema, p),
      JSON.stringify([...Value.Errors(GenerationParamsSchema, p)]),
    ).toBe(true);
    expect(p.override_settings).toEqual({ CLIP_stop_at_last_layers: 2, emphasis: 'No norm', custom: 'kept' });
  });

  it('the schema rejects what withDefaults rejects (bounds are in the schema)', () => {
    for (const bad of [{ steps: 0 }, { width: 65 }, { resize_mode: 4 }, { eta: -1 }, { prompt: 5 }]) {
      expect(Value.Check(GenerationParamsSchema, { ...defaultParams(), ...bad }), JSON.stringify(bad)).toBe(
        false,
      );
      expect(() => withDefaults(bad as Record<string, unknown>), JSON.stringify(bad)).toThrow();
    }
  });

  it('request schemas: every field optional and nullable, per mode', () => {
    expect(Value.Check(Txt2ImgRequestSchema, {})).toBe(true);
    expect(Value.Check(Txt2ImgRequestSchema, { steps: null, eta: null, sampler_index: 'Euler' })).toBe(true);
    expect(Value.Check(Txt2ImgRequestSchema, { steps: 'x' })).toBe(false);
    const t2i = Object.keys(Txt2ImgRequestSchema.properties);
    const i2i = Object.keys(Img2ImgRequestSchema.properties);
    expect(t2i).toContain('enable_hr');
    expect(t2i).not.toContain('init_images');
    expect(i2i).toContain('init_images');
    expect(i2i).not.toContain('hr_scale');
    expect(Object.keys(GenerationRequestSchema.properties).sort()).toEqual(
      [...Object.keys(FIELDS), 'sampler_index'].sort(),
    );
    // OpenAPI: the schemas are plain JSON Schema.
    const json = JSON.parse(JSON.stringify(Txt2ImgRequestSchema)) as { properties: Record<string, unknown> };
    expect(json.properties.steps).toMatchObject({
      anyOf: [{ type: 'integer', minimum: 1, default: 50 }, { type: 'null' }],
    });
  });

  it('override_settings: known settings typed, others kept', () => {
    expect(Object.keys(OverrideSettingsSchema.properties)).toEqual(Object.keys(SETTINGS));
    expect(Value.Check(OverrideSettingsSchema, { CLIP_stop_at_last_layers: 2, anything: [1] })).toBe(true);
    expect(Value.Check(OverrideSettingsSchema, { CLIP_stop_at_last_layers: 13 })).toBe(false);
    expect(Value.Check(OverrideSettingsSchema, { s_min_uncond: 0.5, emphasis: 'No norm' })).toBe(true);
  });

  it('UI defaults are the A1111 web UI ones', () => {
    expect(uiDefaults()).toMatchObject({
      steps: 20,
      sampler_name: 'DPM++ 2M',
      inpainting_fill: 1,
      mask_blur: 4,
    });
    expect(MAX_TOKEN_MERGE_RATIO).toBe(MODEL_MAX_TOKEN_MERGE_RATIO);
  });
});

describe('validateGenerationRequest', () => {
  it('names each bad JSON field', () => {
    const r = validateGenerationRequest({
      steps: 0,
      width: 100,
      batch_size: 'x',
      override_settings: { CLIP_stop_at_last_layers: 50, randn_source: 'TPU' },
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const fields = r.errors.map((e) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['steps', 'width', 'batch_size']));
    for (const e of r.errors) expect(e.message.startsWith(e.field)).toBe(true);
    const r2 = validateGenerationRequest({
      override_settings: { CLIP_stop_at_last_layers: 50, randn_source: 'TPU' },
    });
    expect(r2.ok).toBe(false);
    if (r2.ok) return;
    expect(r2.errors.map((e) => e.field)).toEqual([
      'override_settings.CLIP_stop_at_last_layers',
      'override_settings.randn_source',
    ]);
    expect(r2.errors[0]!.message).toMatch(
      /^override_settings\.CLIP_stop_at_last_layers \(clip skip\) must be a whole number from 1 to 12 \(got 50\)/,
    );
  });

  it('unknown sampler and scheduler: named, with a suggestion; names match in any case', () => {
    const r = validateGenerationRequest({ sampler_name: 'Eulr a', scheduler: 'karas' });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.errors[0]).toEqual({
        field: 'sampler_name',
        message: expect.stringMatching(/^sampler_name "Eulr a" is unknown; did you mean "Euler a"\?/),
      });
    }
    const s = validateGenerationRequest({ sampler_name: 'Euler', scheduler: 'karas' });
    expect(!s.ok && s.errors[0]!.message).toMatch(/^scheduler "karas" is unknown; did you mean "Karras"\?/);
    const ok = validateGenerationRequest({
      sampler_name: 'dpm++ 2m',
      scheduler: 'KARRAS',
      hr_sampler_name: 'EULER A',
    });
    expect(ok.ok).toBe(true);
    const far = validateGenerationRequest({ sampler_name: 'zzzzzz' });
    expect(!far.ok && far.errors[0]!.message).not.toMatch(/did you mean/);
  });

  it('per mode: fields of the other endpoint are ignored, as A1111 does', () => {
    const r = validateGenerationRequest({ init_images: 5, steps: 3 }, { mode: 'txt2img' });
    expect(r.ok && r.params.steps).toBe(3);
    const bad = validateGenerationRequest({ init_images: 5 }, { mode: 'img2img' });
    expect(!bad.ok && bad.errors[0]!.field).toBe('init_images');
  });

  it('nameOf renames fields in messages (the CLI names its flags)', () => {
    expect(() =>
      withDefaults({ n_iter: 100000 }, { nameOf: (f) => (f === 'n_iter' ? '--batch-count' : undefined) }),
    ).toThrow(/^--batch-count must be a whole number from 1 to 10000 \(got 100000\)$/);
  });
});
