/**
 * Noise sources for the samplers: A1111's (every draw from the images' own generators, via ImageRng)
 * and a Brownian-motion sampler for the SDE samplers, seeded per image as A1111 seeds its trees.
 */
import { PhiloxGenerator, type NormalGenerator } from './rng.js';
import type { ImageRng } from './seeds.js';
import type { NoiseSource } from './types.js';

/** Ancestral noise and randn_like both continue the images' generators, as A1111's TorchHijack does. */
export function imageRngNoise(rng: ImageRng, brownian?: BrownianNoise): NoiseSource {
  return {
    sample: (sigma, sigmaNext) => (brownian ? brownian.sample(sigma, sigmaNext) : rng.next()),
    randnLike: () => rng.next(),
    skipRandnLike: () => rng.skip(),
  };
}

const BROWNIAN_STREAM_OFFSET = 2 ** 31;

/**
 * One Brownian path W(t) on [sigmaMin, sigmaMax] per image (W(sigmaMin) = 0), refined lazily by
 * Brownian bridges at each queried point; `sample(s, s')` is the normalised increment
 * (W(s') - W(s)) / sqrt|s' - s| with k-diffusion's sign convention. The same seed and the same
 * queries give the same noise, whatever the batch size (A1111's reason for per-seed trees).
 * Note: the values are not torchsde's — its BrownianTree draws from torch's generators in its own
 * order; this reproduces the semantics (independent Gaussian increments, bridge-consistent), not the bits.
 */
export class BrownianNoise {
  private readonly paths: { gen: NormalGenerator; ts: number[]; ws: Float32Array[] }[];

  constructor(
    private readonly numel: number,
    seeds: readonly number[],
    private readonly sigmaMin: number,
    private readonly sigmaMax: number,
  ) {
    if (!(sigmaMin < sigmaMax))
      throw new Error(`Brownian noise needs sigmaMin < sigmaMax (${sigmaMin}, ${sigmaMax})`);
    this.paths = seeds.map((seed) => {
      // The image's own generator made its initial latent from offsets 0, 1, ...; the path must be
      // independent of that noise, so it reads the seed's Philox stream far from those offsets.
      const gen = new PhiloxGenerator(seed);
      gen.offset = BROWNIAN_STREAM_OFFSET;
      const end = gen.randn(numel);
      const scale = Math.sqrt(sigmaMax - sigmaMin);
      for (let i = 0; i < numel; i++) end[i] = end[i]! * scale;
      return { gen, ts: [sigmaMin, sigmaMax], ws: [new Float32Array(numel), end] };
    });
  }

  private valueAt(path: (typeof this.paths)[number], t: number): Float32Array {
    const tc = Math.min(this.sigmaMax, Math.max(this.sigmaMin, t));
    const { ts, ws } = path;
    let hi = ts.findIndex((v) => v >= tc);
    if (ts[hi] === tc) return ws[hi]!;
    const lo = hi - 1;
    const [ta, tb] = [ts[lo]!, ts[hi]!];
    const [wa, wb] = [ws[lo]!, ws[hi]!];
    const z = path.gen.randn(this.numel);
    const f = (tc - ta) / (tb - ta);
    const sd = Math.sqrt(((tc - ta) * (tb - tc)) / (tb - ta));
    const w = new Float32Array(this.numel);
    for (let i = 0; i < this.numel; i++) w[i] = wa[i]! + f * (wb[i]! - wa[i]!) + sd * z[i]!;
    ts.splice(hi, 0, tc);
    ws.splice(hi, 0, w);
    hi++;
    return w;
  }

  sample(sigma: number, sigmaNext: number): Float32Array {
    const out = new Float32Array(this.numel * this.paths.length);
    const [t0, t1] = sigma < sigmaNext ? [sigma, sigmaNext] : [sigmaNext, sigma];
    const sign = sigma < sigmaNext ? 1 : -1;
    const norm = sign / Math.sqrt(Math.abs(t1 - t0));
    this.paths.forEach((p, b) => {
      const w0 = this.valueAt(p, t0);
      const w1 = this.valueAt(p, t1);
      for (let i = 0; i < this.numel; i++) out[b * this.numel + i] = (w1[i]! - w0[i]!) * norm;
    });
    return out;
  }
}
