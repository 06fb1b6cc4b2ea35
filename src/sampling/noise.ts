/**
 * Noise sources for the samplers: A1111's (every draw from the images' own generators, via ImageRng)
 * and a Brownian-motion sampler for the SDE samplers, seeded per image as A1111 seeds its trees.
 */
import { TorchsdeBrownianTree } from './brownian-tree.js';
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

/**
 * k-diffusion's `BrownianTreeNoiseSampler` as A1111 builds it (`create_noise_sampler`): one
 * torchsde BrownianTree per image seed over [smallest positive sigma, largest sigma], so an image's
 * SDE noise does not depend on the batch. `sample(s, s')` is (W(s') - W(s)) / sqrt|s' - s| in
 * float32, the times being float32 sigmas as A1111's tensors hold them.
 */
export class BrownianNoise {
  private readonly trees: TorchsdeBrownianTree[];
  private readonly sign: number;

  constructor(
    private readonly numel: number,
    seeds: readonly number[],
    sigmaMin: number,
    sigmaMax: number,
  ) {
    // Equal ends happen with one step ([sigma_max, 0]): A1111 builds that tree too and never queries it.
    if (!(sigmaMin <= sigmaMax))
      throw new Error(`Brownian noise needs sigmaMin <= sigmaMax (${sigmaMin}, ${sigmaMax})`);
    const [a, b] = [Math.fround(sigmaMin), Math.fround(sigmaMax)];
    const [t0, t1, sign] = a < b ? [a, b, 1] : [b, a, -1]; // BatchedBrownianTree.sort
    this.sign = sign;
    this.trees = seeds.map((seed) => new TorchsdeBrownianTree(numel, seed, t0, t1));
  }

  sample(sigma: number, sigmaNext: number): Float32Array {
    const [a, b] = [Math.fround(sigma), Math.fround(sigmaNext)];
    const [t0, t1, sign] = a < b ? [a, b, 1] : [b, a, -1];
    const s = this.sign * sign;
    const d = Math.fround(Math.sqrt(Math.abs(Math.fround(b - a))));
    const out = new Float32Array(this.numel * this.trees.length);
    this.trees.forEach((tree, k) => {
      const w = tree.increment(t0, t1);
      for (let i = 0; i < this.numel; i++) out[k * this.numel + i] = Math.fround(w[i]! * s) / d;
    });
    return out;
  }
}
