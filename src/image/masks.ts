/**
 * Inpainting masks as A1111 prepares them (modules/processing.py Img2Img.init, modules/masking.py):
 * binary mask from an image or its alpha, invert, Gaussian blur per axis, "only masked" crop region,
 * masked-content fill, the latent mask, and compositing the result back over the original.
 * White (255) = repaint.
 */
import type { DecodedImage, GrayImage, RgbImage } from './images.js';
import { newRgb, resizeGray, resizeImage } from './images.js';

/**
 * A1111 create_binary_mask: an RGBA image with a non-opaque alpha gives its alpha (rounded at 128
 * when `round`), any other image its luma (PIL "L": (299 R + 587 G + 114 B) / 1000).
 */
export function maskFromImage(img: DecodedImage, round = true): GrayImage {
  const n = img.width * img.height;
  const data = new Uint8Array(n);
  if (img.hasAlpha) {
    for (let i = 0; i < n; i++) {
      const a = img.rgba[i * 4 + 3];
      data[i] = round ? (a > 128 ? 255 : 0) : a;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const r = img.rgba[i * 4];
      const g = img.rgba[i * 4 + 1];
      const b = img.rgba[i * 4 + 2];
      data[i] = Math.floor((r * 299 + g * 587 + b * 114 + 500) / 1000);
    }
  }
  return { width: img.width, height: img.height, data };
}

export function invertMask(mask: GrayImage): GrayImage {
  return { width: mask.width, height: mask.height, data: mask.data.map((v) => 255 - v) };
}

/** OpenCV getGaussianKernel(size, sigma). */
function gaussianKernel(size: number, sigma: number): Float64Array {
  const k = new Float64Array(size);
  const mid = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    k[i] = Math.exp(-((i - mid) ** 2) / (2 * sigma * sigma));
    sum += k[i];
  }
  for (let i = 0; i < size; i++) k[i] /= sum;
  return k;
}

/** OpenCV's default border (BORDER_REFLECT_101): …c b | a b c … */
function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - j;
  return j;
}

/**
 * A1111's mask blur: cv2.GaussianBlur along x with kernel 2·int(2.5σx + 0.5) + 1 and σx, then along
 * y the same with σy; uint8 results rounded.
 */
export function blurMask(mask: GrayImage, blurX: number, blurY: number): GrayImage {
  let data = mask.data;
  const { width: w, height: h } = mask;
  const pass = (src: Uint8Array, sigma: number, horizontal: boolean): Uint8Array => {
    const size = 2 * Math.trunc(2.5 * sigma + 0.5) + 1;
    const k = gaussianKernel(size, sigma);
    const r = (size - 1) / 2;
    const out = new Uint8Array(src.length);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let acc = 0;
        for (let t = -r; t <= r; t++) {
          const v = horizontal ? src[y * w + reflect101(x + t, w)] : src[reflect101(y + t, h) * w + x];
          acc += v * k[t + r];
        }
        out[y * w + x] = Math.min(255, Math.max(0, Math.round(acc)));
      }
    }
    return out;
  };
  if (blurX > 0) data = pass(data, blurX, true);
  if (blurY > 0) data = pass(data, blurY, false);
  return { width: w, height: h, data: data === mask.data ? data.slice() : data };
}

export interface CropRegion {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** Bounding box of the non-zero mask pixels grown by `pad` (A1111 get_crop_region_v2); null when the mask is empty. */
export function getCropRegion(mask: GrayImage, pad = 0): CropRegion | null {
  let x1 = mask.width;
  let y1 = mask.height;
  let x2 = -1;
  let y2 = -1;
  for (let y = 0; y < mask.height; y++) {
    for (let x = 0; x < mask.width; x++) {
      if (mask.data[y * mask.width + x] !== 0) {
        if (x < x1) x1 = x;
        if (x > x2) x2 = x;
        if (y < y1) y1 = y;
        if (y > y2) y2 = y;
      }
    }
  }
  if (x2 < 0) return null;
  return {
    x1: Math.max(x1 - pad, 0),
    y1: Math.max(y1 - pad, 0),
    x2: Math.min(x2 + 1 + pad, mask.width),
    y2: Math.min(y2 + 1 + pad, mask.height),
  };
}

/** Grows a crop region to the aspect ratio of the processing size, inside the image (A1111 expand_crop_region). */
export function expandCropRegion(
  region: CropRegion,
  processingWidth: number,
  processingHeight: number,
  imageWidth: number,
  imageHeight: number,
): CropRegion {
  let { x1, y1, x2, y2 } = region;
  const ratioCrop = (x2 - x1) / (y2 - y1);
  const ratioProcessing = processingWidth / processingHeight;
  if (ratioCrop > ratioProcessing) {
    const desiredHeight = (x2 - x1) / ratioProcessing;
    const diff = Math.trunc(desiredHeight - (y2 - y1));
    y1 -= Math.floor(diff / 2);
    y2 += diff - Math.floor(diff / 2);
    if (y2 >= imageHeight) {
      const d = y2 - imageHeight;
      y2 -= d;
      y1 -= d;
    }
    if (y1 < 0) {
      y2 -= y1;
      y1 = 0;
    }
    if (y2 >= imageHeight) y2 = imageHeight;
  } else {
    const desiredWidth = (y2 - y1) * ratioProcessing;
    const diff = Math.trunc(desiredWidth - (x2 - x1));
    x1 -= Math.floor(diff / 2);
    x2 += diff - Math.floor(diff / 2);
    if (x2 >= imageWidth) {
      const d = x2 - imageWidth;
      x2 -= d;
      x1 -= d;
    }
    if (x1 < 0) {
      x2 -= x1;
      x1 = 0;
    }
    if (x2 >= imageWidth) x2 = imageWidth;
  }
  return { x1, y1, x2, y2 };
}

/** PIL's box radius for a Gaussian of `radius` made of `passes` box blurs (extended box blur). */
function boxRadius(radius: number, passes: number): number {
  const sigma2 = (radius * radius) / passes;
  const L = Math.sqrt(12 * sigma2 + 1);
  const l = Math.floor((L - 1) / 2);
  let a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
  a /= 6 * (sigma2 - (l + 1) * (l + 1));
  return l + a;
}

/** One box-blur pass with a fractional radius along rows or columns, edges clamped (as PIL). */
function boxBlurLine(
  src: Float32Array,
  w: number,
  h: number,
  ch: number,
  radius: number,
  horizontal: boolean,
): Float32Array {
  const out = new Float32Array(src.length);
  const r = Math.floor(radius);
  const edge = radius - r;
  const norm = 1 / (2 * radius + 1);
  const len = horizontal ? w : h;
  const lines = horizontal ? h : w;
  // The line padded with r + 2 copies of its edge values on each side, so the window never clamps.
  const pad = r + 2;
  const line = new Float32Array(len + 2 * pad);
  const stride = horizontal ? ch : w * ch;
  for (let li = 0; li < lines; li++) {
    const base = horizontal ? li * w * ch : li * ch;
    for (let c = 0; c < ch; c++) {
      for (let i = 0; i < len; i++) line[pad + i] = src[base + i * stride + c]!;
      const first = line[pad]!;
      const last = line[pad + len - 1]!;
      for (let i = 0; i < pad; i++) {
        line[i] = first;
        line[pad + len + i] = last;
      }
      let sum = 0;
      for (let t = -r; t <= r; t++) sum += line[pad + t]!;
      for (let i = 0; i < len; i++) {
        const at = pad + i;
        out[base + i * stride + c] = (sum + edge * (line[at - r - 1]! + line[at + r + 1]!)) * norm;
        sum += line[at + r + 1]! - line[at - r]!;
      }
    }
  }
  return out;
}

function gaussianBlurPil(src: Float32Array, w: number, h: number, ch: number, radius: number): Float32Array {
  if (radius <= 0) return src.slice();
  const br = boxRadius(radius, 3);
  let cur = src;
  for (let p = 0; p < 3; p++) cur = boxBlurLine(cur, w, h, ch, br, true);
  for (let p = 0; p < 3; p++) cur = boxBlurLine(cur, w, h, ch, br, false);
  return cur;
}

/**
 * A1111 masking.fill ("Masked content: fill"): the masked area is painted with ever less blurred
 * copies of the unmasked colours, so the sampler starts from the surrounding colours.
 */
export function fillMasked(image: RgbImage, mask: GrayImage): RgbImage {
  const { width: w, height: h } = image;
  const n = w * h;
  // Premultiplied RGBA of the image with alpha = inverted mask.
  const pre = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) {
    const a = (255 - mask.data[i]) / 255;
    for (let c = 0; c < 3; c++) pre[i * 4 + c] = image.data[i * 3 + c] * a;
    pre[i * 4 + 3] = a;
  }
  const acc = new Float32Array(n * 4); // straight RGBA, starts transparent
  for (const [radius, repeats] of [
    [256, 1],
    [64, 1],
    [16, 2],
    [4, 4],
    [2, 2],
    [0, 1],
  ] as const) {
    const blurred = gaussianBlurPil(pre, w, h, 4, radius);
    for (let rep = 0; rep < repeats; rep++) {
      for (let i = 0; i < n; i++) {
        const sa = blurred[i * 4 + 3];
        if (sa <= 0) continue;
        const da = acc[i * 4 + 3];
        const oa = sa + da * (1 - sa);
        for (let c = 0; c < 3; c++) {
          const sc = blurred[i * 4 + c] / sa;
          acc[i * 4 + c] = (sc * sa + acc[i * 4 + c] * da * (1 - sa)) / oa;
        }
        acc[i * 4 + 3] = oa;
      }
    }
  }
  const out = newRgb(w, h);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out.data[i * 3 + c] = Math.min(255, Math.max(0, Math.round(acc[i * 4 + c])));
  }
  return out;
}

/** Whole-picture overlay mask: A1111 doubles the blurred mask so the repainted area is fully replaced. */
export function overlayMaskWholePicture(mask: GrayImage): GrayImage {
  return { width: mask.width, height: mask.height, data: mask.data.map((v) => Math.min(255, v * 2)) };
}

/**
 * The repaint mask at latent resolution, as A1111: resized (bicubic) to the latent size, /255,
 * rounded to 0 or 1. 1 = repaint (A1111 `nmask`).
 */
export async function latentMask(
  mask: GrayImage,
  latentWidth: number,
  latentHeight: number,
): Promise<Float32Array> {
  const small = await resizeGray(mask, latentWidth, latentHeight, 'cubic');
  const out = new Float32Array(latentWidth * latentHeight);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(small.data[i] / 255);
  return out;
}

export interface PasteLocation {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * A1111 apply_overlay: the original (`overlay`, whose alpha is 255 − overlay mask) is composited over the
 * generated image; with a paste location (only masked), the generated image is first fitted to that
 * rectangle of a transparent canvas the size of the original. Where the mask is 0 the original pixel
 * comes back exactly.
 */
export async function applyOverlay(
  generated: RgbImage,
  original: RgbImage,
  overlayMask: GrayImage,
  pasteTo: PasteLocation | null,
): Promise<RgbImage> {
  const { width: w, height: h } = original;
  const n = w * h;
  // Destination: generated RGB with alpha (1 everywhere, or only inside the paste rectangle).
  const dst = new Float32Array(n * 4);
  if (pasteTo) {
    const fitted = await resizeImage(1, generated, pasteTo.w, pasteTo.h);
    for (let y = 0; y < pasteTo.h; y++) {
      const dy = pasteTo.y + y;
      if (dy < 0 || dy >= h) continue;
      for (let x = 0; x < pasteTo.w; x++) {
        const dx = pasteTo.x + x;
        if (dx < 0 || dx >= w) continue;
        const di = dy * w + dx;
        const si = y * pasteTo.w + x;
        for (let c = 0; c < 3; c++) dst[di * 4 + c] = fitted.data[si * 3 + c];
        dst[di * 4 + 3] = 1;
      }
    }
  } else {
    if (generated.width !== w || generated.height !== h) {
      throw new Error(
        `overlay size ${w}x${h} differs from the generated image ${generated.width}x${generated.height}`,
      );
    }
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) dst[i * 4 + c] = generated.data[i * 3 + c];
      dst[i * 4 + 3] = 1;
    }
  }
  const out = newRgb(w, h);
  for (let i = 0; i < n; i++) {
    const sa = (255 - overlayMask.data[i]) / 255;
    const da = dst[i * 4 + 3];
    const oa = sa + da * (1 - sa);
    for (let c = 0; c < 3; c++) {
      const v = oa > 0 ? (original.data[i * 3 + c] * sa + dst[i * 4 + c] * da * (1 - sa)) / oa : 0;
      out.data[i * 3 + c] = Math.min(255, Math.max(0, Math.round(v)));
    }
  }
  return out;
}
