/**
 * Live previews as a per-step hook of the UNet call: every `every` steps the denoised latent is
 * shown — "cheap" (A1111's linear latent→RGB, free) right away; "full" (the VAE) or TAESD between
 * steps, just before the next UNet call, so a preview never delays the step it shows.
 */
import { cheapPreview, type RgbImage } from '../image/images.js';
import type { PreviewMode } from './preview-mode.js';
import type { Dims, UnetStepHook } from './sample.js';
import type { PreviewDecoder } from './taesd.js';
import { decodeLatents } from './vae.js';

export type OnPreview = (p: { image: RgbImage; index: number; step: number }) => void;

export interface PreviewOptions {
  onPreview: OnPreview;
  every: number;
  mode?: PreviewMode;
  /** TAESD decoder for mode "taesd" (null/absent, or one for other latents: the cheap preview). */
  taesd?: PreviewDecoder | null;
}

/** The preview hook of one pass over latents of `dims`; null when previews are off. */
export function previewHook(
  opts: PreviewOptions | null | undefined,
  vae: { engine: Parameters<typeof decodeLatents>[0]; scaleFactor: number },
  dims: Dims,
): UnetStepHook | null {
  if (!opts || opts.every <= 0) return null;
  const [b, c, h, w] = dims;
  const taesd = opts.mode === 'taesd' && opts.taesd?.latentChannels === c ? opts.taesd : null;
  const decoded = opts.mode === 'full' || taesd !== null;
  let pending: { latent: Float32Array; step: number } | null = null;
  return {
    async beforeUnet() {
      if (!pending) return;
      const { latent, step } = pending;
      pending = null;
      const images = taesd
        ? await taesd.decode(latent, dims)
        : await decodeLatents(vae.engine, latent, dims, vae.scaleFactor);
      images.forEach((image, index) => opts.onPreview({ image, index, step }));
    },
    afterStep(info) {
      const step = info.i + 1;
      if (step % opts.every !== 0) return;
      if (decoded) {
        pending = { latent: info.denoised.slice(), step };
        return;
      }
      for (let i = 0; i < b; i++) {
        opts.onPreview({ image: cheapPreview(info.denoised, w, h, i * c * h * w), index: i, step });
      }
    },
  };
}
