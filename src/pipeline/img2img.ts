/**
 * img2img preparation as A1111's StableDiffusionProcessingImg2Img.init: the mask (from an image or
 * its alpha, inverted, blurred, cropped to the masked region for "only masked"), init images resized
 * or cropped, masked content filled, encoded to init latents with each image's seeded posterior
 * noise, latent noise/nothing under the mask; and the inpainting-model conditioning (mask + latent
 * of the masked image) for img2img and txt2img.
 */
import {
  crop,
  flatten,
  imageToTensor,
  resizeImage,
  resizeRgb,
  type DecodedImage,
  type GrayImage,
  type RgbImage,
} from '../image/images.js';
import { interpolate } from '../image/latents.js';
import {
  blurMask,
  expandCropRegion,
  fillMasked,
  getCropRegion,
  invertMask,
  latentMask,
  maskFromImage,
  overlayMaskWholePicture,
  type PasteLocation,
} from '../image/masks.js';
import { inpaintingMaskWeightOf, randnSourceOf, type GenerationParams } from '../params/generation.js';
import { ImageRng } from '../sampling/seeds.js';
import { UserError } from '../util/errors.js';
import type { LoadedModel } from './model.js';
import { concat } from './sample.js';
import { decodeLatentsRaw, encodeImage } from './vae.js';

export interface Img2ImgPrep {
  /** Per batch slot: the init latent [C·h·w]. */
  initLatents: Float32Array[];
  /** Repaint mask at latent resolution (1 = repaint), [h·w]; null without a mask. */
  nmask: Float32Array | null;
  /** For compositing back. */
  overlays: { original: RgbImage; mask: GrayImage }[] | null;
  pasteTo: PasteLocation | null;
  /** Inpainting-model conditioning per slot [5·h·w]. */
  imageConditioning: Float32Array[] | null;
  batchSize: number;
}

/**
 * An inpainting model's image conditioning: the rounded mask at latent size and the latent of the
 * image with the masked area blanked. `maskWeight` is A1111's inpainting_mask_weight: the image is
 * lerp(image, image · (1 − mask), weight), so 0 shows the model the whole image.
 */
export async function inpaintConditioning(
  model: LoadedModel,
  imageTensor: Float32Array,
  width: number,
  height: number,
  mask: GrayImage | null,
  maskWeight = 1,
): Promise<Float32Array> {
  const n = width * height;
  const masked = new Float32Array(imageTensor.length);
  const bin = new Float32Array(n);
  for (let i = 0; i < n; i++) bin[i] = mask ? Math.round(mask.data[i]! / 255) : 1;
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < n; i++) masked[c * n + i] = imageTensor[c * n + i]! * (1 - maskWeight * bin[i]!);
  const lat = await encodeImage(
    model.engine,
    { data: masked, width, height },
    model.scaleFactor,
    model.latentChannels,
    null,
  );
  const lw = width / 8;
  const lh = height / 8;
  const small = interpolate(bin, [1, 1, height, width], lh, lw, 'nearest');
  return concat([small, lat]);
}

/** A1111 StableDiffusionProcessingImg2Img.init: masks, resize/crop, fill, init latents. */
export async function prepareImg2Img(
  model: LoadedModel,
  p: GenerationParams,
  inputs: { initImages?: readonly DecodedImage[]; mask?: DecodedImage | null },
  seeds: readonly number[],
  warn: (m: string) => void,
): Promise<Img2ImgPrep> {
  const inits = inputs.initImages ?? [];
  if (inits.length === 0) throw new UserError('img2img needs an init image');
  let batchSize = p.batch_size;
  if (inits.length > 1) {
    if (inits.length > p.batch_size) {
      throw new UserError(
        `${inits.length} init images given for batch size ${p.batch_size}; give at most ${p.batch_size}`,
      );
    }
    batchSize = inits.length;
  }
  const W = p.width;
  const H = p.height;
  let imageMask: GrayImage | null = null;
  let overlayMask: GrayImage | null = null;
  let cropRegion: ReturnType<typeof getCropRegion> = null;
  if (inputs.mask) {
    const first = inits[0]!;
    let m = maskFromImage(inputs.mask, p.mask_round);
    if (m.width !== first.width || m.height !== first.height) {
      m = await resizeImage(0, m, first.width, first.height);
    }
    if (p.inpainting_mask_invert) m = invertMask(m);
    if (p.mask_blur_x > 0 || p.mask_blur_y > 0) m = blurMask(m, p.mask_blur_x, p.mask_blur_y);
    const onlyMasked = p.inpaint_full_res;
    if (onlyMasked) cropRegion = getCropRegion(m, p.inpaint_full_res_padding);
    if (onlyMasked && !cropRegion) {
      // As A1111: a blank mask with "only masked" drops the mask and runs plain img2img.
      warn('Unable to perform "Inpaint Only mask" because the mask is blank; running plain img2img');
    } else if (cropRegion) {
      overlayMask = m;
      cropRegion = expandCropRegion(cropRegion, W, H, m.width, m.height);
      const { x1, y1, x2, y2 } = cropRegion;
      imageMask = await resizeImage(2, crop(m, x1, y1, x2, y2), W, H);
    } else {
      imageMask = await resizeImage(p.resize_mode === 3 ? 0 : p.resize_mode, m, W, H);
      overlayMask = overlayMaskWholePicture(imageMask);
    }
  }
  const pasteTo = cropRegion
    ? {
        x: cropRegion.x1,
        y: cropRegion.y1,
        w: cropRegion.x2 - cropRegion.x1,
        h: cropRegion.y2 - cropRegion.y1,
      }
    : null;

  const latentShape: [number, number, number] = [model.latentChannels, H / 8, W / 8];
  const source = randnSourceOf(p);
  const initLatents: Float32Array[] = [];
  const overlays: { original: RgbImage; mask: GrayImage }[] = [];
  const imageConditioning: Float32Array[] = [];
  for (let slot = 0; slot < batchSize; slot++) {
    const decoded = inits[inits.length === 1 ? 0 : slot]!;
    let image = flatten(decoded);
    if (!cropRegion) {
      // Latent upscale (mode 3) resizes the latent; the image only needs a size the VAE takes.
      image =
        p.resize_mode === 3
          ? await resizeRgb(
              image,
              Math.max(8, Math.round(image.width / 8) * 8),
              Math.max(8, Math.round(image.height / 8) * 8),
            )
          : await resizeImage(p.resize_mode, image, W, H);
    }
    if (overlayMask) {
      const original = p.resize_mode === 3 && !cropRegion ? await resizeRgb(image, W, H) : image;
      overlays.push({ original, mask: overlayMask });
    }
    if (cropRegion) {
      image = await resizeImage(
        2,
        crop(image, cropRegion.x1, cropRegion.y1, cropRegion.x2, cropRegion.y2),
        W,
        H,
      );
    }
    if (imageMask && p.inpainting_fill !== 1) image = fillMasked(image, imageMask);
    let latent = await encodeImage(
      model.engine,
      image,
      model.scaleFactor,
      model.latentChannels,
      seeds[slot]!,
      source,
    );
    if (p.resize_mode === 3 && (image.width !== W || image.height !== H)) {
      latent = interpolate(
        latent,
        [1, model.latentChannels, image.height / 8, image.width / 8],
        H / 8,
        W / 8,
        'bilinear',
      );
    }
    initLatents.push(latent);
    if (model.inpainting) {
      const t =
        image.width === W && image.height === H
          ? imageToTensor(image)
          : imageToTensor(await resizeRgb(image, W, H));
      imageConditioning.push(await inpaintConditioning(model, t, W, H, imageMask, inpaintingMaskWeightOf(p)));
    }
  }

  let nmask: Float32Array | null = null;
  if (imageMask) {
    const lm = await latentMask(imageMask, W / 8, H / 8);
    nmask = concat(Array.from({ length: latentShape[0] }, () => lm));
    if (p.inpainting_fill === 2 || p.inpainting_fill === 3) {
      // A1111 draws "latent noise" from the first batch's seeds, once, for every batch.
      const noise =
        p.inpainting_fill === 2
          ? new ImageRng({ shape: latentShape, seeds: seeds.slice(0, batchSize), source }).next()
          : null;
      const n = nmask.length;
      initLatents.forEach((lat, slot) => {
        for (let k = 0; k < n; k++) {
          lat[k] = lat[k]! * (1 - nmask![k]!) + (noise ? noise[slot * n + k]! * nmask![k]! : 0);
        }
      });
    }
  }
  return {
    initLatents,
    nmask,
    overlays: overlayMask ? overlays : null,
    pasteTo,
    imageConditioning: model.inpainting ? imageConditioning : null,
    batchSize,
  };
}

/**
 * Inpainting-model conditioning of the hires pass: A1111 runs img2img_image_conditioning on the
 * decoded upscaled latents with no mask (all ones), so the image is lerp(image, 0, weight). At
 * weight 1 that is txt2img's all-blank conditioning, which needs no decode.
 */
export async function hiresConditioning(
  model: LoadedModel,
  latents: Float32Array,
  dims: readonly [number, number, number, number],
  maskWeight: number,
): Promise<Float32Array | undefined> {
  const [b, , h, w] = dims;
  if (!model.inpainting || maskWeight === 1) return txt2imgConditioning(model, w * 8, h * 8, b);
  const images = await decodeLatentsRaw(model.engine, latents, dims, model.scaleFactor);
  const out: Float32Array[] = [];
  for (const img of images)
    out.push(await inpaintConditioning(model, img.data, w * 8, h * 8, null, maskWeight));
  return concat(out);
}

/** Inpainting-model conditioning for txt2img: an all-ones mask over a black image. */
export async function txt2imgConditioning(
  model: LoadedModel,
  width: number,
  height: number,
  batch: number,
): Promise<Float32Array | undefined> {
  if (!model.inpainting) return undefined;
  const black = new Float32Array(3 * width * height).fill(-1);
  const one = await inpaintConditioning(model, black, width, height, null);
  return concat(Array.from({ length: batch }, () => one));
}
