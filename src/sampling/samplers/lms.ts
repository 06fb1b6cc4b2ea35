/** k-diffusion's linear multistep (LMS) sampler. */
import { linN, toD } from '../ops.js';
import type { SamplerContext } from '../types.js';

// 4-point Gauss-Legendre: exact for the degree <= 3 Lagrange products LMS integrates (scipy's quad is
// exact for them too).
const GL_NODES = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
const GL_WEIGHTS = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];

/** ∫_{t_i}^{t_{i+1}} of the Lagrange basis polynomial for node i - j over nodes t_i .. t_{i-order+1}. */
export function linearMultistepCoeff(order: number, t: readonly number[], i: number, j: number): number {
  if (order - 1 > i) throw new Error(`LMS order ${order} is too high for step ${i}`);
  const fn = (tau: number): number => {
    let prod = 1;
    for (let k = 0; k < order; k++) {
      if (j === k) continue;
      prod *= (tau - t[i - k]!) / (t[i - j]! - t[i - k]!);
    }
    return prod;
  };
  const a = t[i]!;
  const b = t[i + 1]!;
  const half = (b - a) / 2;
  const mid = (a + b) / 2;
  let sum = 0;
  for (let q = 0; q < 4; q++) sum += GL_WEIGHTS[q]! * fn(mid + half * GL_NODES[q]!);
  return sum * half;
}

export async function sampleLms(
  ctx: SamplerContext,
  x: Float32Array,
  sigmas: readonly number[],
  o: { order?: number } = {},
): Promise<Float32Array> {
  const order = o.order ?? 4;
  const total = sigmas.length - 1;
  const ds: Float32Array[] = [];
  for (let i = 0; i < total; i++) {
    const denoised = await ctx.model(x, sigmas[i]!);
    ds.push(toD(x, sigmas[i]!, denoised));
    if (ds.length > order) ds.shift();
    ctx.callback?.({ i, total, x, denoised, sigma: sigmas[i]!, sigmaHat: sigmas[i]! });
    const cur = Math.min(i + 1, order);
    const coeffs = [1];
    const arrays = [x];
    for (let j = 0; j < cur; j++) {
      coeffs.push(linearMultistepCoeff(cur, sigmas, i, j));
      arrays.push(ds[ds.length - 1 - j]!);
    }
    x = linN(coeffs, arrays);
  }
  return x;
}
