/**
 * Variants of the tiny SD 2.x / SDXL golden checkpoints built inside a test (no new golden files):
 * the txt2img case's checkpoint with its UNet's first convolution widened to N input channels
 * (9 = inpainting, 5 = SD 2.0 depth), extra tensors added (unCLIP's embedder), and its yaml sidecar
 * beside it with `in_channels` changed to match.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openModel } from '../../src/formats/open.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import type { FamilyCase } from '../engine/family-goldens.js';
import { goldenPath } from '../helpers/golden.js';

const CONV_IN = 'model.diffusion_model.input_blocks.0.0.weight';

export interface VariantOptions {
  /** UNet input channels (the original 4 are kept, the rest get small deterministic weights). */
  channels?: number;
  /** Weight of the added channels at flat index k (default: a small sine pattern). */
  extra?: (k: number) => number;
  /** Tensors to add (F32 zeros of these shapes). */
  addTensors?: Record<string, number[]>;
}

/** Writes `<dir>/<stem>.safetensors` (+ `.yaml`) from the case's checkpoint; returns its path. */
export async function writeVariant(
  set: string,
  c: FamilyCase,
  dir: string,
  stem: string,
  opts: VariantOptions = {},
): Promise<string> {
  const src = await openModel(goldenPath(set, c.checkpoint));
  const tensors = new Map<string, Tensor>();
  try {
    for (const k of src.keys()) tensors.set(k, await src.read(k));
    const n = opts.channels ?? 4;
    const [o, i, kh, kw] = src.info(CONV_IN)!.shape as [number, number, number, number];
    if (n !== i) {
      const w = await src.readFloat32(CONV_IN);
      const extra = opts.extra ?? ((k: number) => Math.sin(k * 12.9898) * 0.2);
      const out = new Float32Array(o * n * kh * kw);
      for (let a = 0; a < o; a++)
        for (let ch = 0; ch < n; ch++)
          for (let k = 0; k < kh * kw; k++) {
            const at = (a * n + ch) * kh * kw + k;
            out[at] = ch < i ? w[(a * i + ch) * kh * kw + k]! : extra(at);
          }
      tensors.set(CONV_IN, { dtype: 'F32', shape: [o, n, kh, kw], data: new Uint8Array(out.buffer) });
    }
    for (const [name, shape] of Object.entries(opts.addTensors ?? {})) {
      const count = shape.reduce((a, b) => a * b, 1);
      tensors.set(name, { dtype: 'F32', shape, data: new Uint8Array(count * 4) });
    }
  } finally {
    await src.close();
  }
  const path = join(dir, `${stem}.safetensors`);
  await writeSafetensors(path, tensors);
  // The sidecar spells out the tiny text towers and heads; only the UNet's in_channels changes.
  const yaml = readFileSync(goldenPath(set, c.config), 'utf8');
  const unetIn = /((?:unet|network)_config:[\s\S]*?(?<!\w)in_channels:\s*)\d+/;
  if (!unetIn.test(yaml)) throw new Error(`${c.config}: no unet_config in_channels to change`);
  writeFileSync(join(dir, `${stem}.yaml`), yaml.replace(unetIn, `$1${opts.channels ?? 4}`));
  return path;
}
