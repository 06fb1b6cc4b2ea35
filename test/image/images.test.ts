import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import {
  cheapPreview,
  decodeImage,
  encodePng,
  imageGrid,
  imageToTensor,
  newRgb,
  resizeImage,
  tensorToImage,
  type GrayImage,
  type RgbImage,
} from '../../src/image/images.js';
import {
  applyOverlay,
  blurMask,
  expandCropRegion,
  fillMasked,
  getCropRegion,
  invertMask,
  latentMask,
  maskFromImage,
} from '../../src/image/masks.js';
import { UserError } from '../../src/util/errors.js';

function gradient(w: number, h: number): RgbImage {
  const img = newRgb(w, h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      img.data[i] = (x * 255) / (w - 1);
      img.data[i + 1] = (y * 255) / (h - 1);
      img.data[i + 2] = 100;
    }
  return img;
}

function gray(w: number, h: number, f: (x: number, y: number) => number): GrayImage {
  const data = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = f(x, y);
  return { width: w, height: h, data };
}

describe('resize modes (A1111 resize_image)', () => {
  it('gives the requested size in every mode', async () => {
    const img = gradient(40, 20);
    for (const mode of [0, 1, 2] as const) {
      const r = await resizeImage(mode, img, 24, 32);
      expect([r.width, r.height, r.data.length]).toEqual([24, 32, 24 * 32 * 3]);
    }
  });

  it('crop and resize covers the target and cuts the sides', async () => {
    const img = newRgb(40, 20);
    // left quarter red, right quarter blue, middle green
    for (let y = 0; y < 20; y++)
      for (let x = 0; x < 40; x++)
        img.data.set(x < 10 ? [255, 0, 0] : x >= 30 ? [0, 0, 255] : [0, 255, 0], (y * 40 + x) * 3);
    const r = await resizeImage(1, img, 20, 20);
    // the 20x20 centre of a 40x20 image is all green
    expect(Array.from(r.data.subarray((10 * 20 + 10) * 3, (10 * 20 + 10) * 3 + 3))).toEqual([0, 255, 0]);
    expect(r.data[(10 * 20 + 0) * 3 + 1]).toBeGreaterThan(200);
  });

  it('resize and fill fits the image and stretches its edge rows into the bands', async () => {
    const img = gradient(40, 20);
    const r = await resizeImage(2, img, 20, 20);
    // image fitted to 20x10 in the middle (rows 5..14); band rows repeat the edge rows
    for (let x = 0; x < 20; x++) {
      for (let c = 0; c < 3; c++) {
        expect(r.data[(0 * 20 + x) * 3 + c]).toBe(r.data[(5 * 20 + x) * 3 + c]);
        expect(r.data[(19 * 20 + x) * 3 + c]).toBe(r.data[(14 * 20 + x) * 3 + c]);
      }
    }
  });
});

describe('grid and conversions', () => {
  it('lays out rows = round(sqrt(n)) as A1111', () => {
    const imgs = (n: number) => Array.from({ length: n }, () => newRgb(8, 4, 9));
    expect([imageGrid(imgs(4)).width, imageGrid(imgs(4)).height]).toEqual([16, 8]);
    expect([imageGrid(imgs(3)).width, imageGrid(imgs(3)).height]).toEqual([16, 8]);
    expect([imageGrid(imgs(2)).width, imageGrid(imgs(2)).height]).toEqual([16, 4]);
    const g = imageGrid(imgs(3));
    expect(g.data[(4 * 16 + 8) * 3]).toBe(0); // empty slot is black
  });

  it('tensorToImage truncates like A1111 and maps NaN to 0', () => {
    const t = Float32Array.from([-1, 1, 0.999, Number.NaN, 5, -5, 0, 0.5, 0.1, 0, 0, 0]);
    const img = tensorToImage(t, 4, 1);
    expect(Array.from(img.data.filter((_, i) => i % 3 === 0))).toEqual([0, 255, 254, 0]);
    expect(img.data[1]).toBe(255);
    expect(img.data[4]).toBe(0);
    expect(img.data[7]).toBe(127); // (0+1)/2*255 = 127.5 → 127
    const back = imageToTensor(img);
    expect(back[0]).toBe(-1);
  });

  it('cheap preview has latent size', () => {
    const p = cheapPreview(new Float32Array(4 * 6 * 5).fill(0.3), 5, 6);
    expect([p.width, p.height]).toEqual([5, 6]);
  });

  it('decodes PNG with alpha and rejects junk with a UserError', async () => {
    const rgba = Buffer.alloc(4 * 4 * 4, 255);
    rgba[3] = 0;
    const png = await sharp(rgba, { raw: { width: 4, height: 4, channels: 4 } })
      .png()
      .toBuffer();
    const d = await decodeImage(png);
    expect(d.hasAlpha).toBe(true);
    expect(maskFromImage(d).data[0]).toBe(0);
    expect(maskFromImage(d).data[1]).toBe(255);
    await expect(decodeImage(new Uint8Array([1, 2, 3]), 'init image')).rejects.toBeInstanceOf(UserError);
    const opaque = await decodeImage(await encodePng(newRgb(3, 3, 200)));
    expect(opaque.hasAlpha).toBe(false);
    expect(maskFromImage(opaque).data[4]).toBe(200);
  });
});

describe('masks', () => {
  it('blur keeps constants and symmetry, spreads a point, and 0 is the identity', () => {
    const flat = gray(16, 16, () => 77);
    expect(blurMask(flat, 4, 4).data.every((v) => v === 77)).toBe(true);
    const dot = gray(21, 21, (x, y) => (x === 10 && y === 10 ? 255 : 0));
    const b = blurMask(dot, 2, 2);
    expect(b.data[10 * 21 + 10]).toBeLessThan(255);
    expect(b.data[10 * 21 + 8]).toBe(b.data[10 * 21 + 12]);
    expect(b.data[8 * 21 + 10]).toBe(b.data[10 * 21 + 8]);
    expect(Array.from(blurMask(dot, 0, 0).data)).toEqual(Array.from(dot.data));
  });

  it('crop region: bounding box with padding, expanded to the processing aspect (A1111 example)', () => {
    const m = gray(512, 512, (x, y) => (x >= 100 && x < 228 && y >= 200 && y < 232 ? 255 : 0));
    const r = getCropRegion(m, 0)!;
    expect(r).toEqual({ x1: 100, y1: 200, x2: 228, y2: 232 });
    expect(getCropRegion(m, 8)).toEqual({ x1: 92, y1: 192, x2: 236, y2: 240 });
    const e = expandCropRegion(r, 512, 512, 512, 512);
    expect([e.x2 - e.x1, e.y2 - e.y1]).toEqual([128, 128]);
    expect(getCropRegion(gray(4, 4, () => 0))).toBeNull();
    const edge = expandCropRegion({ x1: 0, y1: 0, x2: 10, y2: 40 }, 64, 64, 64, 64);
    expect(edge).toEqual({ x1: 0, y1: 0, x2: 40, y2: 40 });
  });

  it('fill paints the hole with surrounding colour and leaves the rest', () => {
    const img = newRgb(32, 32, 0);
    for (let i = 0; i < 32 * 32; i++) img.data.set([200, 50, 10], i * 3);
    const hole = gray(32, 32, (x, y) => (x >= 10 && x < 20 && y >= 10 && y < 20 ? 255 : 0));
    const holed = { ...img, data: img.data.slice() };
    for (let y = 10; y < 20; y++) for (let x = 10; x < 20; x++) holed.data.set([0, 0, 255], (y * 32 + x) * 3);
    const f = fillMasked(holed, hole);
    for (let i = 0; i < 32 * 32; i++) {
      for (let c = 0; c < 3; c++)
        expect(Math.abs(f.data[i * 3 + c] - img.data[i * 3 + c])).toBeLessThanOrEqual(1);
    }
  });

  it('overlay returns the original exactly where the mask is 0', async () => {
    const orig = gradient(16, 16);
    const gen = newRgb(16, 16, 3);
    const mask = gray(16, 16, (x) => (x < 8 ? 0 : x < 12 ? 128 : 255));
    const out = await applyOverlay(gen, orig, mask, null);
    for (let y = 0; y < 16; y++)
      for (let x = 0; x < 16; x++)
        for (let c = 0; c < 3; c++) {
          const i = (y * 16 + x) * 3 + c;
          if (x < 8) expect(out.data[i]).toBe(orig.data[i]);
          if (x >= 12) expect(out.data[i]).toBe(3);
        }
    // only masked: the generated image goes into a rectangle, the rest stays original
    const small = newRgb(8, 8, 3);
    const m2 = gray(16, 16, (x, y) => (x >= 8 && y >= 8 ? 255 : 0));
    const out2 = await applyOverlay(small, orig, m2, { x: 8, y: 8, w: 8, h: 8 });
    expect(out2.data[(15 * 16 + 15) * 3]).toBe(3);
    expect(out2.data[(2 * 16 + 2) * 3]).toBe(orig.data[(2 * 16 + 2) * 3]);
  });

  it('invert and latent mask', async () => {
    const m = gray(64, 64, (x) => (x < 32 ? 255 : 0));
    expect(invertMask(m).data[0]).toBe(0);
    const lm = await latentMask(m, 8, 8);
    expect(Array.from(lm.subarray(0, 8))).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
  });
});
