/**
 * Textual-inversion embeddings stored in images, as A1111's training writes them
 * (modules/textual_inversion/image_embedding.py):
 *  - a text chunk "sd-ti-embedding" holding base64 of JSON, tensors as {"TORCHTENSOR": nested lists};
 *  - or the same JSON, zlib-compressed, hidden in the low nibbles of two pixel blocks left and right
 *    of the picture, each block XOR-ed with a fixed LCG stream (extract_image_data_embed).
 */
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { UserError } from '../util/errors.js';

/** Decoded embedding JSON bigger than this is refused (real ones are a few hundred kB). */
export const MAX_EMBEDDING_JSON_BYTES = 64 * 1024 * 1024;
/** Largest embedding image decoded to pixels. */
export const MAX_EMBEDDING_IMAGE_PIXELS = 8192 * 8192;

/** A tensor decoded from embedding JSON: row-major float32 values and their shape. */
export interface JsonTensor {
  kind: 'json-tensor';
  shape: number[];
  values: Float32Array;
}

export function isJsonTensor(v: unknown): v is JsonTensor {
  return typeof v === 'object' && v !== null && (v as JsonTensor).kind === 'json-tensor';
}

/**
 * np.array(nested list) for a rectangular list of numbers; throws on ragged or non-numeric data.
 * `maxElements` bounds the allocation before the data is checked (a crafted list whose first rows
 * are long must not make us allocate for rows that are not there).
 */
function nestedListToTensor(list: unknown, maxElements: number): JsonTensor {
  const shape: number[] = [];
  let probe: unknown = list;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const total = shape.reduce((a, b) => a * b, 1);
  if (total > maxElements)
    throw new UserError('embedding tensor is larger than its data; the file is damaged');
  const values = new Float32Array(total);
  let k = 0;
  const walk = (v: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (typeof v !== 'number') throw new UserError('embedding tensor holds a non-number');
      values[k++] = v;
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth])
      throw new UserError('embedding tensor is not rectangular');
    for (const x of v) walk(x, depth + 1);
  };
  walk(list, 0);
  return { kind: 'json-tensor', shape, values };
}

/** json.loads with A1111's EmbeddingDecoder: objects with a "TORCHTENSOR" key become tensors. */
export function parseEmbeddingJson(text: string): unknown {
  // Every number takes at least two characters ("0,"), so no real tensor has more elements than this.
  const maxElements = Math.ceil(text.length / 2);
  const revive = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(revive);
    if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (Object.prototype.hasOwnProperty.call(o, 'TORCHTENSOR'))
        return nestedListToTensor(o['TORCHTENSOR'], maxElements);
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(o)) {
        Object.defineProperty(out, k, {
          value: revive(x),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    return v;
  };
  return revive(JSON.parse(text));
}

/** embedding_from_b64: the "sd-ti-embedding" text chunk's content. */
export function embeddingFromBase64(b64: string): unknown {
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length > MAX_EMBEDDING_JSON_BYTES) throw new UserError('embedding data is too large');
  return parseEmbeddingJson(bytes.toString('utf8'));
}

/** image_embedding.lcg: the fixed pseudo-random byte stream (seed 0) the pixel blocks are XOR-ed with. */
export function* lcgStream(): Generator<number> {
  let seed = 0;
  for (;;) {
    seed = (Math.imul(1664525, seed) + 1013904223) >>> 0;
    yield seed % 255;
  }
}

function xorLowNibbles(block: Uint8Array): void {
  const g = lcgStream();
  for (let i = 0; i < block.length; i++) block[i] ^= g.next().value! & 0x0f;
}

/** RGB pixels (h × w × 3) of an image, alpha dropped as PIL's convert('RGB') does. */
async function rgbPixels(image: Uint8Array): Promise<{ data: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(image, { limitInputPixels: MAX_EMBEDDING_IMAGE_PIXELS })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels === 3) return { data, width: info.width, height: info.height };
  const rgb = new Uint8Array(info.width * info.height * 3);
  for (let i = 0; i < info.width * info.height; i++) rgb.fill(data[i * info.channels], i * 3, i * 3 + 3);
  return { data: rgb, width: info.width, height: info.height };
}

/**
 * extract_image_data_embed: the embedding hidden in an image's pixels, or undefined when the
 * image has no such data (fewer than two all-black separator columns).
 */
export async function extractImageDataEmbed(image: Uint8Array): Promise<unknown> {
  const { data, width, height } = await rgbPixels(image);
  // crop_black(tol=0): the bounding box of pixels whose three channels are all > 0
  // (an image without any such pixel is kept whole, as numpy's argmax of all-False is 0).
  let r0 = height;
  let r1 = -1;
  let c0 = width;
  let c1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      if (data[p] > 0 && data[p + 1] > 0 && data[p + 2] > 0) {
        if (y < r0) r0 = y;
        if (y > r1) r1 = y;
        if (x < c0) c0 = x;
        if (x > c1) c1 = x;
      }
    }
  }
  if (r1 < 0) [r0, r1, c0, c1] = [0, height - 1, 0, width - 1];
  const h = r1 - r0 + 1;
  const w = c1 - c0 + 1;
  const nib = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w * 3; x++) nib[y * w * 3 + x] = data[((y + r0) * width + c0) * 3 + x] & 0x0f;
  }
  const blackCols: number[] = [];
  for (let x = 0; x < w; x++) {
    let sum = 0;
    for (let y = 0; y < h && sum === 0; y++) {
      const p = (y * w + x) * 3;
      sum += nib[p] + nib[p + 1] + nib[p + 2];
    }
    if (sum === 0) blackCols.push(x);
  }
  if (blackCols.length < 2) return undefined;
  const lowW = blackCols[0];
  const highStart = blackCols[blackCols.length - 1] + 1;
  const highW = w - highStart;
  if (lowW !== highW || lowW === 0)
    throw new UserError('embedded data blocks have different sizes; the image is damaged');
  const block = (x0: number): Uint8Array => {
    const b = new Uint8Array(h * lowW * 3);
    for (let y = 0; y < h; y++) b.set(nib.subarray((y * w + x0) * 3, (y * w + x0 + lowW) * 3), y * lowW * 3);
    xorLowNibbles(b);
    return b;
  };
  const low = block(0);
  const high = block(highStart);
  const bytes = new Uint8Array(low.length);
  for (let i = 0; i < bytes.length; i++) bytes[i] = ((high[i] << 4) | low[i]) & 0xff;
  // The blocks are padded by repeating the data (np.resize): zlib stops at the end of its stream.
  const json = inflateSync(bytes, {
    maxOutputLength: MAX_EMBEDDING_JSON_BYTES,
    finishFlush: 2 /* Z_SYNC_FLUSH */,
  });
  return parseEmbeddingJson(json.toString('utf8'));
}
