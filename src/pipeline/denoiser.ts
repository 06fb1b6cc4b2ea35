/**
 * A1111's CFGDenoiser over k-diffusion's CompVisDenoiser: the function samplers call as
 * `model(x, sigma) → x0` for a whole batch of images. Per call it picks each image's conditioning for
 * the current step (prompt editing), runs cond and uncond through the UNet in one batch when their
 * token lengths agree (A1111 batch_cond_uncond), combines them with the CFG scale and the AND weights,
 * and for inpainting keeps the unmasked latent pinned to the original.
 */
import type { DiscreteSchedule } from '../sampling/schedules.js';
import type { TensorF32 } from '../runtime/sd1.js';

/** eps = UNet(x, t, context); x may carry extra channels (inpainting models). */
export type UNetFn = (x: TensorF32, t: TensorF32, context: TensorF32) => Promise<TensorF32>;

/** One conditioning valid up to and including step `endAtStep` (A1111 ScheduledPromptConditioning). */
export interface ScheduledCond {
  endAtStep: number;
  /** [tokens, width], tokens a multiple of 77. */
  cond: TensorF32;
}

/** An image's prompt: AND-parts with weights, each a schedule; and the negative prompt's schedule. */
export interface ImageConditioning {
  parts: { schedule: ScheduledCond[]; weight: number }[];
  uncond: ScheduledCond[];
}

/** A1111 reconstruct_cond_batch: the first entry whose end step is at or after `step`. */
export function condAtStep(schedule: readonly ScheduledCond[], step: number): TensorF32 {
  for (const e of schedule) if (step <= e.endAtStep) return e.cond;
  return schedule[schedule.length - 1]!.cond;
}

export interface DenoiserOptions {
  unet: UNetFn;
  schedule: DiscreteSchedule;
  /** Latent shape of one image [C, H, W]. */
  latentShape: readonly [number, number, number];
  images: ImageConditioning[];
  cfgScale: number;
  /** Inpainting-model conditioning per image [5, H, W] (mask + masked-image latent), concatenated to x. */
  imageConditioning?: Float32Array;
  /** img2img inpaint: the original latent and the repaint mask (1 = repaint) per image [C·H·W each]. */
  initLatent?: Float32Array;
  nmask?: Float32Array;
  /** Observes every UNet call (tests, progress). */
  onModelCall?: (info: { step: number; sigma: number; t: number }) => void;
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

export class CfgDenoiser {
  /** Model calls so far: A1111 advances the prompt-editing step per call. */
  step = 0;
  /** The contexts of the last call, reused while prompt editing picks the same conds. */
  private contexts?: { picked: TensorF32[]; cond: TensorF32; uncond: TensorF32; joint?: TensorF32 };

  constructor(private readonly o: DenoiserOptions) {}

  /** eps for rows `xs` (row r belongs to image `rowImage[r]`) against `context` [rows, T, W]. */
  private async eps(
    xs: Float32Array[],
    rowImage: number[],
    cIn: number,
    t: number,
    sigma: number,
    context: TensorF32,
  ): Promise<Float32Array> {
    const [c, h, w] = this.o.latentShape;
    const n = c * h * w;
    const b = xs.length;
    const extra = this.o.imageConditioning;
    const extraC = extra ? extra.length / (n / c) / this.o.images.length : 0;
    const ch = c + extraC;
    const input = new Float32Array(b * ch * h * w);
    xs.forEach((x, i) => {
      for (let k = 0; k < n; k++) input[i * ch * h * w + k] = x[k]! * cIn;
      if (extra) {
        const img = rowImage[i]!;
        input.set(extra.subarray(img * extraC * h * w, (img + 1) * extraC * h * w), i * ch * h * w + n);
      }
    });
    this.o.onModelCall?.({ step: this.step, sigma, t });
    const out = await this.o.unet(
      { data: input, dims: [b, ch, h, w] },
      { data: new Float32Array(b).fill(t), dims: [b] },
      context,
    );
    return out.data;
  }

  /** The k-diffusion model function: batch x [B·C·H·W] at sigma → denoised x0. */
  readonly model = async (x: Float32Array, sigma: number): Promise<Float32Array> => {
    const cIn = 1 / Math.sqrt(sigma * sigma + 1);
    const t = this.o.schedule.sigmaToT(sigma);
    // CompVisDenoiser (eps-prediction): denoised = x - sigma·eps.
    const out = await this.guided(x, cIn, t, sigma, (xv, e) => xv - sigma * e);
    const { initLatent, nmask } = this.o;
    if (initLatent && nmask) {
      for (let k = 0; k < out.length; k++) out[k] = initLatent[k]! * (1 - nmask[k]!) + nmask[k]! * out[k]!;
    }
    return out;
  };

  /** The timestep samplers' model function (DDIM, PLMS, UniPC): CFG on eps at model timestep t. */
  readonly epsModel = (x: Float32Array, t: number): Promise<Float32Array> =>
    this.guided(x, 1, t, 0, (_xv, e) => e);

  /**
   * The cond and uncond batches (padded to their longest), and both as one batch when their token
   * lengths agree. Built again only when prompt editing switches a conditioning.
   */
  private contextsFor(conds: TensorF32[], unconds: TensorF32[]) {
    const picked = [...conds, ...unconds];
    const last = this.contexts;
    if (last && last.picked.length === picked.length && last.picked.every((c, i) => c === picked[i]))
      return last;
    const cond = stackPadded(conds);
    const uncond = stackPadded(unconds);
    let joint: TensorF32 | undefined;
    if (cond.dims[1] === uncond.dims[1]) {
      joint = {
        data: new Float32Array(cond.data.length + uncond.data.length),
        dims: [conds.length + unconds.length, cond.dims[1]!, cond.dims[2]!],
      };
      joint.data.set(cond.data);
      joint.data.set(uncond.data, cond.data.length);
    }
    this.contexts = { picked, cond, uncond, joint };
    return this.contexts;
  }

  /** One guided prediction: every image with each AND part and its uncond, combined with CFG. */
  private async guided(
    x: Float32Array,
    cIn: number,
    t: number,
    sigma: number,
    toOut: (x: number, eps: number) => number,
  ): Promise<Float32Array> {
    const [c, h, w] = this.o.latentShape;
    const n = c * h * w;
    const images = this.o.images;
    const xs: Float32Array[] = [];
    const conds: TensorF32[] = [];
    const weights: { image: number; weight: number }[] = [];
    const condRows: number[] = [];
    images.forEach((img, i) => {
      const xi = x.subarray(i * n, (i + 1) * n);
      for (const part of img.parts) {
        xs.push(xi);
        condRows.push(i);
        conds.push(condAtStep(part.schedule, this.step));
        weights.push({ image: i, weight: part.weight });
      }
    });
    const unconds = images.map((img) => condAtStep(img.uncond, this.step));
    const { cond: condBatch, uncond: uncondBatch, joint } = this.contextsFor(conds, unconds);
    const uncondXs = images.map((_, i) => x.subarray(i * n, (i + 1) * n));
    const uncondRows = images.map((_, i) => i);
    let epsAll: Float32Array;
    if (joint) {
      epsAll = await this.eps([...xs, ...uncondXs], [...condRows, ...uncondRows], cIn, t, sigma, joint);
    } else {
      const epsCond = await this.eps(xs, condRows, cIn, t, sigma, condBatch);
      const epsUncond = await this.eps(uncondXs, uncondRows, cIn, t, sigma, uncondBatch);
      epsAll = new Float32Array(epsCond.length + epsUncond.length);
      epsAll.set(epsCond);
      epsAll.set(epsUncond, epsCond.length);
    }
    this.step++;
    // CFG on the model outputs (A1111 combine_denoised): out = u + Σ (c - u)·weight·scale.
    const out = new Float32Array(x.length);
    const nCond = xs.length;
    images.forEach((_, i) => {
      const ub = (nCond + i) * n;
      for (let k = 0; k < n; k++) out[i * n + k] = toOut(x[i * n + k]!, epsAll[ub + k]!);
    });
    weights.forEach(({ image, weight }, j) => {
      const cb = j * n;
      const ub = (nCond + image) * n;
      const s = weight * this.o.cfgScale;
      for (let k = 0; k < n; k++) {
        const xv = x[image * n + k]!;
        const dc = toOut(xv, epsAll[cb + k]!);
        const du = toOut(xv, epsAll[ub + k]!);
        out[image * n + k]! += (dc - du) * s;
      }
    });
    return out;
  }
}
