/**
 * The Karras et al. (2022) family from k-diffusion: Euler, Heun and DPM2 (with optional "churn"),
 * and their ancestral variants Euler a and DPM2 a.
 */
import { ancestralStep, lin2, toD } from '../ops.js';
import type { SamplerContext } from '../types.js';

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

/** Algorithm 2's churn: raise sigma to sigma_hat by adding fresh noise (drawn every step, as k-diffusion does). */
function churn(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  i: number,
  o: ChurnOptions,
): [Float32Array, number] {
  const { sChurn = 0, sTmin = 0, sTmax = Infinity, sNoise = 1 } = o;
  const sigma = sigmas[i]!;
  const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (sigmas.length - 1), Math.SQRT2 - 1) : 0;
  const sigmaHat = sigma * (gamma + 1);
  if (gamma > 0) {
    const eps = ctx.noise.randnLike();
    return [lin2(1, x, sNoise * Math.sqrt(sigmaHat ** 2 - sigma ** 2), eps), sigmaHat];
  }
  ctx.noise.skipRandnLike();
  return [x, sigmaHat];
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
    [x, sigmaHat] = churn(ctx, x, sigmas, i, o);
    const denoised = await ctx.model(x, sigmaHat);
    const d = toD(x, sigmaHat, denoised);
    ctx.callback?.({ i, total, x, denoised, sigma: sigmas[i]!, sigmaHat });
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
    [x, sigmaHat] = churn(ctx, x, sigmas, i, o);
    const denoised = await ctx.model(x, sigmaHat);
    const d = toD(x, sigmaHat, denoised);
    ctx.callback?.({ i, total, x, denoised, sigma: sigmas[i]!, sigmaHat });
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
    [x, sigmaHat] = churn(ctx, x, sigmas, i, o);
    const denoised = await ctx.model(x, sigmaHat);
    const d = toD(x, sigmaHat, denoised);
    ctx.callback?.({ i, total, x, denoised, sigma: sigmas[i]!, sigmaHat });
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
    const sigma = sigmas[i]!;
    const next = sigmas[i + 1]!;
    const denoised = await ctx.model(x, sigma);
    const [down, up] = ancestralStep(sigma, next, eta);
    ctx.callback?.({ i, total, x, denoised, sigma, sigmaHat: sigma });
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
    const sigma = sigmas[i]!;
    const next = sigmas[i + 1]!;
    const denoised = await ctx.model(x, sigma);
    const [down, up] = ancestralStep(sigma, next, eta);
    ctx.callback?.({ i, total, x, denoised, sigma, sigmaHat: sigma });
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
