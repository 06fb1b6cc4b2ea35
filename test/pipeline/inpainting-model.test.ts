/**
 * Inpainting checkpoints (9-channel UNet: latent + mask + masked-image latent). Built from tiny-sd by
 * widening its first convolution: with zero weights on the extra channels the model must behave
 * exactly like tiny-sd (the conditioning is wired in, and ignored); with random ones the
 * conditioning must change the result while the composite still keeps the unmasked pixels.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { openModel } from '../../src/formats/open.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { generate } from '../../src/pipeline/generate.js';
import type { DecodedImage, RgbImage } from '../../src/image/images.js';
import { loadModel, type LoadedModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';

const ckpt = goldenPath('tiny-sd', 'tiny-sd.safetensors');
const CONV_IN = 'model.diffusion_model.input_blocks.0.0.weight';

async function widened(extra: (i: number) => number): Promise<MemoryTensorSource> {
  const src = await openModel(ckpt);
  const tensors = new Map<string, Tensor>();
  for (const k of src.keys()) tensors.set(k, await src.read(k));
  const w = await src.readFloat32(CONV_IN);
  const [o, i, kh, kw] = src.info(CONV_IN)!.shape as [number, number, number, number];
  await src.close();
  const out = new Float32Array(o * 9 * kh * kw);
  for (let a = 0; a < o; a++) {
    for (let c = 0; c < 9; c++) {
      for (let k = 0; k < kh * kw; k++) {
        const at = (a * 9 + c) * kh * kw + k;
        out[at] = c < i ? w[(a * i + c) * kh * kw + k]! : extra(at);
      }
    }
  }
  tensors.set(CONV_IN, { dtype: 'F32', shape: [o, 9, kh, kw], data: new Uint8Array(out.buffer) });
  return new MemoryTensorSource(tensors, { path: 'tiny-sd-inpainting' });
}

let base: LoadedModel;
let zeroExtra: LoadedModel;
let randomExtra: LoadedModel;
let cacheDir = '';
beforeAll(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'sd-inpaint-cache-'));
  const common = { checkpoint: ckpt, clipVocab: clipVocabPath(), cacheDir };
  base = await loadModel(common);
  zeroExtra = await loadModel({ ...common, source: await widened(() => 0) });
  randomExtra = await loadModel({ ...common, source: await widened((k) => Math.sin(k * 12.9898) * 0.2) });
});
afterAll(async () => {
  for (const m of [base, zeroExtra, randomExtra]) await m?.release();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

function differing(a: RgbImage, b: RgbImage): { count: number; max: number } {
  let count = 0;
  let max = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    if (d) count++;
    max = Math.max(max, d);
  }
  return { count, max };
}

const init: DecodedImage = (() => {
  const rgba = new Uint8Array(64 * 64 * 4);
  for (let i = 0; i < 64 * 64; i++) rgba.set([(i % 64) * 4, (i >> 6) * 4, 60, 255], i * 4);
  return { rgba, width: 64, height: 64, hasAlpha: false };
})();
const mask: DecodedImage = (() => {
  const rgba = new Uint8Array(64 * 64 * 4);
  for (let i = 0; i < 64 * 64; i++) {
    const x = i % 64;
    const y = i >> 6;
    const v = x >= 16 && x < 48 && y >= 16 && y < 48 ? 255 : 0;
    rgba.set([v, v, v, 255], i * 4);
  }
  return { rgba, width: 64, height: 64, hasAlpha: false };
})();

/** The img2img job both inpainting tests run (fresh each time). */
function inpaintParams() {
  return withDefaults({
    prompt: 'a cat',
    seed: 4,
    steps: 3,
    width: 64,
    height: 64,
    mask_blur: 0,
    inpaint_full_res: false,
  });
}

describe('9-channel inpainting models', () => {
  it('are recognised', () => {
    expect(base.inpainting).toBe(false);
    expect(zeroExtra.inpainting).toBe(true);
  });

  it('with zero weights on the conditioning channels give the base model image (txt2img and inpaint)', async () => {
    const p = withDefaults({ prompt: 'a cat', seed: 4, steps: 3, width: 64, height: 64 });
    const a = (await generate(base, p, 'txt2img')).images[0]!.image;
    const b = (await generate(zeroExtra, p, 'txt2img')).images[0]!.image;
    const d = differing(a, b);
    expect(d.max).toBeLessThanOrEqual(1);
    expect(d.count / a.data.length).toBeLessThanOrEqual(0.01);
    const q = inpaintParams();
    const c = (await generate(base, q, 'img2img', { initImages: [init], mask })).images[0]!.image;
    const e = (await generate(zeroExtra, q, 'img2img', { initImages: [init], mask })).images[0]!.image;
    expect(differing(c, e).max).toBeLessThanOrEqual(1);
  });

  it('use the masked-image conditioning, and the composite keeps the unmasked pixels', async () => {
    const q = inpaintParams();
    const z = (await generate(zeroExtra, q, 'img2img', { initImages: [init], mask })).images[0]!.image;
    const r = (await generate(randomExtra, q, 'img2img', { initImages: [init], mask })).images[0]!.image;
    expect(differing(z, r).count).toBeGreaterThan(100);
    for (let i = 0; i < 64 * 64; i++) {
      const x = i % 64;
      const y = i >> 6;
      if (x >= 16 && x < 48 && y >= 16 && y < 48) continue;
      for (let c = 0; c < 3; c++) expect(r.data[i * 3 + c]).toBe(init.rgba[i * 4 + c]);
    }
  });
});
