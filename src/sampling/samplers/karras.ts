/**
 * The Karras et al. (2022) family from k-diffusion: Euler, Heun and DPM2 (with optional "churn"),
 * and their ancestral variants Euler a and DPM2 a.
 */
import { ancestralStep, lin2, toD } from '../ops.js';
import type { SamplerContext } from '../types.js';
import { modelStep } from './step.js';

export interface ChurnOptions {
  sChurn?: number;
  sTmin?: number;
  sTmax?: number;
  sNoise?: number;
}

export interface AncestralOptions {
  eta?: number;
  sNoise?: number;
}

/**
 * Algorithm 2's churn — raise sigma to sigma_hat by adding fresh noise (drawn every step, as
 * k-diffusion does) — then the model call at sigma_hat and the step callback.
 * Returns the churned x, sigma_hat and the derivative d.
 */
async function churnedModelStep(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  i: number,
  o: ChurnOptions,
): Promise<[Float32Array, number, Float32Array]> {
  const { sChurn = 0, sTmin = 0, sTmax = Infinity, sNoise = 1 } = o;
  const sigma = sigmas[i]!;
  const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (sigmas.length - 1), Math.SQRT2 - 1) : 0;
  const sigmaHat = sigma * (gamma + 1);
  if (gamma > 0) {
    const eps = ctx.noise.randnLike();
    x = lin2(1, x, sNoise * Math.sqrt(sigmaHat ** 2 - sigma ** 2), eps);
  } else {
    ctx.noise.skipRandnLike();
  }
  const denoised = await ctx.model(x, sigmaHat);
  ctx.callback?.({ i, total: sigmas.length - 1, x, denoised, sigma, sigmaHat });
  return [x, sigmaHat, toD(x, sigmaHat, denoised)];
}

export async function sampleEuler(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: ChurnOptions = {},
): Promise<Float32Array> {
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    let sigmaHat: number;
    let d: Float32Array;
    [x, sigmaHat, d] = await churnedModelStep(ctx, x, sigmas, i, o);
    x = lin2(1, x, sigmas[i + 1]! - sigmaHat, d);
  }
  return x;
}

export async function sampleHeun(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: ChurnOptions = {},
): Promise<Float32Array> {
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    let sigmaHat: number;
    let d: Float32Array;
    [x, sigmaHat, d] = await churnedModelStep(ctx, x, sigmas, i, o);
    const next = sigmas[i + 1]!;
    const dt = next - sigmaHat;
    if (next === 0) {
      x = lin2(1, x, dt, d);
    } else {
      const x2 = lin2(1, x, dt, d);
      const d2 = toD(x2, next, await ctx.model(x2, next));
      const out = new Float32Array(x.length);
      for (let k = 0; k < out.length; k++) out[k] = x[k]! + ((d[k]! + d2[k]!) / 2) * dt;
      x = out;
    }
  }
  return x;
}

export async function sampleDpm2(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: ChurnOptions = {},
): Promise<Float32Array> {
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    let sigmaHat: number;
    let d: Float32Array;
    [x, sigmaHat, d] = await churnedModelStep(ctx, x, sigmas, i, o);
    const next = sigmas[i + 1]!;
    if (next === 0) {
      x = lin2(1, x, next - sigmaHat, d);
    } else {
      // DPM-Solver-2: midpoint in log sigma.
      const sigmaMid = Math.exp((Math.log(sigmaHat) + Math.log(next)) / 2);
      const x2 = lin2(1, x, sigmaMid - sigmaHat, d);
      const d2 = toD(x2, sigmaMid, await ctx.model(x2, sigmaMid));
      x = lin2(1, x, next - sigmaHat, d2);
    }
  }
  return x;
}

export async function sampleEulerAncestral(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: AncestralOptions = {},
): Promise<Float32Array> {
  const { eta = 1, sNoise = 1 } = o;
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    const [down, up] = ancestralStep(sigma, next, eta);
    x = lin2(1, x, down - sigma, toD(x, sigma, denoised));
    if (next > 0) x = lin2(1, x, sNoise * up, ctx.noise.sample(sigma, next));
  }
  return x;
}

export async function sampleDpm2Ancestral(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: AncestralOptions = {},
): Promise<Float32Array> {
  const { eta = 1, sNoise = 1 } = o;
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    const [down, up] = ancestralStep(sigma, next, eta);
    const d = toD(x, sigma, denoised);
    if (down === 0) {
      x = lin2(1, x, down - sigma, d);
    } else {
      const sigmaMid = Math.exp((Math.log(sigma) + Math.log(down)) / 2);
      const x2 = lin2(1, x, sigmaMid - sigma, d);
      const d2 = toD(x2, sigmaMid, await ctx.model(x2, sigmaMid));
      x = lin2(1, x, down - sigma, d2);
      x = lin2(1, x, sNoise * up, ctx.noise.sample(sigma, next));
    }
  }
  return x;
}
