/** The first half of every k-diffusion sampler step: call the model at sigmas[i] and report the step. */
import type { SamplerContext } from '../types.js';

export interface ModelStep {
  sigma: number;
  next: number;
  denoised: Float32Array;
}

/** `denoised = model(x, sigmas[i])`, then the step callback, as k-diffusion's loops begin. */
export async function modelStep(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  i: number,
): Promise<ModelStep> {
  const sigma = sigmas[i]!;
  const next = sigmas[i + 1]!;
  const denoised = await ctx.model(x, sigma);
  ctx.callback?.({ i, total: sigmas.length - 1, x, denoised, sigma, sigmaHat: sigma });
  return { sigma, next, denoised };
}
