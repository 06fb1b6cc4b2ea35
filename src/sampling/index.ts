/**
 * The sampler registry under A1111's display names, and the glue A1111 puts around a sampler:
 * which sigmas or timesteps it gets (txt2img and img2img), how the starting latent is made,
 * which eta it uses, and stopping early on interrupt / skip with the last denoised latent.
 */
import { UserError } from '../util/errors.js';
import { sampleDpmAdaptive, sampleDpmFast } from './samplers/dpmSolver.js';
import {
  sampleDpmpp2m,
  sampleDpmpp2mSde,
  sampleDpmpp2sAncestral,
  sampleDpmpp3mSde,
  sampleDpmppSde,
} from './samplers/dpmpp.js';
import {
  sampleDpm2,
  sampleDpm2Ancestral,
  sampleEuler,
  sampleEulerAncestral,
  sampleHeun,
} from './samplers/karras.js';
import { sampleLcm } from './samplers/lcm.js';
import { sampleLms } from './samplers/lms.js';
import { sampleRestart } from './samplers/restart.js';
import { sampleDdim, samplePlms } from './samplers/timesteps.js';
import { sampleUniPc, type UniPcSkipType, type UniPcVariant } from './samplers/unipc.js';
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

export type SamplerKind = 'k-diffusion' | 'timesteps' | 'lcm';

/** Options a sampler may take (A1111's names: eta, s_churn, s_tmin, s_tmax, s_noise, uni_pc_*). */
export interface SamplerOptions {
  eta?: number;
  sChurn?: number;
  sTmin?: number;
  sTmax?: number;
  sNoise?: number;
  uniPcVariant?: UniPcVariant;
  uniPcSkipType?: UniPcSkipType;
  uniPcOrder?: number;
  uniPcLowerOrderFinal?: boolean;
}

export interface SamplerInfo {
  label: string;
  aliases: readonly string[];
  kind: SamplerKind;
  /** k-diffusion function name (or A1111's) — for reference and infotext debugging. */
  functionName: string;
  /** The scheduler "Automatic" resolves to (A1111 option `scheduler`); none = the model's own sigmas. */
  scheduler?: SchedulerName;
  discardNextToLastSigma: boolean;
  secondOrder: boolean;
  usesEnsd: boolean;
  /** SDE samplers: noise from a Brownian tree per image seed instead of the image generator. */
  brownianNoise: boolean;
  solverType?: 'heun' | 'midpoint';
  /** Which of SamplerOptions it reads. */
  params: readonly (keyof SamplerOptions)[];
  /** The eta it runs with when none is given (A1111 eta_ancestral = 1, eta_ddim = 0); null = no eta. */
  etaDefault: number | null;
}

const CHURN: (keyof SamplerOptions)[] = ['sChurn', 'sTmin', 'sTmax', 'sNoise'];
const ANCESTRAL: (keyof SamplerOptions)[] = ['eta', 'sNoise'];

function kd(
  label: string,
  functionName: string,
  aliases: string[],
  o: Partial<Omit<SamplerInfo, 'label' | 'functionName' | 'aliases'>> = {},
): SamplerInfo {
  return {
    label,
    functionName,
    aliases,
    kind: 'k-diffusion',
    discardNextToLastSigma: false,
    secondOrder: false,
    usesEnsd: false,
    brownianNoise: false,
    params: [],
    etaDefault: null,
    ...o,
  };
}

/** A1111 1.10's sampler list, in its order. */
export const SAMPLERS: readonly SamplerInfo[] = [
  kd('DPM++ 2M', 'sample_dpmpp_2m', ['k_dpmpp_2m'], { scheduler: 'karras' }),
  kd('DPM++ SDE', 'sample_dpmpp_sde', ['k_dpmpp_sde'], {
    scheduler: 'karras',
    secondOrder: true,
    brownianNoise: true,
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('DPM++ 2M SDE', 'sample_dpmpp_2m_sde', ['k_dpmpp_2m_sde'], {
    scheduler: 'exponential',
    brownianNoise: true,
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('DPM++ 2M SDE Heun', 'sample_dpmpp_2m_sde', ['k_dpmpp_2m_sde_heun'], {
    scheduler: 'exponential',
    brownianNoise: true,
    solverType: 'heun',
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('DPM++ 2S a', 'sample_dpmpp_2s_ancestral', ['k_dpmpp_2s_a'], {
    scheduler: 'karras',
    usesEnsd: true,
    secondOrder: true,
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('DPM++ 3M SDE', 'sample_dpmpp_3m_sde', ['k_dpmpp_3m_sde'], {
    scheduler: 'exponential',
    discardNextToLastSigma: true,
    brownianNoise: true,
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('Euler a', 'sample_euler_ancestral', ['k_euler_a', 'k_euler_ancestral'], {
    usesEnsd: true,
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('Euler', 'sample_euler', ['k_euler'], { params: CHURN }),
  kd('LMS', 'sample_lms', ['k_lms']),
  kd('Heun', 'sample_heun', ['k_heun'], { secondOrder: true, params: CHURN }),
  kd('DPM2', 'sample_dpm_2', ['k_dpm_2'], {
    scheduler: 'karras',
    discardNextToLastSigma: true,
    secondOrder: true,
    params: CHURN,
  }),
  kd('DPM2 a', 'sample_dpm_2_ancestral', ['k_dpm_2_a'], {
    scheduler: 'karras',
    discardNextToLastSigma: true,
    usesEnsd: true,
    secondOrder: true,
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('DPM fast', 'sample_dpm_fast', ['k_dpm_fast'], { usesEnsd: true, params: ANCESTRAL, etaDefault: 1 }),
  kd('DPM adaptive', 'sample_dpm_adaptive', ['k_dpm_ad'], {
    usesEnsd: true,
    params: ANCESTRAL,
    etaDefault: 1,
  }),
  kd('Restart', 'restart_sampler', ['restart'], {
    scheduler: 'karras',
    secondOrder: true,
    params: ['sNoise'],
  }),
  {
    ...kd('DDIM', 'ddim', ['ddim'], { params: ['eta'], etaDefault: 0 }),
    kind: 'timesteps',
  },
  { ...kd('PLMS', 'plms', ['plms']), kind: 'timesteps' },
  {
    ...kd('UniPC', 'unipc', ['unipc'], {
      params: ['uniPcVariant', 'uniPcSkipType', 'uniPcOrder', 'uniPcLowerOrderFinal'],
    }),
    kind: 'timesteps',
  },
  { ...kd('LCM', 'sample_lcm', ['k_lcm']), kind: 'lcm' },
];

export interface ResolvedSampler {
  sampler: SamplerInfo;
  /** The scheduler implied by an old combined name ("DPM++ 2M Karras"), if any. */
  scheduler?: SchedulerName;
}

/**
 * A sampler by display name or alias, case-insensitive. Old combined names ("LMS Karras",
 * "DPM++ 2M SDE Exponential", alias "k_dpmpp_2m_ka") resolve to the sampler plus that scheduler,
 * as A1111 1.9+ does when reading old infotext.
 */
export function findSampler(name: string): ResolvedSampler | undefined {
  const key = name.trim().toLowerCase();
  const direct = SAMPLERS.find((s) => s.label.toLowerCase() === key || s.aliases.some((a) => a === key));
  if (direct) return { sampler: direct };
  for (const sch of SCHEDULERS) {
    const suffix = ' ' + sch.label.toLowerCase();
    if (sch.name !== 'automatic' && key.endsWith(suffix)) {
      const base = SAMPLERS.find((s) => s.label.toLowerCase() === key.slice(0, -suffix.length));
      if (base) return { sampler: base, scheduler: sch.name };
    }
  }
  if (key.endsWith('_ka')) {
    const base = findSampler(key.slice(0, -3));
    if (base) return { sampler: base.sampler, scheduler: 'karras' };
  }
  return undefined;
}

export function requireSampler(name: string): ResolvedSampler {
  const found = findSampler(name);
  if (!found) {
    throw new UserError(`unknown sampler "${name}"; available: ${SAMPLERS.map((s) => s.label).join(', ')}`);
  }
  return found;
}

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
    if (found.name !== 'automatic' || !impliedScheduler) scheduler = found.name;
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
  const eta = options.eta ?? s.etaDefault ?? 0;
  const sNoise = options.sNoise ?? 1;
  const churn = { sChurn: options.sChurn, sTmin: options.sTmin, sTmax: options.sTmax, sNoise };
  try {
    if (s.kind === 'timesteps') {
      if (!ctx.epsModel || !ctx.alphasCumprod)
        throw new Error(`${s.label} needs an eps model and alphas_cumprod`);
      const tctx = {
        model: guard(ctx.epsModel),
        noise: ctx.noise,
        alphasCumprod: ctx.alphasCumprod,
        callback,
      };
      if (s.label === 'DDIM') return { x: await sampleDdim(tctx, x, plan.timesteps, { eta }) };
      if (s.label === 'PLMS') return { x: await samplePlms(tctx, x, plan.timesteps) };
      return {
        x: await sampleUniPc(tctx, x, plan.timesteps, {
          variant: options.uniPcVariant,
          skipType: options.uniPcSkipType,
          order: options.uniPcOrder,
          lowerOrderFinal: options.uniPcLowerOrderFinal,
          isImg2img: plan.img2img,
        }),
      };
    }
    if (!ctx.model) throw new Error(`${s.label} needs a denoiser model`);
    const kctx = { model: guard(ctx.model), noise: ctx.noise, callback };
    const sig = plan.sigmas;
    const anc = { eta, sNoise };
    switch (s.functionName) {
      case 'sample_euler':
        return { x: await sampleEuler(kctx, x, sig, churn) };
      case 'sample_heun':
        return { x: await sampleHeun(kctx, x, sig, churn) };
      case 'sample_dpm_2':
        return { x: await sampleDpm2(kctx, x, sig, churn) };
      case 'sample_euler_ancestral':
        return { x: await sampleEulerAncestral(kctx, x, sig, anc) };
      case 'sample_dpm_2_ancestral':
        return { x: await sampleDpm2Ancestral(kctx, x, sig, anc) };
      case 'sample_lms':
        return { x: await sampleLms(kctx, x, sig) };
      case 'sample_dpmpp_2s_ancestral':
        return { x: await sampleDpmpp2sAncestral(kctx, x, sig, anc) };
      case 'sample_dpmpp_sde':
        return { x: await sampleDpmppSde(kctx, x, sig, anc) };
      case 'sample_dpmpp_2m':
        return { x: await sampleDpmpp2m(kctx, x, sig) };
      case 'sample_dpmpp_2m_sde':
        return {
          x: await sampleDpmpp2mSde(kctx, x, sig, { ...anc, solverType: s.solverType ?? 'midpoint' }),
        };
      case 'sample_dpmpp_3m_sde':
        return { x: await sampleDpmpp3mSde(kctx, x, sig, anc) };
      case 'sample_dpm_fast':
        return {
          x: await sampleDpmFast(kctx, x, {
            sigmaMin: plan.sigmaMin,
            sigmaMax: plan.sigmaMax,
            n: plan.n,
            ...anc,
          }),
        };
      case 'sample_dpm_adaptive':
        return {
          x: await sampleDpmAdaptive(kctx, x, { sigmaMin: plan.sigmaMin, sigmaMax: plan.sigmaMax, ...anc }),
        };
      case 'restart_sampler':
        return { x: await sampleRestart(kctx, x, sig, { sNoise }) };
      case 'sample_lcm':
        return { x: await sampleLcm(kctx, x, sig) };
      default:
        throw new Error(`sampler ${s.label} has no implementation`);
    }
  } catch (e) {
    if (e instanceof SamplingStopped) return { x: last, stopped: e.reason };
    throw e;
  }
}
