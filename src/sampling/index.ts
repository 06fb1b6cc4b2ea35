/**
 * The glue A1111 puts around a sampler: which sigmas or timesteps it gets (txt2img and img2img), how
 * the starting latent is made, which eta it uses, and stopping early on interrupt / skip with the last
 * denoised latent. The samplers themselves, with their metadata, are the registry (`registry.ts`).
 */
import { UserError } from '../util/errors.js';
import { requireSampler, type SamplerInfo, type SamplerOptions } from './registry.js';
import {
  a1111Sigmas,
  a1111Timesteps,
  findScheduler,
  img2imgSigmas,
  img2imgSteps,
  LcmSchedule,
  SCHEDULERS,
  type DiscreteSchedule,
  type ScheduleOptions,
  type SchedulerName,
} from './schedules.js';
import type { EpsModel, Model, NoiseSource, StepInfo } from './types.js';

export * from './types.js';
export * from './registry.js';

export interface PlanRequest {
  sampler: string;
  /** A1111's "Schedule type" (label or name); default Automatic. */
  scheduler?: string;
  steps: number;
  /** The model's noise schedule (from its alphas_cumprod). */
  schedule: DiscreteSchedule;
  scheduleOptions?: ScheduleOptions & { alwaysDiscardNextToLastSigma?: boolean };
  /** img2img: the denoising strength (omit for txt2img). */
  denoisingStrength?: number;
  /** A1111 setting img2img_fix_steps: run exactly `steps` steps whatever the strength. */
  img2imgFixSteps?: boolean;
}

/** Everything about a run that A1111 decides before calling the sampler. */
export interface SamplingPlan {
  sampler: SamplerInfo;
  scheduler: SchedulerName;
  /** k-diffusion / LCM: the sigmas to walk (img2img: the cut tail). */
  sigmas: number[];
  /** Timestep samplers: the model timesteps (img2img: the first t_enc of them). */
  timesteps: number[];
  img2img: boolean;
  /** img2img with timestep samplers: the timestep whose alpha noises the init latent. */
  img2imgTimestep?: number;
  /** DPM fast / adaptive arguments. */
  sigmaMin: number;
  sigmaMax: number;
  n: number;
  /** Number of steps for progress (A1111's sampling_steps). */
  steps: number;
}

/** A1111's sample / sample_img2img preparation for any sampler. */
export function planSampling(req: PlanRequest): SamplingPlan {
  const { sampler, scheduler: impliedScheduler } = requireSampler(req.sampler);
  let scheduler: SchedulerName = impliedScheduler ?? 'automatic';
  if (req.scheduler !== undefined && req.scheduler !== '') {
    const found = findScheduler(req.scheduler);
    if (!found) {
      throw new UserError(
        `unknown schedule type "${req.scheduler}"; available: ${SCHEDULERS.map((s) => s.label).join(', ')}`,
      );
    }
    // An old combined name's schedule ("DPM++ 2M Karras") wins, as in A1111's get_sampler_and_scheduler.
    if (!impliedScheduler) scheduler = found.name;
  }
  const img2img = req.denoisingStrength !== undefined;
  const { steps, tEnc } = img2img
    ? img2imgSteps(req.steps, req.denoisingStrength!, req.img2imgFixSteps)
    : { steps: req.steps, tEnc: req.steps - 1 };
  if (!Number.isSafeInteger(steps) || steps < 1 || steps > 10000) {
    throw new UserError(`steps must be an integer between 1 and 10000, got ${req.steps}`);
  }
  const discard = Boolean(
    sampler.discardNextToLastSigma || req.scheduleOptions?.alwaysDiscardNextToLastSigma,
  );
  const base = { sampler, scheduler, img2img, timesteps: [] as number[], sigmas: [] as number[] };
  if (sampler.kind === 'timesteps') {
    const all = a1111Timesteps(steps + (discard ? 1 : 0), req.schedule.sigmas.length);
    if (!img2img) return { ...base, timesteps: all, sigmaMin: 0, sigmaMax: 0, n: all.length, steps };
    const cut = Math.min(tEnc, all.length - 1);
    const timesteps = all.slice(0, cut);
    return {
      ...base,
      timesteps,
      img2imgTimestep: all[cut],
      sigmaMin: 0,
      sigmaMax: 0,
      n: timesteps.length,
      steps,
    };
  }
  // LCM samples with A1111's LCMCompVisDenoiser, whose 50-step table every scheduler then works on.
  const sigmaModel = sampler.kind === 'lcm' ? new LcmSchedule(req.schedule.alphasCumprod) : req.schedule;
  const sigmas = a1111Sigmas(sigmaModel, {
    ...req.scheduleOptions,
    steps,
    scheduler,
    samplerScheduler: sampler.scheduler,
    discardNextToLastSigma: sampler.discardNextToLastSigma,
  });
  if (!img2img) {
    return {
      ...base,
      sigmas,
      sigmaMin: sigmaModel.sigmaMin,
      sigmaMax: sigmaModel.sigmaMax,
      n: steps,
      steps,
    };
  }
  const sched = img2imgSigmas(sigmas, steps, tEnc);
  return {
    ...base,
    sigmas: sched,
    sigmaMin: sched[sched.length - 2] ?? sched[0]!,
    sigmaMax: sched[0]!,
    n: sched.length - 1,
    steps: tEnc + 1,
  };
}

/**
 * The latent the sampler starts from. txt2img: unit noise × sigmas[0] (timestep samplers: the noise
 * itself). img2img: init + noise × sigma_sched[0], or √ᾱ·init + √(1-ᾱ)·noise for timestep samplers.
 */
export function startLatent(
  plan: SamplingPlan,
  noise: Float32Array,
  init?: Float32Array,
  alphasCumprod?: Float32Array,
): Float32Array {
  const out = new Float32Array(noise.length);
  if (plan.sampler.kind === 'timesteps') {
    if (!plan.img2img) return noise.slice();
    if (!init || !alphasCumprod || plan.img2imgTimestep === undefined) {
      throw new Error('img2img with a timestep sampler needs the init latent and alphas_cumprod');
    }
    const a = alphasCumprod[plan.img2imgTimestep]!;
    for (let i = 0; i < out.length; i++) out[i] = Math.sqrt(a) * init[i]! + Math.sqrt(1 - a) * noise[i]!;
    return out;
  }
  const s0 = plan.sigmas[0]!;
  if (!plan.img2img) {
    for (let i = 0; i < out.length; i++) out[i] = noise[i]! * s0;
    return out;
  }
  if (!init) throw new Error('img2img needs the init latent');
  for (let i = 0; i < out.length; i++) out[i] = init[i]! + noise[i]! * s0;
  return out;
}

/** Why a run ended early: A1111's "Interrupt" (stop the job) or "Skip" (finish this image). */
export type StopReason = 'interrupt' | 'skip';

export class SamplingStopped extends Error {
  constructor(readonly reason: StopReason) {
    super(`sampling stopped: ${reason}`);
    this.name = 'SamplingStopped';
  }
}

export interface RunContext {
  /** k-diffusion / LCM samplers: the x0 denoiser (CFG already applied). */
  model?: Model;
  /** Timestep samplers: the eps predictor (CFG already applied). */
  epsModel?: EpsModel;
  /** The unconditional eps of epsModel's last call (DDIM CFG++). */
  lastUncond?: () => Float32Array | undefined;
  alphasCumprod?: Float32Array;
  noise: NoiseSource;
  callback?: (info: StepInfo) => void;
  /** Checked before every model call; a reason stops the run. */
  shouldStop?: () => StopReason | null | undefined | false;
}

export interface RunResult {
  x: Float32Array;
  /** Set when the run stopped early; x is then the last denoised latent, as A1111 returns it. */
  stopped?: StopReason;
}

/** Run a planned sampler from latent x. */
export async function runSampler(
  plan: SamplingPlan,
  ctx: RunContext,
  x: Float32Array,
  options: SamplerOptions = {},
): Promise<RunResult> {
  const s = plan.sampler;
  let last = x;
  const guard = <A extends unknown[]>(fn: (...a: A) => Promise<Float32Array>) => {
    return (...a: A): Promise<Float32Array> => {
      const reason = ctx.shouldStop?.();
      if (reason) throw new SamplingStopped(reason);
      return fn(...a);
    };
  };
  const callback = (info: StepInfo): void => {
    last = info.denoised;
    ctx.callback?.(info);
  };
  try {
    const out = await s.sample(
      {
        model: ctx.model && guard(ctx.model),
        epsModel: ctx.epsModel && guard(ctx.epsModel),
        lastUncond: ctx.lastUncond,
        alphasCumprod: ctx.alphasCumprod,
        noise: ctx.noise,
        callback,
        sigmas: plan.sigmas,
        timesteps: plan.timesteps,
        img2img: plan.img2img,
        sigmaMin: plan.sigmaMin,
        sigmaMax: plan.sigmaMax,
        n: plan.n,
        eta: options.eta ?? s.etaDefault ?? 0,
        options,
      },
      x,
    );
    return { x: out };
  } catch (e) {
    if (e instanceof SamplingStopped) return { x: last, stopped: e.reason };
    throw e;
  }
}
