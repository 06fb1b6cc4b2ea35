/**
 * A1111's timestep-space samplers DDIM, DDIM CFG++ and PLMS (`sd_samplers_timesteps_impl`), driven by an eps
 * predictor at integer model timesteps. `timesteps` ascend (A1111's get_timesteps); sampling walks
 * them from the end.
 */
import { lin2, lin3 } from '../ops.js';
import type { TimestepSamplerContext } from '../types.js';

/** alphas at the timesteps, and "previous" alphas: the timestep before, alphas_cumprod[0] for the first. */
function alphaTables(ac: Float32Array, timesteps: readonly number[]): { a: number[]; aPrev: number[] } {
  for (const t of timesteps) {
    if (!Number.isInteger(t) || t < 0 || t >= ac.length) {
      throw new Error(`timestep ${t} is outside the model's 0..${ac.length - 1}`);
    }
  }
  const a = timesteps.map((t) => ac[t]!);
  const aPrev = timesteps.map((_, k) => ac[k === 0 ? 0 : timesteps[k - 1]!]!);
  return { a, aPrev };
}

export async function sampleDdim(
  ctx: TimestepSamplerContext,
  x: Float32Array,
  timesteps: readonly number[],
  o: { eta?: number } = {},
): Promise<Float32Array> {
  return ddimLoop(ctx, x, timesteps, o.eta ?? 0, (et) => et);
}

/**
 * A1111's "DDIM CFG++" (`ddim_cfgpp`, after the CFG++ paper): DDIM whose x0 prediction uses the
 * guided eps but whose direction term points along the *unconditional* eps of the same model call
 * (`ctx.lastUncond`). The guidance scale itself is divided by 12.5 in the CFG denoiser
 * (SamplerInfo.cfgScaleMultiplier), so CFG 1 … 12.5 maps to A1111's 0.08 … 1.
 */
export async function sampleDdimCfgpp(
  ctx: TimestepSamplerContext,
  x: Float32Array,
  timesteps: readonly number[],
  o: { eta?: number } = {},
): Promise<Float32Array> {
  const lastUncond = ctx.lastUncond;
  if (!lastUncond) throw new Error('DDIM CFG++ needs the unconditional prediction of each model call');
  return ddimLoop(ctx, x, timesteps, o.eta ?? 0, () => {
    const u = lastUncond();
    if (!u) throw new Error('DDIM CFG++: the model call gave no unconditional prediction');
    return u;
  });
}

/** DDIM's step loop; `direction(et)` is the eps the step's direction term follows. */
async function ddimLoop(
  ctx: TimestepSamplerContext,
  x: Float32Array,
  timesteps: readonly number[],
  eta: number,
  direction: (et: Float32Array) => Float32Array,
): Promise<Float32Array> {
  const { a, aPrev } = alphaTables(ctx.alphasCumprod, timesteps);
  const total = timesteps.length - 1;
  for (let i = 0; i < total; i++) {
    const index = timesteps.length - 1 - i;
    const et = await ctx.model(x, timesteps[index]!);
    const dir = direction(et);
    const at = a[index]!;
    const ap = aPrev[index]!;
    const sigmaT = eta * Math.sqrt(((1 - ap) / (1 - at)) * (1 - at / ap));
    const sqrtOneMinusAt = Math.fround(Math.sqrt(Math.fround(1 - at)));
    const predX0 = lin2(1 / Math.sqrt(at), x, -sqrtOneMinusAt / Math.sqrt(at), et);
    // A1111 draws the noise even when eta = 0 (it is then multiplied by 0).
    const noise = ctx.noise.randnLike();
    x = lin3(Math.sqrt(ap), predX0, Math.sqrt(1 - ap - sigmaT ** 2), dir, sigmaT, noise);
    ctx.callback?.({ i, total, x, denoised: predX0, sigma: 0, sigmaHat: 0 });
  }
  return x;
}

export async function samplePlms(
  ctx: TimestepSamplerContext,
  x: Float32Array,
  timesteps: readonly number[],
): Promise<Float32Array> {
  const { a, aPrev } = alphaTables(ctx.alphasCumprod, timesteps);
  const total = timesteps.length - 1;
  const oldEps: Float32Array[] = [];
  const step = (xIn: Float32Array, et: Float32Array, index: number): [Float32Array, Float32Array] => {
    const at = a[index]!;
    const ap = aPrev[index]!;
    const sqrtOneMinusAt = Math.fround(Math.sqrt(Math.fround(1 - at)));
    const predX0 = lin2(1 / Math.sqrt(at), xIn, -sqrtOneMinusAt / Math.sqrt(at), et);
    return [lin2(Math.sqrt(ap), predX0, Math.sqrt(1 - ap), et), predX0];
  };
  for (let i = 0; i < total; i++) {
    const index = timesteps.length - 1 - i;
    const et = await ctx.model(x, timesteps[index]!);
    let etPrime: Float32Array;
    if (oldEps.length === 0) {
      // Pseudo improved Euler (2nd order) to start the multistep history.
      const [xPrev] = step(x, et, index);
      const etNext = await ctx.model(xPrev, timesteps[Math.max(index - 1, 0)]!);
      etPrime = lin2(0.5, et, 0.5, etNext);
    } else if (oldEps.length === 1) {
      etPrime = lin2(3 / 2, et, -1 / 2, oldEps[0]!);
    } else if (oldEps.length === 2) {
      etPrime = lin3(23 / 12, et, -16 / 12, oldEps[1]!, 5 / 12, oldEps[0]!);
    } else {
      const out = new Float32Array(x.length);
      const [e3, e2, e1] = oldEps as [Float32Array, Float32Array, Float32Array];
      for (let k = 0; k < out.length; k++) {
        out[k] = (55 * et[k]! - 59 * e1[k]! + 37 * e2[k]! - 9 * e3[k]!) / 24;
      }
      etPrime = out;
    }
    const [xPrev, predX0] = step(x, etPrime, index);
    oldEps.push(et);
    if (oldEps.length >= 4) oldEps.shift();
    x = xPrev;
    ctx.callback?.({ i, total, x, denoised: predX0, sigma: 0, sigmaHat: 0 });
  }
  return x;
}
