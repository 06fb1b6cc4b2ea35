/**
 * Noise schedules: the SD model schedule (alphas_cumprod → sigmas, k-diffusion's DiscreteSchedule
 * conversions) and every scheduler A1111 offers, plus A1111's choice of sigmas per sampler
 * (`KDiffusionSampler.get_sigmas`) and its img2img cut. Values follow torch's float32 arithmetic
 * where the result depends on it (1 - alphas_cumprod near 1 loses digits in float32).
 */
import { UserError } from '../util/errors.js';
import { betaPpf } from './betaPpf.js';

const f32 = Math.fround;

/** SD's "scaled linear" betas in float64 as ldm builds them; alphas_cumprod stored as float32. */
export function sdAlphasCumprod(linearStart = 0.00085, linearEnd = 0.012, timesteps = 1000): Float32Array {
  const out = new Float32Array(timesteps);
  const a = Math.sqrt(linearStart);
  const b = Math.sqrt(linearEnd);
  let prod = 1;
  for (let i = 0; i < timesteps; i++) {
    const s = timesteps === 1 ? a : a + ((b - a) * i) / (timesteps - 1);
    prod *= 1 - s * s;
    out[i] = prod;
  }
  return out;
}

/** torch.linspace for float32 output: start + step*i for the first half, end - step*(n-1-i) after. */
export function linspaceF32(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = f32(start);
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32((e - s) / (n - 1));
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(s + step * i) : f32(e - step * (n - 1 - i));
  return out;
}

function appendZero(values: ArrayLike<number>): number[] {
  return [...Array.from(values, (v) => f32(v)), 0];
}

/** What A1111's schedulers ask of the denoiser they build sigmas for (its `inner_model`). */
export interface SigmaModel {
  /** Ascending sigmas of the discrete timesteps. */
  readonly sigmas: Float32Array;
  readonly sigmaMin: number;
  readonly sigmaMax: number;
  sigmaToT(sigma: number): number;
  tToSigma(t: number): number;
  getSigmas(n: number): number[];
}

/**
 * k-diffusion's DiscreteSchedule over a model's alphas_cumprod (CompVisDenoiser): sigmas ascending
 * with the timestep index, conversions by log-sigma interpolation.
 */
export class DiscreteSchedule implements SigmaModel {
  readonly sigmas: Float32Array;
  readonly logSigmas: Float32Array;

  constructor(readonly alphasCumprod: Float32Array) {
    if (alphasCumprod.length < 2) throw new UserError('a noise schedule needs at least 2 timesteps');
    const n = alphasCumprod.length;
    this.sigmas = new Float32Array(n);
    this.logSigmas = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const ac = alphasCumprod[i]!;
      this.sigmas[i] = Math.sqrt(f32(f32(1 - ac) / ac));
      this.logSigmas[i] = Math.log(this.sigmas[i]!);
    }
  }

  get sigmaMin(): number {
    return this.sigmas[0]!;
  }

  get sigmaMax(): number {
    return this.sigmas[this.sigmas.length - 1]!;
  }

  /** Fractional timestep of a sigma, linear in log-sigma between neighbouring indices (clamped). */
  sigmaToT(sigma: number): number {
    const ls = this.logSigmas;
    const logSigma = f32(Math.log(sigma));
    // Last index whose log-sigma is <= logSigma (0 when there is none), at most n - 2.
    let lo = 0;
    let hi = ls.length - 1;
    if (ls[0]! > logSigma) lo = 0;
    else {
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (ls[mid]! <= logSigma) lo = mid;
        else hi = mid - 1;
      }
    }
    const low = Math.min(lo, ls.length - 2);
    const w = Math.min(1, Math.max(0, f32((ls[low]! - logSigma) / (ls[low]! - ls[low + 1]!))));
    return f32((1 - w) * low + w * (low + 1));
  }

  /** Sigma at a fractional timestep: log-sigmas interpolated between floor(t) and ceil(t). */
  tToSigma(t: number): number {
    const tf = f32(t);
    const low = Math.floor(tf);
    const high = Math.ceil(tf);
    if (low < 0 || high >= this.logSigmas.length) {
      throw new UserError(`timestep ${t} is outside the model's 0..${this.logSigmas.length - 1}`);
    }
    const w = f32(tf - low);
    return f32(Math.exp(f32((1 - w) * this.logSigmas[low]! + w * this.logSigmas[high]!)));
  }

  /** CompVisDenoiser.get_sigmas(n): n sigmas from t = max down to 0, then 0 ("Automatic"/"Uniform"). */
  getSigmas(n: number): number[] {
    const ts = linspaceF32(this.sigmas.length - 1, 0, n);
    return appendZero(Array.from(ts, (t) => this.tToSigma(t)));
  }
}

// ---------------------------------------------------------------- k-diffusion schedulers

export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): number[] {
  const ramp = linspaceF32(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return appendZero(Array.from(ramp, (r) => (maxInv + r * (minInv - maxInv)) ** rho));
}

export function exponentialSigmas(n: number, sigmaMin: number, sigmaMax: number): number[] {
  return appendZero(Array.from(linspaceF32(Math.log(sigmaMax), Math.log(sigmaMin), n), (v) => Math.exp(v)));
}

export function polyexponentialSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 1): number[] {
  const lmin = Math.log(sigmaMin);
  const lmax = Math.log(sigmaMax);
  return appendZero(Array.from(linspaceF32(1, 0, n), (r) => Math.exp(f32(r ** rho) * (lmax - lmin) + lmin)));
}

// ---------------------------------------------------------------- A1111 schedulers (sd_schedulers.py)

export function sgmUniformSigmas(n: number, sigmaMin: number, sigmaMax: number, model: SigmaModel): number[] {
  const ts = linspaceF32(model.sigmaToT(sigmaMax), model.sigmaToT(sigmaMin), n + 1).subarray(0, n);
  return appendZero(Array.from(ts, (t) => model.tToSigma(t)));
}

export function normalSigmas(n: number, sigmaMin: number, sigmaMax: number, model: SigmaModel): number[] {
  const ts = linspaceF32(model.sigmaToT(sigmaMax), model.sigmaToT(sigmaMin), n);
  return appendZero(Array.from(ts, (t) => model.tToSigma(t)));
}

/** KL Optimal ends at sigma_min: n + 1 values and no appended zero (as A1111 has it). */
export function klOptimalSigmas(n: number, sigmaMin: number, sigmaMax: number): number[] {
  const aMin = f32(Math.atan(sigmaMin));
  const aMax = f32(Math.atan(sigmaMax));
  const out: number[] = [];
  for (let i = 0; i <= n; i++) {
    const r = f32(i / n);
    out.push(f32(Math.tan(f32(f32(r * aMin) + f32(f32(1 - r) * aMax)))));
  }
  return out;
}

const AYS_SD15 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029];
const AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.38, 0.234, 0.113, 0.029];

/** Align Your Steps: NVIDIA's 10-step table, log-linearly resampled to n steps. */
export function alignYourStepsSigmas(n: number, isSdxl = false): number[] {
  const table = isSdxl ? AYS_SDXL : AYS_SD15;
  if (n === table.length) return appendZero(table);
  // np.interp over the reversed (ascending) log table at n evenly spaced points, reversed back.
  const ys = table.map((v) => Math.log(v)).reverse();
  const k = ys.length;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = n === 1 ? 0 : i / (n - 1);
    const pos = x * (k - 1);
    const j = Math.min(Math.floor(pos), k - 2);
    const xj = j / (k - 1);
    const xj1 = (j + 1) / (k - 1);
    out.push(Math.exp(ys[j]! + ((x - xj) * (ys[j + 1]! - ys[j]!)) / (xj1 - xj)));
  }
  return appendZero(out.reverse());
}

export function simpleSigmas(n: number, model: SigmaModel): number[] {
  const ss = model.sigmas.length / n;
  const out: number[] = [];
  for (let x = 0; x < n; x++) out.push(model.sigmas[model.sigmas.length - 1 - Math.trunc(x * ss)]!);
  return appendZero(out);
}

/** DDIM-style uniform timesteps as sigmas; like A1111, the count is not always n. */
export function ddimSigmas(n: number, model: SigmaModel): number[] {
  const ss = Math.max(Math.floor(model.sigmas.length / n), 1);
  const out: number[] = [];
  for (let x = 1; x < model.sigmas.length; x += ss) out.push(model.sigmas[x]!);
  return appendZero(out.reverse());
}

export function betaSigmas(n: number, sigmaMin: number, sigmaMax: number, alpha = 0.6, beta = 0.6): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const q = 1 - (n === 1 ? 0 : i / (n - 1));
    out.push(sigmaMin + betaPpf(q, alpha, beta) * (sigmaMax - sigmaMin));
  }
  return appendZero(out);
}

/**
 * A1111's LCMCompVisDenoiser schedule: the model's schedule thinned to 50 "original" steps, with
 * quantized sigma → t (nearest of the 50, mapped back to the model's 0..999 timesteps).
 */
export class LcmSchedule implements SigmaModel {
  readonly inner: DiscreteSchedule;
  readonly skip: number;

  constructor(
    alphasCumprod: Float32Array,
    readonly originalSteps = 50,
  ) {
    const total = alphasCumprod.length;
    this.skip = Math.floor(total / originalSteps);
    const valid = new Float32Array(originalSteps);
    for (let x = 0; x < originalSteps; x++)
      valid[originalSteps - 1 - x] = alphasCumprod[total - 1 - x * this.skip]!;
    this.inner = new DiscreteSchedule(valid);
  }

  get sigmas(): Float32Array {
    return this.inner.sigmas;
  }

  get sigmaMin(): number {
    return this.inner.sigmaMin;
  }

  get sigmaMax(): number {
    return this.inner.sigmaMax;
  }

  sigmaToT(sigma: number): number {
    const ls = Math.log(sigma);
    const table = this.inner.logSigmas;
    let best = 0;
    for (let i = 1; i < table.length; i++)
      if (Math.abs(ls - table[i]!) < Math.abs(ls - table[best]!)) best = i;
    return best * this.skip + (this.skip - 1);
  }

  tToSigma(t: number): number {
    const tt = Math.min(this.originalSteps - 1, Math.max(0, f32((t - (this.skip - 1)) / this.skip)));
    return this.inner.tToSigma(tt);
  }

  getSigmas(n: number): number[] {
    const ts = linspaceF32(this.sigmaToT(this.inner.sigmaMax), this.sigmaToT(this.inner.sigmaMin), n);
    return appendZero(Array.from(ts, (t) => this.tToSigma(t)));
  }
}

export function lcmSigmas(n: number, alphasCumprod: Float32Array, originalSteps = 50): number[] {
  return new LcmSchedule(alphasCumprod, originalSteps).getSigmas(n);
}

/** A1111's DDIM/PLMS timesteps: clip(range(0, 1000, 1000 // steps) + 1, 0, 999). */
export function a1111Timesteps(steps: number, total = 1000): number[] {
  if (!Number.isSafeInteger(steps) || steps < 1 || steps > total) {
    throw new UserError(`steps must be between 1 and ${total}, got ${steps}`);
  }
  const stride = Math.floor(total / steps);
  const out: number[] = [];
  for (let t = 0; t < total; t += stride) out.push(Math.min(t + 1, total - 1));
  return out;
}

// ---------------------------------------------------------------- A1111's scheduler registry

export type SchedulerName =
  | 'automatic'
  | 'uniform'
  | 'karras'
  | 'exponential'
  | 'polyexponential'
  | 'sgm_uniform'
  | 'kl_optimal'
  | 'align_your_steps'
  | 'simple'
  | 'normal'
  | 'ddim'
  | 'beta';

export interface SchedulerInfo {
  /** A1111's name (API value). */
  name: SchedulerName;
  /** Shown, and written to the infotext as "Schedule type". */
  label: string;
  /** Schedulers with a rho parameter (A1111 `default_rho`), -1 for none. */
  defaultRho: number;
  /** Built from the model's own sigma table (A1111 `need_inner_model`). */
  needInnerModel: boolean;
  aliases: string[];
}

const sch = (name: SchedulerName, label: string, o: Partial<SchedulerInfo> = {}): SchedulerInfo => ({
  name,
  label,
  defaultRho: -1,
  needInnerModel: false,
  aliases: [],
  ...o,
});

/** A1111 1.10's schedulers, in its order (the sampling registry re-exports them). */
export const SCHEDULERS: readonly SchedulerInfo[] = [
  sch('automatic', 'Automatic'),
  sch('uniform', 'Uniform', { needInnerModel: true }),
  sch('karras', 'Karras', { defaultRho: 7 }),
  sch('exponential', 'Exponential'),
  sch('polyexponential', 'Polyexponential', { defaultRho: 1 }),
  sch('sgm_uniform', 'SGM Uniform', { needInnerModel: true, aliases: ['SGMUniform'] }),
  sch('kl_optimal', 'KL Optimal'),
  sch('align_your_steps', 'Align Your Steps'),
  sch('simple', 'Simple', { needInnerModel: true }),
  sch('normal', 'Normal', { needInnerModel: true }),
  sch('ddim', 'DDIM', { needInnerModel: true }),
  sch('beta', 'Beta', { needInnerModel: true }),
];

/** A scheduler by name, label or alias (case-insensitive, as the API accepts either). */
export function findScheduler(nameOrLabel: string): SchedulerInfo | undefined {
  const key = nameOrLabel.trim().toLowerCase();
  return SCHEDULERS.find(
    (s) => s.name === key || s.label.toLowerCase() === key || s.aliases.some((a) => a.toLowerCase() === key),
  );
}

export interface ScheduleOptions {
  /** Overrides of the model's sigma range (A1111 settings sigma_min / sigma_max; 0 = model's). */
  sigmaMin?: number;
  sigmaMax?: number;
  /** A1111 setting "rho" (0 = the scheduler's default). */
  rho?: number;
  betaAlpha?: number;
  betaBeta?: number;
  isSdxl?: boolean;
  /** A1111 setting `use_old_karras_scheduler_sigmas`: sigma range 0.1..10. */
  oldKarrasSigmas?: boolean;
}

/** The sigmas (ending in 0, except KL Optimal) that scheduler `name` gives for `steps` steps. */
export function schedulerSigmas(
  name: SchedulerName,
  steps: number,
  model: SigmaModel,
  opts: ScheduleOptions = {},
): number[] {
  if (!Number.isSafeInteger(steps) || steps < 1 || steps > 10000) {
    throw new UserError(`steps must be an integer between 1 and 10000, got ${steps}`);
  }
  if (name === 'automatic') return model.getSigmas(steps);
  const mMin = model.sigmaMin;
  const mMax = model.sigmaMax;
  let sigmaMin = opts.oldKarrasSigmas ? 0.1 : mMin;
  let sigmaMax = opts.oldKarrasSigmas ? 10 : mMax;
  if (opts.sigmaMin && opts.sigmaMin !== mMin) sigmaMin = opts.sigmaMin;
  if (opts.sigmaMax && opts.sigmaMax !== mMax) sigmaMax = opts.sigmaMax;
  if (!(sigmaMin > 0 && sigmaMax > sigmaMin)) {
    throw new UserError(
      `sigma range ${sigmaMin}..${sigmaMax} is invalid; sigma min must be > 0 and below sigma max`,
    );
  }
  const info = SCHEDULERS.find((s) => s.name === name)!;
  const rho = info.defaultRho !== -1 && opts.rho ? opts.rho : info.defaultRho;
  switch (name) {
    case 'uniform':
      return model.getSigmas(steps);
    case 'karras':
      return karrasSigmas(steps, sigmaMin, sigmaMax, rho);
    case 'exponential':
      return exponentialSigmas(steps, sigmaMin, sigmaMax);
    case 'polyexponential':
      return polyexponentialSigmas(steps, sigmaMin, sigmaMax, rho);
    case 'sgm_uniform':
      return sgmUniformSigmas(steps, sigmaMin, sigmaMax, model);
    case 'kl_optimal':
      return klOptimalSigmas(steps, sigmaMin, sigmaMax);
    case 'align_your_steps':
      return alignYourStepsSigmas(steps, opts.isSdxl);
    case 'simple':
      return simpleSigmas(steps, model);
    case 'normal':
      return normalSigmas(steps, sigmaMin, sigmaMax, model);
    case 'ddim':
      return ddimSigmas(steps, model);
    case 'beta':
      return betaSigmas(steps, sigmaMin, sigmaMax, opts.betaAlpha ?? 0.6, opts.betaBeta ?? 0.6);
  }
}

export interface A1111SigmasRequest extends ScheduleOptions {
  steps: number;
  /** The user's schedule type ("Automatic" = the sampler's own default). */
  scheduler: SchedulerName;
  /** The sampler's default scheduler (A1111 option `scheduler`), if it has one. */
  samplerScheduler?: SchedulerName;
  /** The sampler wants one more sigma built and the next-to-last removed. */
  discardNextToLastSigma?: boolean;
  /** A1111 setting "always discard next-to-last sigma". */
  alwaysDiscardNextToLastSigma?: boolean;
}

/** A1111's KDiffusionSampler.get_sigmas. */
export function a1111Sigmas(model: SigmaModel, req: A1111SigmasRequest): number[] {
  const discard = Boolean(req.discardNextToLastSigma || req.alwaysDiscardNextToLastSigma);
  const steps = req.steps + (discard ? 1 : 0);
  const name = req.scheduler === 'automatic' ? (req.samplerScheduler ?? 'automatic') : req.scheduler;
  const sigmas = schedulerSigmas(name, steps, model, req);
  if (discard && sigmas.length >= 2) sigmas.splice(sigmas.length - 2, 1);
  return sigmas;
}

/** A1111's `setup_img2img_steps`: total schedule length and how many of its steps img2img runs. */
export function img2imgSteps(
  steps: number,
  denoisingStrength: number,
  fixSteps = false,
): { steps: number; tEnc: number } {
  if (!(denoisingStrength >= 0 && denoisingStrength <= 1)) {
    throw new UserError(`denoising strength must be between 0 and 1, got ${denoisingStrength}`);
  }
  const strength = Math.min(denoisingStrength, 0.999);
  if (fixSteps) {
    return { steps: denoisingStrength > 0 ? Math.trunc(steps / strength) : 0, tEnc: steps - 1 };
  }
  return { steps, tEnc: Math.trunc(strength * steps) };
}

/** The tail of the schedule img2img samples over: sigmas[steps - tEnc - 1:]. */
export function img2imgSigmas(sigmas: readonly number[], steps: number, tEnc: number): number[] {
  return sigmas.slice(Math.max(0, steps - tEnc - 1));
}
