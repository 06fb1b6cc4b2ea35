import { describe, expect, it } from 'vitest';
import { OPTION_DEFAULTS } from '../../../src/server/option-defaults.ts';
import { groupOptions, SECTION_STARTS } from '../../../web/src/option-sections.ts';

describe('Settings sections', () => {
  // The server's options in the order GET /sdapi/v1/options answers them (OptionsStore starts from
  // the defaults and keeps their order).
  const keys = Object.keys(OPTION_DEFAULTS);

  it('every section starts at an option the server has, in the server order', () => {
    for (const start of Object.keys(SECTION_STARTS)) expect(keys, start).toContain(start);
    const starts = keys.filter((k) => k in SECTION_STARTS);
    expect(starts).toEqual(Object.keys(SECTION_STARTS));
  });

  it('puts every option in exactly one section, each where A1111 has it', () => {
    const groups = groupOptions(keys);
    expect(groups.flatMap((g) => g.keys)).toEqual(keys);
    expect(new Set(groups.map((g) => g.title)).size).toBe(groups.length);
    const sectionOf = (k: string) => groups.find((g) => g.keys.includes(k))?.title;
    expect(sectionOf('sd_model_checkpoint')).toBe('Stable Diffusion');
    expect(sectionOf('CLIP_stop_at_last_layers')).toBe('Stable Diffusion');
    expect(sectionOf('sdxl_refiner_high_aesthetic_score')).toBe('Stable Diffusion XL');
    expect(sectionOf('sd_vae')).toBe('VAE');
    expect(sectionOf('eta_noise_seed_delta')).toBe('Sampler parameters');
    expect(sectionOf('jpeg_quality')).toBe('Saving images/grids');
  });

  it('a search keeps only matching options and drops sections left empty', () => {
    const groups = groupOptions(keys, (k) => k.includes('aesthetic'));
    expect(groups).toEqual([
      {
        title: 'Stable Diffusion XL',
        keys: ['sdxl_refiner_low_aesthetic_score', 'sdxl_refiner_high_aesthetic_score'],
      },
    ]);
  });
});
