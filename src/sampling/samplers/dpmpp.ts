/**
 * DPM-Solver++ samplers from k-diffusion: 2S ancestral, SDE, 2M, 2M SDE (midpoint / heun) and 3M SDE.
 * They work in t = -log(sigma); sigma(t) = exp(-t).
 */
import { ancestralStep, lin2, lin3, toD } from '../ops.js';
import type { SamplerContext } from '../types.js';
import { modelStep } from './step.js';

const tOf = (sigma: number): number => -Math.log(sigma);
const sigmaOf = (t: number): number => Math.exp(-t);

export interface SdeOptions {
  eta?: number;
  sNoise?: number;
}

export async function sampleDpmpp2sAncestral(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: SdeOptions = {},
): Promise<Float32Array> {
  const { eta = 1, sNoise = 1 } = o;
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    const [down, up] = ancestralStep(sigma, next, eta);
    if (down === 0) {
      x = lin2(1, x, down - sigma, toD(x, sigma, denoised));
    } else {
      const t = tOf(sigma);
      const tNext = tOf(down);
      const h = tNext - t;
      const s = t + h / 2;
      const x2 = lin2(sigmaOf(s) / sigmaOf(t), x, -Math.expm1(-h / 2), denoised);
      const denoised2 = await ctx.model(x2, sigmaOf(s));
      x = lin2(sigmaOf(tNext) / sigmaOf(t), x, -Math.expm1(-h), denoised2);
    }
    if (next > 0) x = lin2(1, x, sNoise * up, ctx.noise.sample(sigma, next));
  }
  return x;
}

export async function sampleDpmppSde(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: SdeOptions & { r?: number } = {},
): Promise<Float32Array> {
  const { eta = 1, sNoise = 1, r = 1 / 2 } = o;
  const total = sigmas.length - 1;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    if (next === 0) {
      x = lin2(1, x, next - sigma, toD(x, sigma, denoised));
      continue;
    }
    const t = tOf(sigma);
    const tNext = tOf(next);
    const h = tNext - t;
    const s = t + h * r;
    const fac = 1 / (2 * r);
    // Step 1: to the intermediate point s, with its share of fresh noise.
    const [sd1, su1] = ancestralStep(sigmaOf(t), sigmaOf(s), eta);
    const s_ = tOf(sd1);
    let x2 = lin2(sigmaOf(s_) / sigmaOf(t), x, -Math.expm1(t - s_), denoised);
    x2 = lin2(1, x2, sNoise * su1, ctx.noise.sample(sigmaOf(t), sigmaOf(s)));
    const denoised2 = await ctx.model(x2, sigmaOf(s));
    // Step 2: the full step with the blended denoised estimate.
    const [sd2, su2] = ancestralStep(sigmaOf(t), sigmaOf(tNext), eta);
    const tNext_ = tOf(sd2);
    const denoisedD = lin2(1 - fac, denoised, fac, denoised2);
    x = lin2(sigmaOf(tNext_) / sigmaOf(t), x, -Math.expm1(t - tNext_), denoisedD);
    x = lin2(1, x, sNoise * su2, ctx.noise.sample(sigmaOf(t), sigmaOf(tNext)));
  }
  return x;
}

export async function sampleDpmpp2m(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
): Promise<Float32Array> {
  const total = sigmas.length - 1;
  let old: Float32Array | null = null;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    const t = tOf(sigma);
    const tNext = tOf(next);
    const h = tNext - t;
    if (old === null || next === 0) {
      x = lin2(sigmaOf(tNext) / sigmaOf(t), x, -Math.expm1(-h), denoised);
    } else {
      const hLast = t - tOf(sigmas[i - 1]!);
      const r = hLast / h;
      const denoisedD = lin2(1 + 1 / (2 * r), denoised, -1 / (2 * r), old);
      x = lin2(sigmaOf(tNext) / sigmaOf(t), x, -Math.expm1(-h), denoisedD);
    }
    old = denoised;
  }
  return x;
}

export async function sampleDpmpp2mSde(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: SdeOptions & { solverType?: 'midpoint' | 'heun' } = {},
): Promise<Float32Array> {
  const { eta = 1, sNoise = 1, solverType = 'midpoint' } = o;
  if (solverType !== 'midpoint' && solverType !== 'heun') {
    throw new Error(`solver type must be 'heun' or 'midpoint', got ${String(solverType)}`);
  }
  const total = sigmas.length - 1;
  let old: Float32Array | null = null;
  let hLast = 0;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    let h = hLast;
    if (next === 0) {
      x = denoised;
    } else {
      const t = tOf(sigma);
      const s = tOf(next);
      h = s - t;
      const etaH = eta * h;
      const phi = -Math.expm1(-h - etaH);
      x = lin2((next / sigma) * Math.exp(-etaH), x, phi, denoised);
      if (old !== null) {
        const r = hLast / h;
        const k = solverType === 'heun' ? (phi / (-h - etaH) + 1) * (1 / r) : 0.5 * phi * (1 / r);
        x = lin3(1, x, k, denoised, -k, old);
      }
      if (eta)
        x = lin2(1, x, next * Math.sqrt(-Math.expm1(-2 * etaH)) * sNoise, ctx.noise.sample(sigma, next));
    }
    old = denoised;
    hLast = h;
  }
  return x;
}

export async function sampleDpmpp3mSde(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: SdeOptions = {},
): Promise<Float32Array> {
  const { eta = 1, sNoise = 1 } = o;
  const total = sigmas.length - 1;
  let d1: Float32Array | null = null;
  let d2: Float32Array | null = null;
  let h1: number | null = null;
  let h2: number | null = null;
  for (let i = 0; i < total; i++) {
    const { sigma, next, denoised } = await modelStep(ctx, x, sigmas, i);
    let h: number | null = h1;
    if (next === 0) {
      x = denoised;
    } else {
      const t = tOf(sigma);
      const s = tOf(next);
      h = s - t;
      const hEta = h * (eta + 1);
      x = lin2(Math.exp(-hEta), x, -Math.expm1(-hEta), denoised);
      const phi2 = Math.expm1(-hEta) / hEta + 1;
      if (h2 !== null && d1 && d2 && h1 !== null) {
        const r0 = h1 / h;
        const r1 = h2 / h;
        // d1_0 = (den - den1)/r0, d1_1 = (den1 - den2)/r1; x += phi2*d1 - phi3*d2 expanded per element.
        const phi3 = phi2 / hEta - 0.5;
        const out = new Float32Array(x.length);
        for (let k = 0; k < out.length; k++) {
          const a = (denoised[k]! - d1[k]!) / r0;
          const b = (d1[k]! - d2[k]!) / r1;
          const dd1 = a + ((a - b) * r0) / (r0 + r1);
          const dd2 = (a - b) / (r0 + r1);
          out[k] = x[k]! + phi2 * dd1 - phi3 * dd2;
        }
        x = out;
      } else if (h1 !== null && d1) {
        const r = h1 / h;
        x = lin3(1, x, phi2 / r, denoised, -phi2 / r, d1);
      }
      if (eta) {
        x = lin2(1, x, next * Math.sqrt(-Math.expm1(-2 * h * eta)) * sNoise, ctx.noise.sample(sigma, next));
      }
    }
    d2 = d1;
    d1 = denoised;
    h2 = h1;
    h1 = h;
  }
  return x;
}
