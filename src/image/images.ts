/**
 * Plain image buffers and the image operations A1111's pipeline performs on them (modules/images.py):
 * decoding with limits, resize modes, grids, tensor conversions and the cheap latent preview.
 * Images are interleaved 8-bit HWC; masks are one 8-bit channel (A1111's mode "L").
 */
import sharp from 'sharp';
import { UserError } from '../util/errors.js';

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, row-major RGB. */
  data: Uint8Array;
}

export interface GrayImage {
  width: number;
  height: number;
  /** width * height bytes. */
  data: Uint8Array;
}

/** A decoded image: colour flattened away from alpha, and the alpha channel when it was not opaque. */
export interface DecodedImage {
  rgba: Uint8Array;
  width: number;
  height: number;
  hasAlpha: boolean;
}

/** Largest image we decode (pixels): 8192², so a crafted header cannot ask for unbounded memory. */
export const MAX_INPUT_PIXELS = 8192 * 8192;

export function newRgb(width: number, height: number, fill = 0): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3).fill(fill) };
}

/** Decodes PNG/JPEG/WebP/… bytes into RGBA. Throws UserError for anything that is not a readable image. */
export async function decodeImage(bytes: Uint8Array, what = 'image'): Promise<DecodedImage> {
  try {
    const img = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' });
    const meta = await img.metadata();
    const { data, info } = await img.ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    let opaque = true;
    for (let i = 3; i < data.length; i += 4) {
      if (data[i] !== 255) {
        opaque = false;
        break;
      }
    }
    return {
      rgba: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      hasAlpha: meta.hasAlpha === true && !opaque,
    };
  } catch (err) {
    throw new UserError(
      `${what} could not be read as an image (${(err as Error).message}); give a PNG, JPEG or WebP file`,
    );
  }
}

/** Composites RGBA onto a background colour (A1111 images.flatten with img2img_background_color #ffffff). */
export function flatten(img: DecodedImage, background: [number, number, number] = [255, 255, 255]): RgbImage {
  const out = newRgb(img.width, img.height);
  const n = img.width * img.height;
  for (let i = 0; i < n; i++) {
    const a = img.rgba[i * 4 + 3] / 255;
    for (let c = 0; c < 3; c++) {
      out.data[i * 3 + c] = Math.round(img.rgba[i * 4 + c] * a + background[c] * (1 - a));
    }
  }
  return out;
}

export type ResampleKernel = 'lanczos3' | 'nearest' | 'cubic' | 'linear';

/** Resizes to exactly width×height (PIL's resize; Lanczos unless told otherwise). */
export function resizeRgb(
  img: RgbImage,
  width: number,
  height: number,
  kernel: ResampleKernel = 'lanczos3',
): Promise<RgbImage> {
  return resizeRaw(img, 3, width, height, kernel);
}

export function resizeGray(
  img: GrayImage,
  width: number,
  height: number,
  kernel: ResampleKernel = 'lanczos3',
): Promise<GrayImage> {
  return resizeRaw(img, 1, width, height, kernel);
}

async function resizeRaw<T extends RgbImage | GrayImage>(
  img: T,
  channels: 1 | 3,
  width: number,
  height: number,
  kernel: ResampleKernel,
): Promise<T> {
  if (img.width === width && img.height === height) return { width, height, data: img.data.slice() } as T;
  let pipeline = sharp(img.data, { raw: { width: img.width, height: img.height, channels } }).resize(
    width,
    height,
    { fit: 'fill', kernel },
  );
  // sharp writes a resized one-channel image as three channels: keep masks one channel.
  if (channels === 1) pipeline = pipeline.extractChannel(0);
  const buf = await pipeline.raw().toBuffer();
  return { width, height, data: new Uint8Array(buf.buffer, buf.byteOffset, buf.length) } as T;
}

/** Crops [x1,x2)×[y1,y2); the region must lie inside the image. */
export function crop<T extends RgbImage | GrayImage>(
  img: T,
  x1: number,
  y1: number,
  x2: number,
  y2: number,
): T {
  const ch = img.data.length / (img.width * img.height);
  const w = x2 - x1;
  const h = y2 - y1;
  const data = new Uint8Array(w * h * ch);
  for (let y = 0; y < h; y++) {
    const src = ((y1 + y) * img.width + x1) * ch;
    data.set(img.data.subarray(src, src + w * ch), y * w * ch);
  }
  return { width: w, height: h, data } as T;
}

/** Pastes `src` with its top-left at (x, y), clipped to `dst`. */
export function paste<T extends RgbImage | GrayImage>(dst: T, src: T, x: number, y: number): void {
  const ch = dst.data.length / (dst.width * dst.height);
  for (let sy = 0; sy < src.height; sy++) {
    const dy = y + sy;
    if (dy < 0 || dy >= dst.height) continue;
    for (let sx = 0; sx < src.width; sx++) {
      const dx = x + sx;
      if (dx < 0 || dx >= dst.width) continue;
      for (let c = 0; c < ch; c++)
        dst.data[(dy * dst.width + dx) * ch + c] = src.data[(sy * src.width + sx) * ch + c];
    }
  }
}

/**
 * A1111 resize_image: 0 just resize, 1 crop and resize (cover, centre crop), 2 resize and fill (fit,
 * the empty bands filled by stretching the edge rows/columns). Mode 3 (latent upscale) resizes in latent
 * space, so here it is the identity and the caller interpolates the latent.
 */
export async function resizeImage<T extends RgbImage | GrayImage>(
  mode: 0 | 1 | 2 | 3,
  img: T,
  width: number,
  height: number,
  kernel: ResampleKernel = 'lanczos3',
): Promise<T> {
  const gray = img.data.length === img.width * img.height;
  const resize = (im: T, w: number, h: number): Promise<T> =>
    (gray
      ? resizeGray(im as GrayImage, w, h, kernel)
      : resizeRgb(im as RgbImage, w, h, kernel)) as Promise<T>;
  const blank = (): T =>
    (gray ? { width, height, data: new Uint8Array(width * height) } : newRgb(width, height)) as T;
  if (mode === 3) return img;
  if (mode === 0) return resize(img, width, height);
  const ratio = width / height;
  const srcRatio = img.width / img.height;
  if (mode === 1) {
    const srcW = ratio > srcRatio ? width : Math.floor((img.width * height) / img.height);
    const srcH = ratio <= srcRatio ? height : Math.floor((img.height * width) / img.width);
    const resized = await resize(img, srcW, srcH);
    const res = blank();
    paste(
      res,
      resized,
      Math.floor(width / 2) - Math.floor(srcW / 2),
      Math.floor(height / 2) - Math.floor(srcH / 2),
    );
    return res;
  }
  const srcW = ratio < srcRatio ? width : Math.floor((img.width * height) / img.height);
  const srcH = ratio >= srcRatio ? height : Math.floor((img.height * width) / img.width);
  const resized = await resize(img, srcW, srcH);
  const res = blank();
  const ox = Math.floor(width / 2) - Math.floor(srcW / 2);
  const oy = Math.floor(height / 2) - Math.floor(srcH / 2);
  paste(res, resized, ox, oy);
  const ch = gray ? 1 : 3;
  if (ratio < srcRatio) {
    // Bands above and below: repeat the first and last rows.
    for (let y = 0; y < height; y++) {
      const sy = y < oy ? 0 : y >= oy + srcH ? srcH - 1 : -1;
      if (sy < 0) continue;
      for (let x = 0; x < width; x++) {
        const sx = Math.min(srcW - 1, Math.max(0, x - ox));
        for (let c = 0; c < ch; c++)
          res.data[(y * width + x) * ch + c] = resized.data[(sy * srcW + sx) * ch + c];
      }
    }
  } else if (ratio > srcRatio) {
    for (let x = 0; x < width; x++) {
      const sx = x < ox ? 0 : x >= ox + srcW ? srcW - 1 : -1;
      if (sx < 0) continue;
      for (let y = 0; y < height; y++) {
        const sy = Math.min(srcH - 1, Math.max(0, y - oy));
        for (let c = 0; c < ch; c++)
          res.data[(y * width + x) * ch + c] = resized.data[(sy * srcW + sx) * ch + c];
      }
    }
  }
  return res;
}

/** A1111 image_grid with its default settings (n_rows -1): rows = round(sqrt(n)), black background. */
export function imageGrid(images: readonly RgbImage[], rows?: number): RgbImage {
  if (images.length === 0) throw new Error('imageGrid needs at least one image');
  let r = rows ?? Math.round(Math.sqrt(images.length));
  r = Math.max(1, Math.min(r, images.length));
  const cols = Math.ceil(images.length / r);
  const { width: w, height: h } = images[0];
  const grid = newRgb(cols * w, r * h);
  images.forEach((im, i) => paste(grid, im, (i % cols) * w, Math.floor(i / cols) * h));
  return grid;
}

/** uint8 HWC image → float NCHW in [-1, 1] (what the VAE encoder takes). */
export function imageToTensor(img: RgbImage): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[c * n + i] = (img.data[i * 3 + c] / 255) * 2 - 1;
  }
  return out;
}

/**
 * One decoded image (CHW float, VAE output range [-1, 1]) → uint8 HWC, exactly as A1111:
 * 255 * clamp((x + 1) / 2, 0, 1), truncated (not rounded).
 */
export function tensorToImage(chw: Float32Array, width: number, height: number, offset = 0): RgbImage {
  const n = width * height;
  const out = newRgb(width, height);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const v = (chw[offset + c * n + i] + 1) / 2;
      const clamped = v > 1 ? 1 : v > 0 ? v : 0; // NaN → 0
      out.data[i * 3 + c] = Math.trunc(255 * clamped);
    }
  }
  return out;
}

/** SD 1.x latent channel → RGB factors of A1111's "Approx cheap" preview (no weights needed). */
const CHEAP_COEFFS = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/** A cheap preview of one latent (4×h×w, scaled as sampled) at latent resolution. */
export function cheapPreview(latent: Float32Array, width: number, height: number, offset = 0): RgbImage {
  const n = width * height;
  const rgb = new Float32Array(3 * n);
  for (let l = 0; l < 4; l++) {
    for (let i = 0; i < n; i++) {
      const v = latent[offset + l * n + i];
      for (let r = 0; r < 3; r++) rgb[r * n + i] += v * CHEAP_COEFFS[l][r];
    }
  }
  return tensorToImage(rgb, width, height);
}

/** PNG bytes of an image (no metadata; see outputs.ts for the infotext chunk). */
export async function encodePng(img: RgbImage | GrayImage): Promise<Buffer> {
  // Loaded on first use: the metadata module is not needed to start the CLI.
  const { encodePngWithInfotext } = await import('../infotext/image-metadata.js');
  return encodePngWithInfotext(img, null);
}
