/**
 * Every sampler, driven through planSampling/runSampler with A1111's noise, on a Gaussian data
 * distribution whose denoiser is known in closed form: D(x, σ) = μ + s²/(s²+σ²)·(x − μ) per element.
 * - With no stochasticity (eta = 0 where a sampler has eta), the probability-flow ODE has the exact
 *   solution x(σe) = μ + √(s²+σe²)/√(s²+σs²)·(x(σs) − μ): the sample itself must approach it.
 * - Stochastic runs must produce the target distribution: z = (x − μ)/s has mean ≈ 0 and std ≈ 1.
 * - LCM (no ODE) follows an exact linear-Gaussian recursion, so its mean and variance are known.
 * 30 and 100 steps: the larger count must be at least as accurate, so a wrong coefficient cannot hide.
 */
import { describe, expect, it } from 'vitest';
import {
  planSampling,
  runSampler,
  SAMPLERS,
  startLatent,
  type SamplerInfo,
  type SamplingPlan,
} from '../../src/sampling/index.js';
import { BrownianNoise, imageRngNoise } from '../../src/sampling/noise.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../../src/sampling/schedules.js';
import { ImageRng } from '../../src/sampling/seeds.js';

const ac = sdAlphasCumprod();
const schedule = new DiscreteSchedule(ac);
/** Distribution checks need many elements; the per-element ODE comparison does not. */
const STAT_SHAPE: [number, number, number] = [4, 32, 32];
const ODE_SHAPE: [number, number, number] = [4, 8, 8];
const SEEDS = [11, 12];
const MAX_N = STAT_SHAPE[0] * STAT_SHAPE[1] * STAT_SHAPE[2] * SEEDS.length;
const mu = Float64Array.from({ length: MAX_N }, (_, i) => 0.8 * Math.sin(i * 0.37));
const sd = Float64Array.from({ length: MAX_N }, (_, i) => 0.5 + 0.4 * Math.cos(i * 0.11) ** 2);

function denoise(x: Float32Array, sigma: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++)
    out[i] = mu[i]! + (sd[i]! ** 2 / (sd[i]! ** 2 + sigma * sigma)) * (x[i]! - mu[i]!);
  return out;
}
/** ᾱ at a fractional timestep, log-linear between table entries (the VP schedule UniPC assumes). */
function alphaAt(t: number): number {
  const lo = Math.floor(t);
  const w = t - lo;
  return Math.exp((1 - w) * Math.log(ac[lo]!) + w * Math.log(ac[Math.ceil(t)]!));
}
/** The same Gaussian seen by an eps predictor on VP latents x = √ᾱ·x_k. */
function epsModel(x: Float32Array, t: number): Float32Array {
  const a = alphaAt(t);
  const sigma = Math.sqrt((1 - a) / a);
  const xk = x.map((v) => v / Math.sqrt(a));
  const x0 = denoise(xk, sigma);
  return xk.map((v, i) => (v - x0[i]!) / sigma);
}

interface Outcome {
  /** Output and start in k-diffusion space, and the sigmas they sit at. */
  x: Float32Array;
  start: Float32Array;
  sigmaStart: number;
  sigmaEnd: number;
  plan: SamplingPlan;
}

async function sample(s: SamplerInfo, steps: number, eta?: number, shape = STAT_SHAPE): Promise<Outcome> {
  const per = shape[0] * shape[1] * shape[2];
  const plan = planSampling({ sampler: s.label, steps, schedule });
  const rng = new ImageRng({ shape, seeds: SEEDS });
  const start = startLatent(plan, rng.next());
  const positive = plan.sigmas.filter((v) => v > 0);
  const brownian = s.brownianNoise
    ? new BrownianNoise(per, SEEDS, Math.min(...positive), Math.max(...positive))
    : undefined;
  let lastEps: Float32Array | undefined;
  const res = await runSampler(
    plan,
    {
      model: async (x, sigma) => denoise(x, sigma),
      epsModel: async (x, t) => (lastEps = await epsModel(x, t)),
      // Unguided, the model's eps is also its unconditional one (DDIM CFG++ reads it).
      lastUncond: () => lastEps,
      alphasCumprod: ac,
      noise: imageRngNoise(rng, brownian),
    },
    start,
    eta === undefined ? {} : { eta },
  );
  expect(res.stopped).toBeUndefined();
  if (s.kind !== 'timesteps') {
    // DPM fast / adaptive integrate from sigma_max down to sigma_min, not to 0.
    const sigmaEnd =
      s.label.startsWith('DPM fast') || s.label.startsWith('DPM adaptive')
        ? plan.sigmaMin
        : plan.sigmas[plan.sigmas.length - 1]!;
    return { x: res.x, start, sigmaStart: plan.sigmas[0]!, sigmaEnd, plan };
  }
  // Timestep samplers start at the last timestep (UniPC: t = 999) and stop at timesteps[0] (UniPC: 0).
  const aStart = s.label === 'UniPC' ? ac[ac.length - 1]! : ac[plan.timesteps[plan.timesteps.length - 1]!]!;
  const aEnd = s.label === 'UniPC' ? ac[0]! : ac[plan.timesteps[0]!]!;
  return {
    x: res.x.map((v) => v / Math.sqrt(aEnd)),
    start: start.map((v) => v / Math.sqrt(aStart)),
    sigmaStart: Math.sqrt((1 - aStart) / aStart),
    sigmaEnd: Math.sqrt((1 - aEnd) / aEnd),
    plan,
  };
}

/**
 * RMS distance (in units of s) from the exact probability-flow solution. Samplers that end with
 * k-diffusion's final jump from sigma_min to 0 (x = denoised) get that jump applied to the exact
 * solution at sigma_min, so the comparison measures the discretisation of the steps before it.
 */
function odeError(o: Outcome, finalJumpToZero: boolean): number {
  const sig = o.plan.sigmas;
  const sigmaLast = finalJumpToZero ? sig[sig.length - 2]! : o.sigmaEnd;
  const n = o.x.length;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const s2 = sd[i]! ** 2;
    let exact =
      mu[i]! + (Math.sqrt(s2 + sigmaLast ** 2) / Math.sqrt(s2 + o.sigmaStart ** 2)) * (o.start[i]! - mu[i]!);
    if (finalJumpToZero) exact = mu[i]! + (s2 / (s2 + sigmaLast ** 2)) * (exact - mu[i]!);
    sum += ((o.x[i]! - exact) / sd[i]!) ** 2;
  }
  return Math.sqrt(sum / n);
}

/** Mean and std of (x − mean_i) / std_i over all elements. */
function zStats(
  x: Float32Array,
  mean: ArrayLike<number>,
  std: ArrayLike<number>,
): { mean: number; std: number } {
  const n = x.length;
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const z = (x[i]! - mean[i]!) / std[i]!;
    s1 += z;
    s2 += z * z;
  }
  const m = s1 / n;
  return { mean: m, std: Math.sqrt(s2 / n - m * m) };
}

/** Samplers whose only randomness is eta-controlled (or none). */
const hasEta = (s: SamplerInfo): boolean => s.params.includes('eta');
const deterministic = (s: SamplerInfo): boolean =>
  !s.params.includes('eta') && s.label !== 'Restart' && s.kind !== 'lcm';

const FLOAT32_FLOOR = 2e-4;
/**
 * Observed order of convergence (30 → 100 steps) each sampler must reach, with some margin: first-order
 * Euler/DDIM, second-order Heun/DPM2/DPM-Solver++ family, LMS above that; PLMS and UniPC lose order to
 * the kinks of the piecewise-linear discrete VP schedule they integrate over.
 */
const MIN_ORDER: Record<string, number> = {
  Euler: 0.8,
  'Euler a': 0.8,
  DDIM: 0.8,
  'DDIM CFG++': 0.8,
  Heun: 1.7,
  DPM2: 1.7,
  'DPM2 a': 1.7,
  'DPM++ 2M': 1.7,
  'DPM++ SDE': 1.7,
  'DPM++ 2M SDE': 1.7,
  'DPM++ 2M SDE Heun': 1.7,
  'DPM++ 2S a': 1.7,
  'DPM++ 3M SDE': 1.7,
  LMS: 2.3,
  PLMS: 1.2,
  UniPC: 1.0,
  'DPM fast': 2,
};

describe('samplers converge on a Gaussian target', () => {
  for (const s of SAMPLERS.filter((x) => x.kind !== 'lcm' && (deterministic(x) || hasEta(x)))) {
    it(`${s.label}: ${hasEta(s) ? 'with eta = 0 ' : ''}follows the exact probability-flow ODE at its order`, async () => {
      const eta = hasEta(s) ? 0 : undefined;
      const jump = s.kind === 'k-diffusion' && !['LMS', 'DPM fast', 'DPM adaptive'].includes(s.label);
      const e30 = odeError(await sample(s, 30, eta, ODE_SHAPE), jump);
      const e100 = odeError(await sample(s, 100, eta, ODE_SHAPE), jump);
      if (s.label === 'DPM adaptive') {
        // It controls its own error (rtol 0.05) and ignores the step count.
        expect(e100).toBeLessThan(0.05);
        return;
      }
      expect(e100).toBeLessThan(0.03);
      const minOrder = MIN_ORDER[s.label];
      expect(minOrder, `no expected convergence order for ${s.label}`).toBeDefined();
      const order = Math.log(e30 / e100) / Math.log(100 / 30);
      // Below ~2e-4 the float32 latents, not the method, set the error.
      if (e100 > FLOAT32_FLOOR) expect(order, `errors ${e30} -> ${e100}`).toBeGreaterThanOrEqual(minOrder!);
    });
  }

  for (const s of SAMPLERS.filter((x) => !deterministic(x) && x.kind !== 'lcm')) {
    it(`${s.label}: stochastic sampling reaches the target distribution`, async () => {
      const r30 = zStats((await sample(s, 30)).x, mu, sd);
      const r100 = zStats((await sample(s, 100)).x, mu, sd);
      expect(Math.abs(r100.mean)).toBeLessThan(0.03);
      expect(Math.abs(r100.std - 1)).toBeLessThan(0.06);
      expect(Math.abs(r100.std - 1)).toBeLessThanOrEqual(Math.abs(r30.std - 1) + 0.015);
      expect(Math.abs(r30.std - 1)).toBeLessThan(0.15);
    });
  }

  for (const s of SAMPLERS.filter((x) => x.kind === 'lcm')) {
    it(`${s.label}: matches the exact mean and variance of its Gaussian recursion`, async () => {
      for (const steps of [30, 100]) {
        const o = await sample(s, steps);
        // x_{i+1} = μ + k_i (x_i − μ) + σ_{i+1} n, k_i = s²/(s²+σ_i²): track mean and variance per element.
        const n = o.x.length;
        const mean = new Float64Array(n);
        const variance = new Float64Array(n);
        const sig = o.plan.sigmas;
        for (let e = 0; e < n; e++) {
          let m = o.start[e]!;
          let v = 0;
          for (let i = 0; i + 1 < sig.length; i++) {
            const k = sd[e]! ** 2 / (sd[e]! ** 2 + sig[i]! ** 2);
            m = mu[e]! + k * (m - mu[e]!);
            v = k * k * v + (sig[i + 1]! > 0 ? sig[i + 1]! ** 2 : 0);
          }
          mean[e] = m;
          variance[e] = v;
        }
        const r = zStats(o.x, mean, variance.map(Math.sqrt));
        expect(Math.abs(r.mean)).toBeLessThan(0.05);
        expect(Math.abs(r.std - 1)).toBeLessThan(0.05);
      }
    });
  }
});
