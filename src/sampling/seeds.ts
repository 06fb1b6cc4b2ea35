/**
 * Seeds as A1111 uses them (`processing.py` + `modules/rng.py` ImageRNG): one generator per image,
 * variation seeds blended by slerp, "resize seed from width/height", the Eta noise seed delta, and
 * the per-step noise that ancestral samplers draw from the image's own generator.
 */
import { UserError } from '../util/errors.js';
import { checkSeed, createGenerator, type NormalGenerator, type RandomSource } from './rng.js';

/** A1111 draws random seeds with `random.randrange(4294967294)`. */
const RANDOM_SEED_RANGE = 4294967294;

/** `get_fixed_seed`: -1 (or nothing) becomes a fresh random seed; anything else is checked and kept. */
export function resolveSeed(seed: number | null | undefined, random: () => number = Math.random): number {
  if (seed === null || seed === undefined || seed === -1) return Math.floor(random() * RANDOM_SEED_RANGE);
  checkSeed(seed);
  return seed;
}

export interface BatchSeeds {
  seeds: number[];
  subseeds: number[];
}

/**
 * A1111's `all_seeds` / `all_subseeds` for `count` images: seed+i per image, except that with a
 * variation strength the main seed stays fixed and the subseed counts up instead.
 */
export function batchSeeds(
  seed: number,
  subseed: number,
  subseedStrength: number,
  count: number,
): BatchSeeds {
  checkSeed(seed);
  checkSeed(subseed);
  const seeds: number[] = [];
  const subseeds: number[] = [];
  for (let i = 0; i < count; i++) {
    seeds.push(seed + (subseedStrength === 0 ? i : 0));
    subseeds.push(subseed + i);
  }
  return { seeds, subseeds };
}

/**
 * A1111's `rng.slerp(val, low, high)` applied to one image's [C, H, W] noise. torch.norm(dim=1) on a
 * 3-D tensor normalises along H, so the interpolation runs per (channel, column) vector; when the
 * vectors are nearly parallel A1111 falls back to `low * val + high * (1 - val)` (sic).
 */
export function slerp(
  val: number,
  low: Float32Array,
  high: Float32Array,
  shape: readonly number[],
): Float32Array {
  const [c, h, w] = shape as [number, number, number];
  const out = new Float32Array(low.length);
  const dots = new Float64Array(c * w);
  let dotSum = 0;
  for (let ci = 0; ci < c; ci++) {
    for (let wi = 0; wi < w; wi++) {
      let nl = 0;
      let nh = 0;
      let d = 0;
      for (let hi = 0; hi < h; hi++) {
        const k = (ci * h + hi) * w + wi;
        nl += low[k]! * low[k]!;
        nh += high[k]! * high[k]!;
        d += low[k]! * high[k]!;
      }
      const dot = d / (Math.sqrt(nl) * Math.sqrt(nh));
      dots[ci * w + wi] = dot;
      dotSum += dot;
    }
  }
  if (dotSum / (c * w) > 0.9995) {
    for (let k = 0; k < out.length; k++) out[k] = low[k]! * val + high[k]! * (1 - val);
    return out;
  }
  for (let ci = 0; ci < c; ci++) {
    for (let wi = 0; wi < w; wi++) {
      const omega = Math.acos(dots[ci * w + wi]!);
      const so = Math.sin(omega);
      const a = Math.sin((1 - val) * omega) / so;
      const b = Math.sin(val * omega) / so;
      for (let hi = 0; hi < h; hi++) {
        const k = (ci * h + hi) * w + wi;
        out[k] = a * low[k]! + b * high[k]!;
      }
    }
  }
  return out;
}

export interface ImageRngOptions {
  /** Latent shape of one image: [C, H, W]. */
  shape: readonly [number, number, number];
  seeds: readonly number[];
  subseeds?: readonly number[];
  subseedStrength?: number;
  /** "Resize seed from height/width" in pixels (0 = off); the latent is 1/8 of it. */
  seedResizeFromH?: number;
  seedResizeFromW?: number;
  source?: RandomSource;
  /** "Eta noise seed delta": after the initial noise, generators restart at seed + ENSD. */
  etaNoiseSeedDelta?: number;
}

/**
 * A1111's ImageRNG. `next()` first returns the batch's initial noise, then each further call returns
 * one more draw from every image's generator (what ancestral/SDE-step noise and `randn_like` use).
 */
export class ImageRng {
  private generators: NormalGenerator[];
  private isFirst = true;
  readonly numel: number;

  constructor(private readonly opts: ImageRngOptions) {
    const [c, h, w] = opts.shape;
    if (![c, h, w].every((d) => Number.isSafeInteger(d) && d > 0) || c * h * w > 2 ** 28) {
      throw new UserError(`latent shape ${JSON.stringify(opts.shape)} is not a valid [C, H, W]`);
    }
    if (opts.seeds.length === 0) throw new UserError('at least one seed is needed');
    this.numel = c * h * w;
    this.generators = opts.seeds.map((s) => createGenerator(opts.source ?? 'GPU', s));
  }

  get batchSize(): number {
    return this.opts.seeds.length;
  }

  private fresh(seed: number, n: number): Float32Array {
    return createGenerator(this.opts.source ?? 'GPU', seed).randn(n);
  }

  private first(): Float32Array {
    const { shape, seeds, subseeds, subseedStrength = 0 } = this.opts;
    const resizeH = this.opts.seedResizeFromH ?? 0;
    const resizeW = this.opts.seedResizeFromW ?? 0;
    const resized = resizeH > 0 && resizeW > 0;
    const noiseShape: [number, number, number] = resized
      ? [shape[0], Math.floor(resizeH / 8), Math.floor(resizeW / 8)]
      : [shape[0], shape[1], shape[2]];
    const same = noiseShape[1] === shape[1] && noiseShape[2] === shape[2];
    if (noiseShape[1] <= 0 || noiseShape[2] <= 0) {
      throw new UserError(
        `seed resize ${resizeW}x${resizeH} is too small; use at least 8x8 or 0 to turn it off`,
      );
    }
    const noiseNumel = noiseShape[0] * noiseShape[1] * noiseShape[2];
    const out = new Float32Array(this.numel * seeds.length);
    seeds.forEach((seed, i) => {
      let subnoise: Float32Array | null = null;
      if (subseeds && subseedStrength !== 0) {
        subnoise = this.fresh(i < subseeds.length ? subseeds[i]! : 0, noiseNumel);
      }
      let noise = same ? this.generators[i]!.randn(this.numel) : this.fresh(seed, noiseNumel);
      if (subnoise) noise = slerp(subseedStrength, noise, subnoise, noiseShape);
      if (!same) noise = pasteCentered(this.generators[i]!.randn(this.numel), shape, noise, noiseShape);
      out.set(noise, i * this.numel);
    });
    const ensd = this.opts.etaNoiseSeedDelta ?? 0;
    if (ensd) {
      this.generators = seeds.map((s) => createGenerator(this.opts.source ?? 'GPU', s + ensd));
    }
    return out;
  }

  /** The next batch of noise: [B, C, H, W] flattened. */
  next(): Float32Array {
    if (this.isFirst) {
      this.isFirst = false;
      return this.first();
    }
    const out = new Float32Array(this.numel * this.generators.length);
    this.generators.forEach((g, i) => out.set(g.randn(this.numel), i * this.numel));
    return out;
  }

  /** Advance every generator as `next()` would, without the values (k-diffusion draws noise it then ignores). */
  skip(): void {
    if (this.isFirst) {
      this.next();
      return;
    }
    for (const g of this.generators) g.skip(this.numel);
  }
}

/** A1111's seed-resize paste: the smaller/larger noise is centred onto the target latent. */
function pasteCentered(
  x: Float32Array,
  shape: readonly [number, number, number],
  noise: Float32Array,
  noiseShape: readonly [number, number, number],
): Float32Array {
  const [c, H, W] = shape;
  const [, nh, nw] = noiseShape;
  // Python floor division, as A1111 writes it.
  const dx = Math.floor((W - nw) / 2);
  const dy = Math.floor((H - nh) / 2);
  const w = dx >= 0 ? nw : nw + 2 * dx;
  const h = dy >= 0 ? nh : nh + 2 * dy;
  const tx = dx < 0 ? 0 : dx;
  const ty = dy < 0 ? 0 : dy;
  const sx = Math.max(-dx, 0);
  const sy = Math.max(-dy, 0);
  for (let ci = 0; ci < c; ci++) {
    for (let yi = 0; yi < h; yi++) {
      for (let xi = 0; xi < w; xi++) {
        x[(ci * H + ty + yi) * W + tx + xi] = noise[(ci * nh + sy + yi) * nw + sx + xi]!;
      }
    }
  }
  return x;
}
