/**
 * The generation loop on the tiny checkpoint: the properties A1111 users rely on (sizes, seeds,
 * infotext that parses back, reproducibility, compositing, interrupt/skip latency).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { generate, type StopFlags } from '../../src/pipeline/generate.js';
import type { DecodedImage } from '../../src/image/images.js';
import { paramsFromInfotext } from '../../src/infotext/infotext-fields.js';
import type { LoadedModel } from '../../src/pipeline/model.js';
import { encodePngWithInfotext } from '../../src/pipeline/outputs.js';
import { SAMPLERS, withDefaults, type GenerationParams } from '../../src/params/generation.js';
import { loadTinyModel } from '../helpers/tiny-model.js';

let model: LoadedModel;
beforeAll(async () => {
  model = await loadTinyModel();
});
afterAll(async () => {
  await model?.release();
});

const base = { width: 64, height: 64, steps: 3, cfg_scale: 5 };

function rgba(
  w: number,
  h: number,
  f: (x: number, y: number) => [number, number, number, number],
): DecodedImage {
  const data = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(f(x, y), (y * w + x) * 4);
  return { rgba: data, width: w, height: h, hasAlpha: false };
}

const init = rgba(64, 64, (x, y) => [x * 4, y * 4, 128, 255]);

function expectParamsBack(infotext: string, used: GenerationParams, keys: (keyof GenerationParams)[]): void {
  const back = withDefaults(paramsFromInfotext(parseInfotext(infotext)));
  for (const k of keys) expect(back[k], `${String(k)} from "${infotext}"`).toEqual(used[k]);
}

describe('txt2img', () => {
  it('makes batch × count images of the requested size, seeds seed+i, one infotext each that parses back', async () => {
    const p = withDefaults({
      ...base,
      prompt: 'a [red:blue:2] cube, (shiny:1.2)',
      negative_prompt: 'blurry',
      seed: 1234,
      batch_size: 2,
      n_iter: 2,
      sampler_name: 'Euler a',
    });
    const r = await generate(model, p, 'txt2img', {}, { grid: true });
    expect(r.images.map((i) => [i.image.width, i.image.height])).toEqual(Array(4).fill([64, 64]));
    expect(r.images.map((i) => i.seed)).toEqual([1234, 1235, 1236, 1237]);
    expect(r.grid?.image.width).toBe(128);
    for (const img of r.images) {
      expectParamsBack(img.infotext, { ...p, seed: img.seed }, [
        'prompt',
        'negative_prompt',
        'steps',
        'sampler_name',
        'cfg_scale',
        'seed',
        'width',
        'height',
      ]);
    }
    // Different seeds give different images.
    expect(Buffer.from(r.images[0]!.image.data).equals(Buffer.from(r.images[1]!.image.data))).toBe(false);
  });

  it('same seed → identical bytes; -1 draws a seed that the infotext reports', async () => {
    const p = withDefaults({ ...base, prompt: 'a house', seed: 77, sampler_name: 'DPM++ 2M' });
    const a = await generate(model, p, 'txt2img');
    const b = await generate(model, p, 'txt2img');
    const pa = await encodePngWithInfotext(a.images[0]!.image, a.images[0]!.infotext);
    const pb = await encodePngWithInfotext(b.images[0]!.image, b.images[0]!.infotext);
    expect(pa.equals(pb)).toBe(true);
    const c = await generate(
      model,
      withDefaults({ ...base, prompt: 'a house', seed: -1, steps: 1 }),
      'txt2img',
    );
    expect(c.images[0]!.seed).toBeGreaterThanOrEqual(0);
    expect(parseInfotext(c.images[0]!.infotext).Seed).toBe(String(c.images[0]!.seed));
  });

  it('interrupt stops within one model call and returns the image in progress', async () => {
    const stop: StopFlags = { interrupted: false, skipped: false };
    let calls = 0;
    const r = await generate(
      model,
      withDefaults({ ...base, prompt: 'x', seed: 3, steps: 8, n_iter: 3 }),
      'txt2img',
      {},
      {
        stop,
        onModelCall: () => {
          calls++;
          stop.interrupted = true;
        },
      },
    );
    expect(calls).toBe(1);
    expect(r.interrupted).toBe(true);
    expect(r.images.length).toBe(1);
  });

  it('skip ends the current batch only', async () => {
    const stop: StopFlags = { interrupted: false, skipped: false };
    let calls = 0;
    const r = await generate(
      model,
      withDefaults({ ...base, prompt: 'x', seed: 3, steps: 4, n_iter: 2 }),
      'txt2img',
      {},
      {
        stop,
        onModelCall: () => {
          calls++;
          if (calls === 1) stop.skipped = true;
        },
      },
    );
    expect(r.interrupted).toBe(false);
    expect(r.images.length).toBe(2);
    expect(calls).toBe(1 + 4);
  });

  it('reports progress and cheap previews', async () => {
    const steps: number[] = [];
    let previews = 0;
    await generate(
      model,
      withDefaults({ ...base, prompt: 'x', seed: 5, steps: 4 }),
      'txt2img',
      {},
      {
        onProgress: (p) => steps.push(p.step),
        previewEvery: 2,
        onPreview: (p) => {
          previews++;
          expect([p.image.width, p.image.height]).toEqual([8, 8]);
        },
      },
    );
    expect(steps).toEqual([1, 2, 3, 4]);
    expect(previews).toBe(2);
    const full: number[] = [];
    await generate(
      model,
      withDefaults({ ...base, prompt: 'x', seed: 5, steps: 4 }),
      'txt2img',
      {},
      {
        previewEvery: 1,
        previewMode: 'full',
        onPreview: (p) => {
          expect([p.image.width, p.image.height]).toEqual([64, 64]);
          full.push(p.step);
        },
      },
    );
    // decoded before the next UNet call: every step but the last
    expect(full).toEqual([1, 2, 3]);
  });

  it('applies styles to the prompt, and the infotext carries the styled prompt', async () => {
    const styles = [{ name: 'sharp', prompt: '{prompt}, sharp focus', negativePrompt: 'blurry' }];
    const r = await generate(
      model,
      withDefaults({ ...base, prompt: 'a cat', seed: 1, steps: 1, styles: ['sharp'] }),
      'txt2img',
      {},
      {
        styles,
      },
    );
    expect(r.images[0]!.prompt).toBe('a cat, sharp focus');
    expect(parseInfotext(r.images[0]!.infotext)).toMatchObject({
      Prompt: 'a cat, sharp focus',
      'Negative prompt': 'blurry',
    });
  });

  for (const hr_upscaler of ['Latent', 'Latent (nearest-exact)', 'Lanczos', 'Nearest']) {
    it(`hires fix with ${hr_upscaler}: second pass at the upscaled size, recorded in the infotext`, async () => {
      const p = withDefaults({
        ...base,
        prompt: 'a tree',
        seed: 11,
        enable_hr: true,
        hr_scale: 2,
        hr_upscaler,
        hr_second_pass_steps: 2,
        denoising_strength: 0.6,
      });
      const r = await generate(model, p, 'txt2img');
      expect([r.images[0]!.image.width, r.images[0]!.image.height]).toEqual([128, 128]);
      expectParamsBack(r.images[0]!.infotext, { ...p, seed: 11 }, [
        'enable_hr',
        'hr_scale',
        'hr_upscaler',
        'hr_second_pass_steps',
        'denoising_strength',
        'width',
        'height',
      ]);
    });
  }

  it('runs every sampler, txt2img and img2img, to finite images', async () => {
    for (const s of SAMPLERS) {
      for (const mode of ['txt2img', 'img2img'] as const) {
        const p = withDefaults({
          ...base,
          prompt: 'x',
          seed: 1,
          steps: 2,
          sampler_name: s.name,
          denoising_strength: 0.5,
        });
        const r = await generate(model, p, mode, mode === 'img2img' ? { initImages: [init] } : {});
        expect(r.images[0]!.image.data.length, `${s.name} ${mode}`).toBe(64 * 64 * 3);
        expect(parseInfotext(r.images[0]!.infotext).Sampler).toBe(s.name);
      }
    }
  });

  it('hires fix to an explicit size covers it and crops the overflow (A1111 truncate)', async () => {
    const p = withDefaults({
      ...base,
      prompt: 'x',
      seed: 2,
      enable_hr: true,
      hr_resize_x: 128,
      hr_resize_y: 64,
      denoising_strength: 0.5,
    });
    const r = await generate(model, p, 'txt2img');
    expect([r.images[0]!.image.width, r.images[0]!.image.height]).toEqual([128, 64]);
    expect(parseInfotext(r.images[0]!.infotext)).toMatchObject({
      'Hires resize-1': '128',
      'Hires resize-2': '64',
    });
  });

  it('variation seeds: strength 0 ignores the subseed, a strength blends it in and is recorded', async () => {
    const p = withDefaults({ ...base, prompt: 'x', seed: 10, subseed: 99, steps: 2, batch_size: 2 });
    const a = await generate(model, p, 'txt2img');
    const b = await generate(model, { ...p, subseed: 5 }, 'txt2img');
    expect(Buffer.from(a.images[0]!.image.data).equals(Buffer.from(b.images[0]!.image.data))).toBe(true);
    const v = await generate(model, { ...p, subseed_strength: 0.3 }, 'txt2img');
    expect(Buffer.from(v.images[0]!.image.data).equals(Buffer.from(a.images[0]!.image.data))).toBe(false);
    expect(v.images.map((i) => [i.seed, i.subseed])).toEqual([
      [10, 99],
      [10, 100],
    ]);
    expect(parseInfotext(v.images[1]!.infotext)).toMatchObject({
      'Variation seed': '100',
      'Variation seed strength': '0.3',
    });
  });
});

describe('img2img and inpaint', () => {
  it('img2img keeps the requested size and records the denoising strength', async () => {
    const p = withDefaults({ ...base, prompt: 'x', seed: 9, denoising_strength: 0.5, resize_mode: 1 });
    const wide = rgba(96, 64, (x) => [x, 0, 0, 255]);
    const r = await generate(model, p, 'img2img', { initImages: [wide] });
    expect([r.images[0]!.image.width, r.images[0]!.image.height]).toEqual([64, 64]);
    expectParamsBack(r.images[0]!.infotext, { ...p, seed: 9 }, ['denoising_strength', 'seed', 'steps']);
  });

  const mask = rgba(64, 64, (x, y) =>
    x >= 16 && x < 40 && y >= 20 && y < 44 ? [255, 255, 255, 255] : [0, 0, 0, 255],
  );
  const inside = (x: number, y: number) => x >= 16 && x < 40 && y >= 20 && y < 44;

  for (const inpainting_fill of [0, 1, 2, 3] as const) {
    for (const inpaint_full_res of [false, true]) {
      for (const inpainting_mask_invert of [0, 1] as const) {
        it(`fill ${inpainting_fill}, ${inpaint_full_res ? 'only masked' : 'whole picture'}, ${inpainting_mask_invert ? 'inverted' : 'masked'}: pixels outside the mask are unchanged`, async () => {
          const p = withDefaults({
            ...base,
            prompt: 'x',
            seed: 21,
            steps: 2,
            denoising_strength: 0.9,
            mask_blur: 0,
            inpainting_fill,
            inpaint_full_res,
            inpaint_full_res_padding: 8,
            inpainting_mask_invert,
          });
          const r = await generate(model, p, 'img2img', { initImages: [init], mask });
          const out = r.images[0]!.image;
          expect([out.width, out.height]).toEqual([64, 64]);
          let changedInside = 0;
          for (let y = 0; y < 64; y++) {
            for (let x = 0; x < 64; x++) {
              const keep = inside(x, y) === (inpainting_mask_invert === 1);
              for (let c = 0; c < 3; c++) {
                const o = out.data[(y * 64 + x) * 3 + c]!;
                const i = init.rgba[(y * 64 + x) * 4 + c]!;
                if (keep) expect(o, `pixel ${x},${y}`).toBe(i);
                else if (o !== i) changedInside++;
              }
            }
          }
          expect(changedInside).toBeGreaterThan(0);
          expectParamsBack(r.images[0]!.infotext, { ...p, seed: 21 }, [
            'inpainting_fill',
            'inpaint_full_res',
            'inpainting_mask_invert',
            'mask_blur_x',
            'denoising_strength',
          ]);
        });
      }
    }
  }

  it('mask blur leaves pixels far from the mask unchanged; an alpha channel works as the mask', async () => {
    const alphaMask: DecodedImage = {
      ...rgba(64, 64, (x, y) => (inside(x, y) ? [0, 0, 0, 255] : [0, 0, 0, 0])),
      hasAlpha: true,
    };
    const p = withDefaults({
      ...base,
      prompt: 'x',
      seed: 2,
      steps: 2,
      mask_blur: 4,
      inpaint_full_res: false,
    });
    const r = await generate(model, p, 'img2img', { initImages: [init], mask: alphaMask });
    const out = r.images[0]!.image;
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const far = x < 16 - 12 || x >= 40 + 12 || y < 20 - 12 || y >= 44 + 12;
        if (far) expect(out.data[(y * 64 + x) * 3]).toBe(init.rgba[(y * 64 + x) * 4]);
      }
    }
  });

  it('a blank mask with "only masked" runs plain img2img, as A1111', async () => {
    const blank = rgba(64, 64, () => [0, 0, 0, 255]);
    const p = withDefaults({ ...base, prompt: 'x', seed: 8, steps: 2, denoising_strength: 0.7 });
    const warnings: string[] = [];
    const masked = await generate(
      model,
      { ...p, inpaint_full_res: true },
      'img2img',
      { initImages: [init], mask: blank },
      {
        warn: (m) => warnings.push(m),
      },
    );
    const plain = await generate(model, p, 'img2img', { initImages: [init] });
    expect(Buffer.from(masked.images[0]!.image.data).equals(Buffer.from(plain.images[0]!.image.data))).toBe(
      true,
    );
    expect(warnings.join()).toMatch(/blank/);
  });

  it('needs an init image', async () => {
    await expect(generate(model, withDefaults(base), 'img2img', {})).rejects.toThrow(/init image/);
  });
});
