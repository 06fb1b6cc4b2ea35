/**
 * The pipeline's side of the one CFG denoiser (`sampling/denoisers.ts`): it adapts the UNet to the
 * denoisers' `UnetFn` — contexts stacked per batch and padded by repeating each one's last token vector
 * (as A1111), inpainting-model channels concatenated per row — and picks the model wrapper A1111 would:
 * k-diffusion's CompVisDenoiser or CompVisVDenoiser by the model's prediction type, A1111's
 * LCMCompVisDenoiser for the LCM sampler, the timestep (eps / v→eps) denoiser for DDIM, PLMS and UniPC.
 * CFG, AND weights, prompt editing per model call, s_min_uncond (NGMS) and the inpaint blend are the
 * shared `cfgDenoiser`'s.
 */
import {
  cfgDenoiser,
  compVisDenoiser,
  CondSchedule,
  lcmDenoiser,
  timestepsDenoiser,
  type BatchedFn,
  type Parameterization,
  type UnetFn,
} from '../sampling/denoisers.js';
import { LcmSchedule, type DiscreteSchedule } from '../sampling/schedules.js';
import type { EpsModel, Model } from '../sampling/types.js';
import type { TensorF32 } from '../runtime/sd1.js';

export { condAtStep } from '../sampling/denoisers.js';

/** An SDXL refiner's conditioning for the same rows: its context and vector (pipeline/refiner.ts). */
export interface AltConditioning {
  context: TensorF32;
  y?: TensorF32;
}

/**
 * eps (or v) = UNet(x, t, context[, y]); x may carry extra channels (inpainting models); y is a
 * vector conditioning [B, adm] (SDXL), one row per context row; `alt` the refiner's conditioning of
 * the same rows, when every row has one (ScheduledCond.alt), for the UNet call to switch to.
 */
export type UNetFn = (
  x: TensorF32,
  t: TensorF32,
  context: TensorF32,
  y?: TensorF32,
  alt?: AltConditioning,
) => Promise<TensorF32>;

/** One conditioning valid up to and including step `endAtStep` (A1111 ScheduledPromptConditioning). */
export interface ScheduledCond {
  endAtStep: number;
  /** [tokens, width], tokens a multiple of 77. */
  cond: TensorF32;
  /** A vector conditioning [adm] (SDXL: pooled text output and size embeddings). */
  y?: TensorF32;
  /** An SDXL refiner's conditioning of the same text (its context and vector), attached by the job. */
  alt?: { cond: TensorF32; y?: TensorF32 };
}

/** An image's prompt: AND-parts with weights, each a schedule; and the negative prompt's schedule. */
export interface ImageConditioning {
  parts: { schedule: ScheduledCond[]; weight: number }[];
  uncond: ScheduledCond[];
}

export interface DenoiserOptions {
  unet: UNetFn;
  schedule: DiscreteSchedule;
  /** Latent shape of one image [C, H, W]. */
  latentShape: readonly [number, number, number];
  images: ImageConditioning[];
  cfgScale: number;
  /** The sampler's factor on cfgScale (SamplerInfo.cfgScaleMultiplier: DDIM CFG++ 1/12.5); default 1. */
  cfgScaleMultiplier?: number;
  /** What the UNet predicts: 'eps' (SD 1.x, SD2 512) or 'v' (SD2 768-v). Default 'eps'. */
  prediction?: Parameterization;
  /** The LCM sampler: `model` is A1111's LCM denoiser (quantised timestep, boundary condition). */
  lcm?: boolean;
  /** A1111 s_min_uncond ("Negative Guidance minimum sigma", infotext NGMS); 0 = off. */
  sMinUncond?: number;
  /** A1111 setting s_min_uncond_all ("NGMS all steps"): skip on every call below s_min_uncond. */
  sMinUncondAll?: boolean;
  /** Inpainting-model conditioning per image [5, H, W] (mask + masked-image latent), concatenated to x. */
  imageConditioning?: Float32Array;
  /** img2img inpaint: the original latent and the repaint mask (1 = repaint) per image [C·H·W each]. */
  initLatent?: Float32Array;
  nmask?: Float32Array;
  /** Observes every UNet call: the model-call counter (A1111's step), the level and the timestep. */
  onModelCall?: (info: { step: number; level: number; t: number; skipUncond: boolean }) => void;
}

/** Pads conds of one batch to the longest by repeating each one's last token vector (as A1111). */
function stackPadded(conds: readonly TensorF32[]): TensorF32 {
  const width = conds[0]!.dims[conds[0]!.dims.length - 1]!;
  const tokens = Math.max(...conds.map((c) => c.data.length / width));
  const out = new Float32Array(conds.length * tokens * width);
  conds.forEach((c, i) => {
    const n = c.data.length / width;
    out.set(c.data, i * tokens * width);
    for (let t = n; t < tokens; t++)
      out.set(c.data.subarray((n - 1) * width, n * width), (i * tokens + t) * width);
  });
  return { data: out, dims: [conds.length, tokens, width] };
}

const tokensOf = (c: TensorF32): number => c.data.length / c.dims[c.dims.length - 1]!;

export class CfgDenoiser {
  /** The k-diffusion model function: batch x [B·C·H·W] at sigma → denoised x0 (LCM: its denoiser). */
  readonly model: Model;
  /** The timestep samplers' model function (DDIM, PLMS, UniPC): CFG on eps at model timestep t. */
  readonly epsModel: EpsModel;
  /** The unconditional eps of epsModel's last call, per image (DDIM CFG++). */
  readonly lastUncond: () => Float32Array | undefined;
  /** The last context batch, reused while prompt editing picks the same conds. */
  private context?: {
    picked: readonly ScheduledCond[];
    stacked: TensorF32;
    y?: TensorF32;
    alt?: AltConditioning;
  };

  constructor(o: DenoiserOptions) {
    const [c, h, w] = o.latentShape;
    const n = c * h * w;
    const extra = o.imageConditioning;
    const extraC = extra ? extra.length / (h * w) / o.images.length : 0;
    let pendingCall: { step: number; level: number; skipUncond: boolean } | null = null;
    const unet: UnetFn<ScheduledCond> = async (x, t, conds, images) => {
      const b = t.length;
      const ch = c + extraC;
      let input = x;
      if (extra) {
        input = new Float32Array(b * ch * h * w);
        for (let i = 0; i < b; i++) {
          input.set(x.subarray(i * n, (i + 1) * n), i * ch * h * w);
          const img = images?.[i] ?? i;
          input.set(extra.subarray(img * extraC * h * w, (img + 1) * extraC * h * w), i * ch * h * w + n);
        }
      }
      if (pendingCall) o.onModelCall?.({ ...pendingCall, t: t[0]! });
      const ctx = this.stacked(conds);
      const out = await o.unet(
        { data: input, dims: [b, ch, h, w] },
        { data: t, dims: [b] },
        ctx.stacked,
        ctx.y,
        ctx.alt,
      );
      return out.data;
    };
    // The schedules' entries are the conditionings (context and optional vector together).
    const schedule = (entries: readonly ScheduledCond[]) =>
      new CondSchedule(entries.map((e) => ({ endAtStep: e.endAtStep, cond: e })));
    const cfg = (inner: BatchedFn<ScheduledCond>, maskBefore: boolean) =>
      cfgDenoiser(inner, {
        conds: o.images.map((img) =>
          img.parts.map((p) => ({ cond: schedule(p.schedule), weight: p.weight })),
        ),
        uncond: o.images.map((img) => schedule(img.uncond)),
        scale: o.cfgScale * (o.cfgScaleMultiplier ?? 1),
        // A1111 runs cond and uncond as one batch when their (padded) token counts agree.
        joinable: (conds, unconds) =>
          Math.max(...conds.map((e) => tokensOf(e.cond))) ===
          Math.max(...unconds.map((e) => tokensOf(e.cond))),
        sMinUncond: o.sMinUncond,
        sMinUncondAll: o.sMinUncondAll,
        mask:
          o.initLatent && o.nmask
            ? { mask: o.nmask.map((v) => 1 - v), initLatent: o.initLatent, before: maskBefore }
            : undefined,
        onCall: (info) => {
          pendingCall = info;
        },
      });
    const prediction = o.prediction ?? 'eps';
    const inner = o.lcm
      ? lcmDenoiser(unet, new LcmSchedule(o.schedule.alphasCumprod))
      : compVisDenoiser(unet, o.schedule, prediction);
    this.model = cfg(inner, false);
    // A1111's CFGDenoiserTimesteps blends the init latent into x before the model call.
    const eps = cfg(timestepsDenoiser(unet, o.schedule.alphasCumprod, prediction), true);
    this.epsModel = eps;
    this.lastUncond = eps.lastUncond;
  }

  /**
   * The conds of one network batch stacked [rows, T, W] (and their vectors [rows, adm] when they have
   * them); rebuilt only when prompt editing switches one.
   */
  private stacked(conds: readonly ScheduledCond[]): {
    stacked: TensorF32;
    y?: TensorF32;
    alt?: AltConditioning;
  } {
    const last = this.context;
    if (last && last.picked.length === conds.length && last.picked.every((x, i) => x === conds[i])) {
      return last;
    }
    const stacked = stackPadded(conds.map((e) => e.cond));
    const y = stackVectors(conds.map((e) => e.y));
    let alt: AltConditioning | undefined;
    if (conds.every((e) => e.alt)) {
      const alts = conds.map((e) => e.alt!);
      alt = { context: stackPadded(alts.map((a) => a.cond)), y: stackVectors(alts.map((a) => a.y)) };
    }
    this.context = { picked: conds, stacked, y, alt };
    return this.context;
  }
}

/** The rows' vectors [adm] stacked [rows, adm], when every row has one. */
function stackVectors(rows: readonly (TensorF32 | undefined)[]): TensorF32 | undefined {
  if (!rows.every((r) => r)) return undefined;
  const n = rows[0]!.data.length;
  const data = new Float32Array(rows.length * n);
  rows.forEach((r, i) => data.set(r!.data, i * n));
  return { data, dims: [rows.length, n] };
}
