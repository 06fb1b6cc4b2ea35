/** A1111's LCM sampler: jump to the model's x0 each step and re-noise to the next sigma. */
import { lin2 } from '../ops.js';
import type { SamplerContext } from '../types.js';
import { modelStep } from './step.js';

export async function sampleLcm(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
): Promise<Float32Array> {
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    x = denoised;
    if (next > 0) x = lin2(1, x, next, ctx.noise.sample(sigma, next));
  }
  return x;
}
