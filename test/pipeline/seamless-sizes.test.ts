/**
 * txt2img with seamless tiling (the image continues across its left/right and top/bottom edges)
 * and at a size that is a multiple of 8 but not of 64, on the tiny checkpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { generate } from '../../src/pipeline/generate.js';
import type { RgbImage } from '../../src/image/images.js';
import { paramsFromInfotext } from '../../src/infotext/infotext-fields.js';
import type { LoadedModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import { loadTinyModel } from '../helpers/tiny-model.js';

let model: LoadedModel;
beforeAll(async () => {
  model = await loadTinyModel();
});
afterAll(async () => {
  await model?.release();
});

/**
 * How much the image jumps across its wrap-around seams (last column → first, last row → first)
 * relative to the jumps between neighbouring pixels inside it.
 */
function seamRatio(img: RgbImage): number {
  const { width: w, height: h, data } = img;
  const px = (x: number, y: number, c: number) => data[(y * w + x) * 3 + c]!;
  let seam = 0;
  let inner = 0;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      seam += Math.abs(px(w - 1, y, c) - px(0, y, c)) / h;
      for (let x = 1; x < w; x++) inner += Math.abs(px(x, y, c) - px(x - 1, y, c)) / (h * (w - 1));
    }
    for (let x = 0; x < w; x++) {
      seam += Math.abs(px(x, h - 1, c) - px(x, 0, c)) / w;
      for (let y = 1; y < h; y++) inner += Math.abs(px(x, y, c) - px(x, y - 1, c)) / (w * (h - 1));
    }
  }
  return seam / inner;
}

describe('seamless tiling', () => {
  it('continues across the edges, unlike the plain image of the same seed, and says so in the infotext', async () => {
    const base = { prompt: 'a brick wall texture', width: 64, height: 64, steps: 4, cfg_scale: 5, seed: 321 };
    const plain = await generate(model, withDefaults(base), 'txt2img');
    const tiled = await generate(model, withDefaults({ ...base, tiling: true }), 'txt2img');
    const a = plain.images[0]!;
    const b = tiled.images[0]!;
    expect(b.infotext).toContain('Tiling: True');
    expect(a.infotext).not.toContain('Tiling');
    expect(withDefaults(paramsFromInfotext(parseInfotext(b.infotext))).tiling).toBe(true);
    expect(Buffer.from(b.image.data).equals(Buffer.from(a.image.data))).toBe(false);
    const rPlain = seamRatio(a.image);
    const rTiled = seamRatio(b.image);
    expect(rTiled).toBeLessThan(rPlain);
    // Across a seamless edge the image changes about as much as between any two neighbours.
    expect(rTiled).toBeLessThan(1.2);
  });
});

describe('sizes that are multiples of 8 but not 64', () => {
  it('txt2img at 72×88 (latent 9×11) gives an image of that size that parses back', async () => {
    const p = withDefaults({
      prompt: 'a cat',
      width: 72,
      height: 88,
      steps: 3,
      seed: 5,
      sampler_name: 'Euler',
    });
    const r = await generate(model, p, 'txt2img');
    const img = r.images[0]!;
    expect([img.image.width, img.image.height]).toEqual([72, 88]);
    const back = withDefaults(paramsFromInfotext(parseInfotext(img.infotext)));
    expect([back.width, back.height]).toEqual([72, 88]);
    // Not a flat picture: the UNet produced structure at this size.
    const values = new Set(img.image.data);
    expect(values.size).toBeGreaterThan(16);
  });

  it('img2img at 72×88 with tiling keeps the size and records both', async () => {
    const w = 72;
    const h = 88;
    const rgba = new Uint8Array(w * h * 4);
    for (let i = 0; i < w * h; i++) rgba.set([(i % w) * 3, Math.floor(i / w) * 2, 90, 255], i * 4);
    const p = withDefaults({ prompt: 'a wall', width: w, height: h, steps: 3, seed: 8, tiling: true });
    const r = await generate(model, { ...p, denoising_strength: 0.5 }, 'img2img', {
      initImages: [{ rgba, width: w, height: h, hasAlpha: false }],
    });
    const img = r.images[0]!;
    expect([img.image.width, img.image.height]).toEqual([w, h]);
    expect(img.infotext).toContain('Tiling: True');
    expect(img.infotext).toContain('Size: 72x88');
  });
});
