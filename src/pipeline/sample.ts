/**
 * One sampler run over a batch (A1111's `sample()` of one pass): plan the sigmas or timesteps,
 * start from noise (or noised init latents), the CFG denoiser around the UNet, and the sampler.
 *
 * The UNet is called through an explicit list of per-step hooks: each sees the inputs of every
 * UNet call before it runs (and may add to them: ControlNet residuals, hypernetwork K/V context,
 * or do work between steps: full/TAESD previews) and each finished sampler step. Generation,
 * previews and progress are hooks here; the coming add-ons plug in the same way.
 */
import type { UnetStepHook } from '../runtime/diffusion-model.js';
import type { Sd1Model, UNetInputs } from '../runtime/sd1.js';
import {
  planSampling,
  runSampler,
  startLatent,
  type SamplerOptions,
  type SamplingPlan,
} from '../sampling/index.js';
import { BrownianNoise, imageRngNoise } from '../sampling/noise.js';
import type { DiscreteSchedule } from '../sampling/schedules.js';
import type { ImageRng } from '../sampling/seeds.js';
import { UserError } from '../util/errors.js';
import { CfgDenoiser, type DenoiserOptions, type ImageConditioning } from './denoiser.js';
import { refinerGate, refinerStepGate } from './refiner.js';

export type Dims = [number, number, number, number];

/** Set from outside (another request, a signal handler) and checked before every UNet call. */
export interface StopFlags {
  interrupted: boolean;
  skipped: boolean;
}

/** A per-step hook of the UNet call (see the module comment; defined beside the model interface). */
export type { UnetStepHook };

/** What a pass needs of a model: the UNet, the noise schedule and what the UNet predicts. */
export interface SamplingModel {
  engine: Pick<Sd1Model, 'unet'>;
  schedule: DiscreteSchedule;
  /** Default 'eps'. */
  prediction?: 'eps' | 'v';
}

/**
 * An SDXL refiner for a pass (A1111 "Refiner"): its UNet takes over from the first model call whose
 * progress reaches `switchAt`, on its own conditioning (attached to `conds` as ScheduledCond.alt).
 */
export interface PassRefiner {
  engine: Pick<Sd1Model, 'unet'>;
  latentChannels: number;
  switchAt: number;
  /** Judge progress by model calls / steps (A1111 refiner_switch_by_sample_steps), not by sigma. */
  bySteps?: boolean;
  /** Told once, when the refiner takes over. */
  onSwitch: () => void;
}

export interface PassArgs {
  model: SamplingModel;
  refiner?: PassRefiner;
  sampler: string;
  scheduler?: string;
  steps: number;
  cfgScale: number;
  /** A1111 s_min_uncond ("NGMS"): skip the negative prompt below this sigma (0 = never). */
  sMinUncond?: number;
  /** A1111 "NGMS all steps": skip the negative prompt on every step below sMinUncond, not every other. */
  sMinUncondAll?: boolean;
  /** Per image of the batch: its prompt's AND parts and schedules, and the negative prompt's. */
  conds: ImageConditioning[];
  /** The batch's generators after the initial noise was drawn (ancestral/SDE noise continues them). */
  rng: ImageRng;
  seeds: readonly number[];
  /** img2img: the init latents the noise is added to; null for txt2img. */
  x0: Float32Array | null;
  noise: Float32Array;
  dims: Dims;
  denoisingStrength?: number;
  /** A1111 img2img_fix_steps (the hires pass runs exactly `steps`). */
  fixSteps?: boolean;
  /** Inpainting-model conditioning concatenated to x. */
  imageConditioning?: Float32Array;
  /** Inpaint: the original latents and the repaint mask, blended in after every step. */
  initLatent?: Float32Array;
  nmask?: Float32Array;
  /** Token merging in this pass's UNet calls (0 = off). */
  tokenMergeRatio?: number;
  samplerOptions?: SamplerOptions;
  hooks?: readonly UnetStepHook[];
  stop?: StopFlags;
  /** Every UNet call of the denoiser (A1111's model-call counter, level, t). */
  onModelCall?: DenoiserOptions['onModelCall'];
}

export interface PassResult {
  x: Float32Array;
  stopped?: 'interrupt' | 'skip';
  plan: SamplingPlan;
  /** The latent the sampler started from. */
  start: Float32Array;
}

export async function samplePass(a: PassArgs): Promise<PassResult> {
  const { model } = a;
  const [, c, h, w] = a.dims;
  const hooks = a.hooks ?? [];
  const plan = planSampling({
    sampler: a.sampler,
    scheduler: a.scheduler,
    steps: a.steps,
    schedule: model.schedule,
    denoisingStrength: a.denoisingStrength,
    img2imgFixSteps: a.fixSteps,
  });
  const x = startLatent(plan, a.noise, a.x0 ?? undefined, model.schedule.alphasCumprod);
  const start = x.slice();
  for (const hook of hooks) hook.start?.(plan);
  const refiner = a.refiner;
  if (refiner && refiner.latentChannels !== c) {
    throw new UserError(`the refiner has ${refiner.latentChannels} latent channels, this model ${c}`);
  }
  // The model-call counter of the denoiser (A1111's CFGDenoiser.step), for the by-steps switch.
  let callStep = 0;
  const totalSteps = plan.steps * (plan.sampler.secondOrder ? 2 : 1);
  const stepGate = refiner?.bySteps ? refinerStepGate(totalSteps, refiner.switchAt, refiner.onSwitch) : null;
  const gate = refiner
    ? stepGate
      ? () => stepGate(callStep)
      : refinerGate(model.schedule, refiner.switchAt, refiner.onSwitch)
    : null;
  const denoiser = new CfgDenoiser({
    unet: async (xt, t, context, y, alt) => {
      // SDXL refiner: from the switch on, its UNet runs on its own conditioning (ScheduledCond.alt).
      const refine = gate !== null && alt !== undefined && gate(t.data[0]!);
      const inputs: UNetInputs = refine
        ? { x: xt, t, context: alt.context, tokenMergeRatio: a.tokenMergeRatio ?? 0 }
        : { x: xt, t, context, tokenMergeRatio: a.tokenMergeRatio ?? 0 };
      const vector = refine ? alt.y : y;
      if (vector) inputs.y = vector;
      for (const hook of hooks) await hook.beforeUnet?.(inputs);
      return (refine ? refiner!.engine : model.engine).unet(inputs);
    },
    schedule: model.schedule,
    latentShape: [c, h, w],
    images: a.conds,
    cfgScale: a.cfgScale,
    cfgScaleMultiplier: plan.sampler.cfgScaleMultiplier,
    prediction: model.prediction ?? 'eps',
    lcm: plan.sampler.kind === 'lcm',
    sMinUncond: a.sMinUncond,
    sMinUncondAll: a.sMinUncondAll,
    imageConditioning: a.imageConditioning,
    initLatent: a.initLatent,
    nmask: a.nmask,
    onModelCall: (info) => {
      callStep = info.step;
      a.onModelCall?.(info);
    },
  });
  let brownian: BrownianNoise | undefined;
  if (plan.sampler.brownianNoise) {
    const positive = plan.sigmas.filter((s) => s > 0);
    brownian = new BrownianNoise(c * h * w, [...a.seeds], Math.min(...positive), Math.max(...positive));
  }
  const stop = a.stop;
  const r = await runSampler(
    plan,
    {
      model: denoiser.model,
      epsModel: denoiser.epsModel,
      lastUncond: denoiser.lastUncond,
      alphasCumprod: model.schedule.alphasCumprod,
      noise: imageRngNoise(a.rng, brownian),
      callback: (info) => {
        for (const hook of hooks) hook.afterStep?.(info);
      },
      shouldStop: () => (stop?.interrupted ? 'interrupt' : stop?.skipped ? 'skip' : null),
    },
    x,
    a.samplerOptions ?? {},
  );
  return { x: r.x, stopped: r.stopped, plan, start };
}

/** The arrays back to back. */
export function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
