/**
 * Model wrappers between the network and the samplers: classifier-free guidance with A1111's
 * composable AND, and k-diffusion's CompVis wrappers for eps- and v-prediction networks.
 */
import type { DiscreteSchedule, LcmSchedule } from './schedules.js';

/**
 * The network on a batch of n items: latents [n, C, H, W] (already scaled by c_in), one model
 * timestep per item (fractional for k-diffusion samplers), one conditioning per item, and which
 * image of the batch each item belongs to (for per-image inputs such as inpainting channels).
 */
export type UnetFn<C> = (
  x: Float32Array,
  t: Float32Array,
  conds: readonly C[],
  images?: readonly number[],
) => Promise<Float32Array>;

/** A batched model output function: latents [B, ...] with one sigma (or timestep) per item. */
export type BatchedFn<C> = (
  x: Float32Array,
  level: Float32Array,
  conds: readonly C[],
  images?: readonly number[],
) => Promise<Float32Array>;

export type Parameterization = 'eps' | 'v';

/** The eps wrappers' network input: c_in·x per image (c_in = 1/sqrt(sigma² + 1)) and t(sigma). */
function scaledInput(
  x: Float32Array,
  sigmas: ArrayLike<number>,
  schedule: { sigmaToT(sigma: number): number },
): { xin: Float32Array; t: Float32Array } {
  const n = sigmas.length;
  const per = x.length / n;
  const xin = new Float32Array(x.length);
  const t = new Float32Array(n);
  for (let b = 0; b < n; b++) {
    const s = sigmas[b]!;
    t[b] = schedule.sigmaToT(s);
    const cIn = 1 / Math.sqrt(s * s + 1);
    for (let i = b * per; i < (b + 1) * per; i++) xin[i] = x[i]! * cIn;
  }
  return { xin, t };
}

/**
 * k-diffusion's CompVisDenoiser / CompVisVDenoiser: x0 = c_skip·x + c_out·F(c_in·x, t(sigma)),
 * eps: c_skip = 1, c_out = -sigma; v: c_skip = 1/(sigma²+1), c_out = -sigma/√(sigma²+1); c_in = 1/√(sigma²+1).
 */
export function compVisDenoiser<C>(
  unet: UnetFn<C>,
  schedule: DiscreteSchedule,
  parameterization: Parameterization,
): BatchedFn<C> {
  return async (x, sigmas, conds, images) => {
    const n = sigmas.length;
    const per = x.length / n;
    const { xin, t } = scaledInput(x, sigmas, schedule);
    const out = await unet(xin, t, conds, images);
    const den = new Float32Array(x.length);
    for (let b = 0; b < n; b++) {
      const s = sigmas[b]!;
      const cSkip = parameterization === 'v' ? 1 / (s * s + 1) : 1;
      const cOut = parameterization === 'v' ? -s / Math.sqrt(s * s + 1) : -s;
      for (let i = b * per; i < (b + 1) * per; i++) den[i] = cSkip * x[i]! + cOut * out[i]!;
    }
    return den;
  };
}

/**
 * A1111's LCMCompVisDenoiser: the eps wrapper at the quantized LCM timestep, then LCM's boundary
 * condition c_skip·x + c_out·x0 with sigma_data 0.5 and the timestep scaled by 10.
 */
export function lcmDenoiser<C>(unet: UnetFn<C>, schedule: LcmSchedule): BatchedFn<C> {
  return async (x, sigmas, conds, images) => {
    const n = sigmas.length;
    const per = x.length / n;
    const { xin, t } = scaledInput(x, sigmas, schedule);
    const eps = await unet(xin, t, conds, images);
    const out = new Float32Array(x.length);
    for (let b = 0; b < n; b++) {
      const s = sigmas[b]!;
      const st = t[b]! * 10;
      const cSkip = 0.25 / (st * st + 0.25);
      const cOut = st / Math.sqrt(st * st + 0.25);
      for (let i = b * per; i < (b + 1) * per; i++) out[i] = cOut * (x[i]! - s * eps[i]!) + cSkip * x[i]!;
    }
    return out;
  };
}

/**
 * A1111's timestep denoisers for DDIM/PLMS/UniPC: eps straight from the network, or for
 * v-prediction eps = √ᾱ_t·v + √(1-ᾱ_t)·x with ᾱ at the integer part of t.
 */
export function timestepsDenoiser<C>(
  unet: UnetFn<C>,
  alphasCumprod: Float32Array,
  parameterization: Parameterization,
): BatchedFn<C> {
  return async (x, ts, conds, images) => {
    const out = await unet(x, ts, conds, images);
    if (parameterization === 'eps') return out;
    const n = ts.length;
    const per = x.length / n;
    const eps = new Float32Array(x.length);
    for (let b = 0; b < n; b++) {
      const idx = Math.min(alphasCumprod.length - 1, Math.max(0, Math.trunc(ts[b]!)));
      const a = alphasCumprod[idx]!;
      const sa = Math.sqrt(a);
      const sb = Math.sqrt(1 - a);
      for (let i = b * per; i < (b + 1) * per; i++) eps[i] = sa * out[i]! + sb * x[i]!;
    }
    return eps;
  };
}

/** One conditioning valid up to and including model call `endAtStep` (A1111 ScheduledPromptConditioning). */
export interface ScheduledCond<C> {
  endAtStep: number;
  cond: C;
}

/**
 * A1111's `reconstruct_cond_batch` for one prompt: the first entry whose end step is at or after
 * `step`; past the last entry (DPM adaptive, Restart and the like call the model more often than the
 * nominal steps) it falls back to the first entry, as A1111 does.
 */
export function condAtStep<T extends { endAtStep: number }>(schedule: readonly T[], step: number): T {
  if (schedule.length === 0) throw new Error('a prompt schedule needs at least one entry');
  return schedule.find((e) => step <= e.endAtStep) ?? schedule[0]!;
}

/** A prompt-editing schedule: the conditioning changes with the model-call counter. */
export class CondSchedule<C> {
  constructor(readonly entries: readonly ScheduledCond<C>[]) {
    if (entries.length === 0) throw new Error('a prompt schedule needs at least one entry');
  }

  at(step: number): C {
    return condAtStep(this.entries, step).cond;
  }
}

/** A conditioning fixed for the run, or a prompt-editing schedule. */
export type CondSource<C> = C | CondSchedule<C>;

const pick = <C>(c: CondSource<C>, step: number): C => (c instanceof CondSchedule ? c.at(step) : c);

/** One sub-prompt of an AND-composed prompt. */
export interface WeightedCond<C> {
  cond: CondSource<C>;
  weight: number;
}

export interface CfgOptions<C> {
  /** Per image: its prompt's AND parts with weights (a plain prompt is one part of weight 1). */
  conds: readonly (readonly WeightedCond<C>[])[];
  /** Per image: the negative prompt's conditioning. */
  uncond: readonly CondSource<C>[];
  scale: number;
  /** Largest batch handed to the network at once (A1111 batch_cond_uncond); default all at once. */
  maxBatch?: number;
  /**
   * Whether the picked conds and unconds may go through the network as one batch (A1111: when their
   * token counts agree); otherwise conds and unconds are run as two. Default: always.
   */
  joinable?: (conds: readonly C[], unconds: readonly C[]) => boolean;
  /**
   * A1111's "Negative Guidance minimum sigma" (s_min_uncond, infotext NGMS): on every second model
   * call whose level is below it, the uncond pass is skipped and the first AND part's prediction
   * stands in for it, combined with scale 1.
   */
  sMinUncond?: number;
  /** A1111 setting s_min_uncond_all ("NGMS all steps"): skip below s_min_uncond on every call. */
  sMinUncondAll?: boolean;
  /**
   * Inpainting: result = init·mask + (1 - mask)·result per element (mask 1 = keep the original).
   * `before`: blend the input x instead of the output (A1111's timestep samplers).
   */
  mask?: { mask: Float32Array; initLatent: Float32Array; before?: boolean };
  /** Observes every call before the network runs (prompt-editing step = model calls so far). */
  onCall?: (info: { step: number; level: number; skipUncond: boolean }) => void;
}

/** The CFG denoiser as a model function, plus what its last call saw. */
export interface CfgModel {
  (x: Float32Array, level: number): Promise<Float32Array>;
  /**
   * The inner model's unconditional prediction per image from the last call, batch-shaped (A1111's
   * `last_noise_uncond`; where the uncond pass was skipped, the image's first cond prediction).
   */
  lastUncond(): Float32Array | undefined;
}

/**
 * A1111's CFGDenoiser: every image is run with each of its conds and once with its uncond, then
 * denoised_i = uncond_i + Σ_k (cond_ik - uncond_i)·weight_k·scale. Works on x0 (k-diffusion) and on
 * eps (timestep samplers) alike, since the combination is linear. Conditionings are picked per call
 * from their schedules by the call counter, as A1111 advances `step` per model call.
 */
export function cfgDenoiser<C>(inner: BatchedFn<C>, opts: CfgOptions<C>): CfgModel {
  const batch = opts.conds.length;
  if (batch === 0 || opts.uncond.length !== batch) {
    throw new Error(`CFG needs one uncond per image (${opts.uncond.length} for ${batch} images)`);
  }
  let step = 0;
  const blend = (v: Float32Array, per: number): Float32Array => {
    const { mask, initLatent } = opts.mask!;
    const out = new Float32Array(v.length);
    for (let i = 0; i < batch; i++) {
      for (let k = 0; k < per; k++) {
        const m = mask.length === v.length ? mask[i * per + k]! : mask[k % mask.length]!;
        out[i * per + k] = initLatent[i * per + k]! * m + (1 - m) * v[i * per + k]!;
      }
    }
    return out;
  };
  // The last call's network outputs and where each image's uncond row sits (for lastUncond).
  let last: { out: Float32Array; per: number; rows: number[] } | undefined;
  const model = async (xArg: Float32Array, level: number): Promise<Float32Array> => {
    const per = xArg.length / batch;
    const x = opts.mask?.before ? blend(xArg, per) : xArg;
    const skipUncond =
      (step % 2 === 1 || opts.sMinUncondAll === true) &&
      (opts.sMinUncond ?? 0) > 0 &&
      level < opts.sMinUncond!;
    opts.onCall?.({ step, level, skipUncond });
    const condItems: { image: number; cond: C }[] = [];
    opts.conds.forEach((parts, i) =>
      parts.forEach((p) => condItems.push({ image: i, cond: pick(p.cond, step) })),
    );
    const uncondItems = skipUncond ? [] : opts.uncond.map((u, i) => ({ image: i, cond: pick(u, step) }));
    step++;
    const items = [...condItems, ...uncondItems];
    // Network batches: one joint list, or conds and unconds apart when they cannot share a batch.
    const joint =
      uncondItems.length === 0 ||
      (opts.joinable?.(
        condItems.map((c) => c.cond),
        uncondItems.map((c) => c.cond),
      ) ??
        true);
    const groups = joint ? [items] : [condItems, uncondItems];
    const out = new Float32Array(items.length * per);
    let at = 0;
    for (const group of groups) {
      const chunk = Math.max(1, opts.maxBatch ?? group.length);
      for (let a = 0; a < group.length; a += chunk) {
        const part = group.slice(a, a + chunk);
        const xin = new Float32Array(part.length * per);
        part.forEach((it, k) => xin.set(x.subarray(it.image * per, (it.image + 1) * per), k * per));
        const res = await inner(
          xin,
          new Float32Array(part.length).fill(level),
          part.map((it) => it.cond),
          part.map((it) => it.image),
        );
        out.set(res, at * per);
        at += part.length;
      }
    }
    // Where each image's "uncond" prediction sits: after all conds, or (skipped) its first cond's.
    const firstCond: number[] = [];
    opts.conds.reduce((pos, parts) => (firstCond.push(pos), pos + parts.length), 0);
    const uncondIndex = (i: number): number => (skipUncond ? firstCond[i]! : condItems.length + i);
    last = { out, per, rows: Array.from({ length: batch }, (_, i) => uncondIndex(i)) };
    const scale = skipUncond ? 1 : opts.scale;
    const den = new Float32Array(x.length);
    let condIndex = 0;
    for (let i = 0; i < batch; i++) {
      const u = out.subarray(uncondIndex(i) * per, (uncondIndex(i) + 1) * per);
      const d = den.subarray(i * per, (i + 1) * per);
      d.set(u);
      for (const p of opts.conds[i]!) {
        const c = out.subarray(condIndex * per, (condIndex + 1) * per);
        const w = p.weight * scale;
        for (let k = 0; k < per; k++) d[k] = d[k]! + (c[k]! - u[k]!) * w;
        condIndex++;
      }
    }
    return opts.mask && !opts.mask.before ? blend(den, per) : den;
  };
  const lastUncond = (): Float32Array | undefined => {
    if (!last) return undefined;
    const { out, per, rows } = last;
    const u = new Float32Array(rows.length * per);
    rows.forEach((r, i) => u.set(out.subarray(r * per, (r + 1) * per), i * per));
    return u;
  };
  return Object.assign(model, { lastUncond });
}
