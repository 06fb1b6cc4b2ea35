/**
 * Tiled VAE decode/encode: run the network on overlapping tiles and blend the overlaps with linear
 * ramps, so memory depends on the tile size, not the image size. GroupNorm statistics are per
 * tile, so a tiled result differs slightly from a whole-image one (as in A1111's tiled-VAE
 * extensions); images that fit in one tile go through unchanged.
 */
import type { TensorF32 } from './tensors.js';

export interface TileOptions {
  /** Tile edge in latent pixels (default 64 = 512 image pixels). */
  tile?: number;
  /** Overlap between neighbouring tiles in latent pixels (default 16). */
  overlap?: number;
}

/** Start offsets of tiles of length `tile` covering `size` with at least `overlap` shared. */
export function tileStarts(size: number, tile: number, overlap: number, align = 1): number[] {
  if (size <= tile) return [0];
  const step = Math.max(1, tile - overlap);
  const n = Math.ceil((size - tile) / step) + 1;
  const starts: number[] = [];
  for (let i = 0; i < n; i++) starts.push(Math.round((i * (size - tile)) / (n - 1) / align) * align);
  return starts;
}

function crop(t: TensorF32, y0: number, x0: number, h: number, w: number): TensorF32 {
  const [b, c, H, W] = t.dims as [number, number, number, number];
  const out = new Float32Array(b * c * h * w);
  for (let bc = 0; bc < b * c; bc++) {
    for (let y = 0; y < h; y++) {
      const src = bc * H * W + (y0 + y) * W + x0;
      out.set(t.data.subarray(src, src + w), bc * h * w + y * w);
    }
  }
  return { data: out, dims: [b, c, h, w] };
}

/** Weight of position i in a tile of length n whose sides at `lo`/`hi` blend over `ramp` pixels. */
function ramp(i: number, n: number, ramp: number, lo: boolean, hi: boolean): number {
  let w = 1;
  if (lo) w = Math.min(w, (i + 0.5) / ramp);
  if (hi) w = Math.min(w, (n - i - 0.5) / ramp);
  return Math.max(w, 1e-3);
}

/**
 * Run `fn` over tiles of `input` ([B, C, H, W]); each output tile is `scale`× the input tile.
 * `fn` also gets the tile's position so it can crop companion inputs (noise) the same way.
 */
async function tiled(
  input: TensorF32,
  scale: number,
  opts: { tile: number; overlap: number; align?: number },
  fn: (tile: TensorF32, y0: number, x0: number, h: number, w: number) => Promise<TensorF32[]>,
): Promise<TensorF32[]> {
  const [, , H, W] = input.dims as [number, number, number, number];
  const ys = tileStarts(H, opts.tile, opts.overlap, opts.align);
  const xs = tileStarts(W, opts.tile, opts.overlap, opts.align);
  if (ys.length === 1 && xs.length === 1) return fn(input, 0, 0, H, W);
  let acc: Float32Array[] | undefined;
  let outDims: number[][] = [];
  let weight: Float32Array | undefined;
  const OH = Math.round(H * scale);
  const OW = Math.round(W * scale);
  const rampPx = Math.max(1, opts.overlap * scale);
  for (const y0 of ys) {
    for (const x0 of xs) {
      const h = Math.min(opts.tile, H - y0);
      const w = Math.min(opts.tile, W - x0);
      const outs = await fn(crop(input, y0, x0, h, w), y0, x0, h, w);
      if (!acc) {
        outDims = outs.map((o) => [o.dims[0]!, o.dims[1]!, OH, OW]);
        acc = outDims.map((d) => new Float32Array(d[0]! * d[1]! * OH * OW));
        weight = new Float32Array(OH * OW);
      }
      const oy = Math.round(y0 * scale);
      const ox = Math.round(x0 * scale);
      const th = Math.round(h * scale);
      const tw = Math.round(w * scale);
      const wy = Array.from({ length: th }, (_, i) => ramp(i, th, rampPx, y0 > 0, y0 + h < H));
      const wx = Array.from({ length: tw }, (_, i) => ramp(i, tw, rampPx, x0 > 0, x0 + w < W));
      for (let y = 0; y < th; y++)
        for (let x = 0; x < tw; x++) weight![(oy + y) * OW + ox + x]! += wy[y]! * wx[x]!;
      outs.forEach((o, k) => {
        const a = acc![k]!;
        const bc = o.dims[0]! * o.dims[1]!;
        for (let p = 0; p < bc; p++) {
          for (let y = 0; y < th; y++) {
            for (let x = 0; x < tw; x++) {
              a[p * OH * OW + (oy + y) * OW + ox + x]! += o.data[p * th * tw + y * tw + x]! * wy[y]! * wx[x]!;
            }
          }
        }
      });
    }
  }
  return acc!.map((a, k) => {
    const planes = outDims[k]![0]! * outDims[k]![1]!;
    for (let p = 0; p < planes; p++) for (let i = 0; i < OH * OW; i++) a[p * OH * OW + i]! /= weight![i]!;
    return { data: a, dims: outDims[k]! };
  });
}

function resolve(opts: TileOptions): { tile: number; overlap: number } {
  const tile = opts.tile ?? 64;
  const overlap = opts.overlap ?? 16;
  if (!Number.isInteger(tile) || tile < 8 || !Number.isInteger(overlap) || overlap < 0 || overlap >= tile) {
    throw new Error(`bad tile options: tile ${tile}, overlap ${overlap}`);
  }
  return { tile, overlap };
}

export async function decodeTiled(
  z: TensorF32,
  decode: (z: TensorF32) => Promise<TensorF32>,
  opts: TileOptions,
): Promise<TensorF32> {
  const [out] = await tiled(z, 8, resolve(opts), async (t) => [await decode(t)]);
  return out!;
}

export async function encodeTiled<P extends Record<string, TensorF32>>(
  image: TensorF32,
  noise: TensorF32 | undefined,
  encode: (img: TensorF32, noise: TensorF32 | undefined) => Promise<P>,
  opts: TileOptions,
): Promise<P> {
  const { tile, overlap } = resolve(opts);
  // Tiles in image pixels, multiples of 8 so they map onto whole latent pixels.
  const px = { tile: tile * 8, overlap: overlap * 8, align: 8 };
  const [, , H, W] = image.dims as [number, number, number, number];
  if (H % 8 !== 0 || W % 8 !== 0) throw new Error(`image size ${W}×${H} must be a multiple of 8`);
  let names: string[] = [];
  const outs = await tiled(image, 1 / 8, px, async (t, y0, x0, h, w) => {
    const nz = noise && crop(noise, y0 / 8, x0 / 8, h / 8, w / 8);
    const r = await encode(t, nz);
    names = Object.keys(r);
    return names.map((n) => r[n]!);
  });
  return Object.fromEntries(names.map((n, i) => [n, outs[i]!])) as P;
}

/** Spatial margin (latent pixels) wrapped around a seamless image before a tiled decode/encode. */
export function seamlessMargin(opts: TileOptions): number {
  return resolve(opts).overlap;
}

/** [B, C, H, W] extended by `p` on every side with the opposite edge's pixels (circular padding). */
export function wrapPad(t: TensorF32, p: number): TensorF32 {
  const [b, c, H, W] = t.dims as [number, number, number, number];
  const OH = H + 2 * p;
  const OW = W + 2 * p;
  const out = new Float32Array(b * c * OH * OW);
  const mod = (i: number, n: number) => ((i % n) + n) % n;
  for (let bc = 0; bc < b * c; bc++) {
    for (let y = 0; y < OH; y++) {
      const src = bc * H * W + mod(y - p, H) * W;
      const dst = bc * OH * OW + y * OW;
      for (let x = 0; x < OW; x++) out[dst + x] = t.data[src + mod(x - p, W)]!;
    }
  }
  return { data: out, dims: [b, c, OH, OW] };
}

/** Remove `p` pixels from every side of [B, C, H, W]. */
export function cropBorder(t: TensorF32, p: number): TensorF32 {
  const [, , H, W] = t.dims as [number, number, number, number];
  return crop(t, p, p, H - 2 * p, W - 2 * p);
}
