/**
 * The infotext keys the sampling side owns: names resolved through the sampler registry, eta under
 * the key A1111 uses for the sampler, NGMS (s_min_uncond) and Emphasis written as A1111 writes them
 * and read back into the settings A1111 maps them to.
 */
import { describe, expect, it } from 'vitest';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { paramsFromInfotext, paramsToInfotextFields } from '../../src/infotext/infotext-fields.js';
import { emphasisOf, sMinUncondOf, withDefaults } from '../../src/params/generation.js';
import { formatInfotext } from '../../src/infotext/infotext.js';

const fields = (p: Record<string, unknown>) =>
  paramsToInfotextFields(withDefaults({ seed: 1, ...p }), { mode: 'txt2img' });

const roundTrip = (p: Record<string, unknown>) => {
  const params = withDefaults({ seed: 1, ...p });
  const text = formatInfotext({
    prompt: params.prompt,
    negativePrompt: params.negative_prompt,
    params: paramsToInfotextFields(params, { mode: 'txt2img' }),
  });
  return withDefaults(paramsFromInfotext(parseInfotext(text)));
};

describe('sampler names and eta through the registry', () => {
  it('writes the A1111 label and effective schedule whatever case or alias was asked', () => {
    const f = fields({ sampler_name: 'k_dpmpp_2m', scheduler: 'automatic' });
    expect(f.Sampler).toBe('DPM++ 2M');
    expect(f['Schedule type']).toBe('Karras');
    expect(fields({ sampler_name: 'euler A', scheduler: 'sgmuniform' })['Schedule type']).toBe('SGM Uniform');
  });

  it('writes a non-default eta as "Eta DDIM" for DDIM and "Eta" for the samplers that take one', () => {
    expect(fields({ sampler_name: 'DDIM', eta: 0.5 })['Eta DDIM']).toBe(0.5);
    expect(fields({ sampler_name: 'DDIM', eta: 0 })['Eta DDIM']).toBeUndefined();
    expect(fields({ sampler_name: 'DPM++ 2M SDE', eta: 0.5 }).Eta).toBe(0.5);
    expect(fields({ sampler_name: 'Euler a', eta: 1 }).Eta).toBeUndefined();
    expect(fields({ sampler_name: 'Euler', eta: 0.5 }).Eta).toBeUndefined();
  });
});

describe('NGMS (s_min_uncond)', () => {
  it('is written when set, from the request or the setting, and read back as the setting', () => {
    expect(fields({}).NGMS).toBeUndefined();
    expect(fields({ s_min_uncond: 2.5 }).NGMS).toBe(2.5);
    expect(fields({ override_settings: { s_min_uncond: 1.5 } }).NGMS).toBe(1.5);
    expect(fields({ s_min_uncond: 2.5 })['NGMS all steps']).toBeUndefined();
    const all = { s_min_uncond: 2.5, override_settings: { s_min_uncond_all: true } };
    expect(fields(all)['NGMS all steps']).toBe('True');
    expect(roundTrip(all).override_settings.s_min_uncond_all).toBe(true);
    const back = roundTrip({ s_min_uncond: 2.5 });
    expect(back.override_settings.s_min_uncond).toBe(2.5);
    expect(sMinUncondOf(back)).toBe(2.5);
  });
});

describe('Emphasis', () => {
  it('is written when not Original and a prompt has brackets, and read back into the setting', () => {
    const nb = { prompt: 'a (cat:1.2)', override_settings: { emphasis: 'No norm' } };
    expect(fields(nb).Emphasis).toBe('No norm');
    expect(fields({ ...nb, prompt: 'a cat' }).Emphasis).toBeUndefined();
    expect(fields({ prompt: 'a (cat:1.2)' }).Emphasis).toBeUndefined();
    const back = roundTrip(nb);
    expect(back.override_settings.emphasis).toBe('No norm');
    expect(emphasisOf(back)).toBe('No norm');
    expect(emphasisOf(roundTrip({ prompt: 'a (cat:1.2)', override_settings: { emphasis: 'None' } }))).toBe(
      'None',
    );
  });

  it('refuses an emphasis A1111 does not have', () => {
    expect(() => withDefaults({ override_settings: { emphasis: 'Loud' } })).toThrow(
      /override_settings\.emphasis/,
    );
  });
});
