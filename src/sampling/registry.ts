/**
 * The one sampler and scheduler registry. Every sampler A1111 1.10 offers, in its order, with the
 * function that runs it and the metadata A1111 keeps beside it (label, aliases, the options dict its
 * /sdapi/v1/samplers reports, eta default, which SamplerOptions it reads). Validation, generation,
 * infotext writing and metadata reading all resolve a name once here (`resolveSampler`), case-
 * insensitively; the API serves `samplersForApi()` / `schedulersForApi()` as they are.
 *
 * No Node imports: the browser's form can use the same table.
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
import { sampleDdim, sampleDdimCfgpp, samplePlms } from './samplers/timesteps.js';
import { sampleUniPc, type UniPcSkipType, type UniPcVariant } from './samplers/unipc.js';
import { findScheduler, SCHEDULERS, type SchedulerInfo, type SchedulerName } from './schedules.js';
import type {
  EpsModel,
  Model,
  NoiseSource,
  SamplerContext,
  StepInfo,
  TimestepSamplerContext,
} from './types.js';

export { findScheduler, SCHEDULERS, type SchedulerInfo, type SchedulerName } from './schedules.js';

/**
 * Which denoiser a sampler calls: k-diffusion's x0 denoiser over sigmas, A1111's timestep eps
 * predictor (DDIM, PLMS, UniPC), or A1111's LCM denoiser (quantised timestep, boundary condition).
 */
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

/** Everything a sampler function gets for one run (planned by `planSampling`). */
export interface SamplerCall {
  /** k-diffusion / LCM samplers: the x0 denoiser (CFG applied, stop checks wrapped). */
  model?: Model;
  /** Timestep samplers: the eps predictor (CFG applied, stop checks wrapped). */
  epsModel?: EpsModel;
  /** The unconditional eps of epsModel's last call (DDIM CFG++). */
  lastUncond?: () => Float32Array | undefined;
  alphasCumprod?: Float32Array;
  noise: NoiseSource;
  callback: (info: StepInfo) => void;
  /** k-diffusion / LCM: the sigmas to walk. */
  sigmas: readonly number[];
  /** Timestep samplers: the model timesteps. */
  timesteps: readonly number[];
  img2img: boolean;
  /** DPM fast / adaptive: the range and step count. */
  sigmaMin: number;
  sigmaMax: number;
  n: number;
  /** The eta in force (the request's, else the sampler's default, else 0). */
  eta: number;
  options: SamplerOptions;
}

export type SamplerFunction = (call: SamplerCall, x: Float32Array) => Promise<Float32Array>;

/** A1111's per-sampler options dict (the `options` of /sdapi/v1/samplers, before stringifying). */
export interface A1111SamplerOptions {
  scheduler?: SchedulerName;
  discard_next_to_last_sigma?: boolean;
  second_order?: boolean;
  uses_ensd?: boolean;
  brownian_noise?: boolean;
  solver_type?: 'heun' | 'midpoint';
}

export interface SamplerInfo {
  /** A1111 display name, written to the infotext as "Sampler". */
  label: string;
  aliases: readonly string[];
  kind: SamplerKind;
  /** k-diffusion function name (or A1111's) — for reference and infotext debugging. */
  functionName: string;
  /** A1111's options dict, in its key order. The fields below are read from it. */
  options: Readonly<A1111SamplerOptions>;
  /** The scheduler "Automatic" resolves to (A1111 option `scheduler`); none = the model's own sigmas. */
  scheduler?: SchedulerName;
  discardNextToLastSigma: boolean;
  /** Two model calls per step: A1111 doubles the prompt-editing step count for these. */
  secondOrder: boolean;
  /** Its per-step noise is shifted by ENSD (eta_noise_seed_delta). */
  usesEnsd: boolean;
  /** SDE samplers: noise from a Brownian tree per image seed instead of the image generator. */
  brownianNoise: boolean;
  solverType?: 'heun' | 'midpoint';
  /** Which of SamplerOptions it reads. */
  params: readonly (keyof SamplerOptions)[];
  /** The eta it runs with when none is given (A1111 eta_ancestral = 1, eta_ddim = 0); null = no eta. */
  etaDefault: number | null;
  /** The infotext key A1111 writes a non-default eta under ("Eta", "Eta DDIM"); null = no eta. */
  etaInfotextKey: string | null;
  /**
   * What the CFG denoiser multiplies the CFG scale by while this sampler runs (A1111's
   * `cond_scale_miltiplier`: 1, or 1/12.5 for DDIM CFG++). The infotext keeps the scale asked for.
   */
  cfgScaleMultiplier: number;
  /** Runs the sampler. */
  sample: SamplerFunction;
}

const CHURN: (keyof SamplerOptions)[] = ['sChurn', 'sTmin', 'sTmax', 'sNoise'];
const ANCESTRAL: (keyof SamplerOptions)[] = ['eta', 'sNoise'];

function kctx(call: SamplerCall, label: string): SamplerContext {
  if (!call.model) throw new Error(`${label} needs a denoiser model`);
  return { model: call.model, noise: call.noise, callback: call.callback };
}

function tctx(call: SamplerCall, label: string): TimestepSamplerContext {
  if (!call.epsModel || !call.alphasCumprod)
    throw new Error(`${label} needs an eps model and alphas_cumprod`);
  return {
    model: call.epsModel,
    noise: call.noise,
    alphasCumprod: call.alphasCumprod,
    callback: call.callback,
    lastUncond: call.lastUncond,
  };
}

const churn = (c: SamplerCall) => ({
  sChurn: c.options.sChurn,
  sTmin: c.options.sTmin,
  sTmax: c.options.sTmax,
  sNoise: c.options.sNoise ?? 1,
});
const ancestral = (c: SamplerCall) => ({ eta: c.eta, sNoise: c.options.sNoise ?? 1 });

interface EntrySpec {
  label: string;
  functionName: string;
  aliases: string[];
  kind?: SamplerKind;
  options?: A1111SamplerOptions;
  params?: (keyof SamplerOptions)[];
  etaDefault?: number | null;
  etaInfotextKey?: string | null;
  cfgScaleMultiplier?: number;
  sample: (call: SamplerCall, x: Float32Array, label: string) => Promise<Float32Array>;
}

function entry(spec: EntrySpec): SamplerInfo {
  const o = spec.options ?? {};
  const etaDefault = spec.etaDefault ?? null;
  return {
    label: spec.label,
    aliases: spec.aliases,
    kind: spec.kind ?? 'k-diffusion',
    functionName: spec.functionName,
    options: o,
    scheduler: o.scheduler,
    discardNextToLastSigma: o.discard_next_to_last_sigma ?? false,
    secondOrder: o.second_order ?? false,
    usesEnsd: o.uses_ensd ?? false,
    brownianNoise: o.brownian_noise ?? false,
    solverType: o.solver_type,
    params: spec.params ?? [],
    etaDefault,
    etaInfotextKey: spec.etaInfotextKey ?? (etaDefault === null ? null : 'Eta'),
    cfgScaleMultiplier: spec.cfgScaleMultiplier ?? 1,
    sample: (call, x) => spec.sample(call, x, spec.label),
  };
}

/** A1111 1.10's sampler list, in its order. */
export const SAMPLERS: readonly SamplerInfo[] = [
  entry({
    label: 'DPM++ 2M',
    functionName: 'sample_dpmpp_2m',
    aliases: ['k_dpmpp_2m'],
    options: { scheduler: 'karras' },
    sample: (c, x, l) => sampleDpmpp2m(kctx(c, l), x, c.sigmas),
  }),
  entry({
    label: 'DPM++ SDE',
    functionName: 'sample_dpmpp_sde',
    aliases: ['k_dpmpp_sde'],
    options: { scheduler: 'karras', second_order: true, brownian_noise: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) => sampleDpmppSde(kctx(c, l), x, c.sigmas, ancestral(c)),
  }),
  entry({
    label: 'DPM++ 2M SDE',
    functionName: 'sample_dpmpp_2m_sde',
    aliases: ['k_dpmpp_2m_sde'],
    options: { scheduler: 'exponential', brownian_noise: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) =>
      sampleDpmpp2mSde(kctx(c, l), x, c.sigmas, { ...ancestral(c), solverType: 'midpoint' }),
  }),
  entry({
    label: 'DPM++ 2M SDE Heun',
    functionName: 'sample_dpmpp_2m_sde',
    aliases: ['k_dpmpp_2m_sde_heun'],
    options: { scheduler: 'exponential', brownian_noise: true, solver_type: 'heun' },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) => sampleDpmpp2mSde(kctx(c, l), x, c.sigmas, { ...ancestral(c), solverType: 'heun' }),
  }),
  entry({
    label: 'DPM++ 2S a',
    functionName: 'sample_dpmpp_2s_ancestral',
    aliases: ['k_dpmpp_2s_a'],
    options: { scheduler: 'karras', uses_ensd: true, second_order: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) => sampleDpmpp2sAncestral(kctx(c, l), x, c.sigmas, ancestral(c)),
  }),
  entry({
    label: 'DPM++ 3M SDE',
    functionName: 'sample_dpmpp_3m_sde',
    aliases: ['k_dpmpp_3m_sde'],
    options: { scheduler: 'exponential', discard_next_to_last_sigma: true, brownian_noise: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) => sampleDpmpp3mSde(kctx(c, l), x, c.sigmas, ancestral(c)),
  }),
  entry({
    label: 'Euler a',
    functionName: 'sample_euler_ancestral',
    aliases: ['k_euler_a', 'k_euler_ancestral'],
    options: { uses_ensd: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) => sampleEulerAncestral(kctx(c, l), x, c.sigmas, ancestral(c)),
  }),
  entry({
    label: 'Euler',
    functionName: 'sample_euler',
    aliases: ['k_euler'],
    params: CHURN,
    sample: (c, x, l) => sampleEuler(kctx(c, l), x, c.sigmas, churn(c)),
  }),
  entry({
    label: 'LMS',
    functionName: 'sample_lms',
    aliases: ['k_lms'],
    sample: (c, x, l) => sampleLms(kctx(c, l), x, c.sigmas),
  }),
  entry({
    label: 'Heun',
    functionName: 'sample_heun',
    aliases: ['k_heun'],
    options: { second_order: true },
    params: CHURN,
    sample: (c, x, l) => sampleHeun(kctx(c, l), x, c.sigmas, churn(c)),
  }),
  entry({
    label: 'DPM2',
    functionName: 'sample_dpm_2',
    aliases: ['k_dpm_2'],
    options: { scheduler: 'karras', discard_next_to_last_sigma: true, second_order: true },
    params: CHURN,
    sample: (c, x, l) => sampleDpm2(kctx(c, l), x, c.sigmas, churn(c)),
  }),
  entry({
    label: 'DPM2 a',
    functionName: 'sample_dpm_2_ancestral',
    aliases: ['k_dpm_2_a'],
    options: { scheduler: 'karras', discard_next_to_last_sigma: true, uses_ensd: true, second_order: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) => sampleDpm2Ancestral(kctx(c, l), x, c.sigmas, ancestral(c)),
  }),
  entry({
    label: 'DPM fast',
    functionName: 'sample_dpm_fast',
    aliases: ['k_dpm_fast'],
    options: { uses_ensd: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) =>
      sampleDpmFast(kctx(c, l), x, { sigmaMin: c.sigmaMin, sigmaMax: c.sigmaMax, n: c.n, ...ancestral(c) }),
  }),
  entry({
    label: 'DPM adaptive',
    functionName: 'sample_dpm_adaptive',
    aliases: ['k_dpm_ad'],
    options: { uses_ensd: true },
    params: ANCESTRAL,
    etaDefault: 1,
    sample: (c, x, l) =>
      sampleDpmAdaptive(kctx(c, l), x, { sigmaMin: c.sigmaMin, sigmaMax: c.sigmaMax, ...ancestral(c) }),
  }),
  entry({
    label: 'Restart',
    functionName: 'restart_sampler',
    aliases: ['restart'],
    options: { scheduler: 'karras', second_order: true },
    params: ['sNoise'],
    sample: (c, x, l) => sampleRestart(kctx(c, l), x, c.sigmas, { sNoise: c.options.sNoise ?? 1 }),
  }),
  entry({
    label: 'DDIM',
    functionName: 'ddim',
    aliases: ['ddim'],
    kind: 'timesteps',
    params: ['eta'],
    etaDefault: 0,
    etaInfotextKey: 'Eta DDIM',
    sample: (c, x, l) => sampleDdim(tctx(c, l), x, c.timesteps, { eta: c.eta }),
  }),
  entry({
    label: 'DDIM CFG++',
    functionName: 'ddim_cfgpp',
    aliases: ['ddim_cfgpp'],
    kind: 'timesteps',
    params: ['eta'],
    etaDefault: 0,
    etaInfotextKey: 'Eta DDIM',
    cfgScaleMultiplier: 1 / 12.5,
    sample: (c, x, l) => sampleDdimCfgpp(tctx(c, l), x, c.timesteps, { eta: c.eta }),
  }),
  entry({
    label: 'PLMS',
    functionName: 'plms',
    aliases: ['plms'],
    kind: 'timesteps',
    sample: (c, x, l) => samplePlms(tctx(c, l), x, c.timesteps),
  }),
  entry({
    label: 'UniPC',
    functionName: 'unipc',
    aliases: ['unipc'],
    kind: 'timesteps',
    params: ['uniPcVariant', 'uniPcSkipType', 'uniPcOrder', 'uniPcLowerOrderFinal'],
    sample: (c, x, l) =>
      sampleUniPc(tctx(c, l), x, c.timesteps, {
        variant: c.options.uniPcVariant,
        skipType: c.options.uniPcSkipType,
        order: c.options.uniPcOrder,
        lowerOrderFinal: c.options.uniPcLowerOrderFinal,
        isImg2img: c.img2img,
      }),
  }),
  entry({
    label: 'LCM',
    functionName: 'sample_lcm',
    aliases: ['k_lcm'],
    kind: 'lcm',
    sample: (c, x, l) => sampleLcm(kctx(c, l), x, c.sigmas),
  }),
];

const norm = (s: string): string => s.trim().toLowerCase();

/** A scheduler, or a UserError naming `field` and the choices. */
export function requireScheduler(nameOrLabel: string, field = 'scheduler'): SchedulerInfo {
  const found = findScheduler(nameOrLabel);
  if (!found) {
    throw new UserError(
      `${field} "${nameOrLabel}" is unknown; use one of ${SCHEDULERS.map((s) => s.label).join(', ')}`,
    );
  }
  return found;
}

const exact = (name: string): SamplerInfo | undefined => {
  const key = norm(name);
  return SAMPLERS.find((s) => norm(s.label) === key || s.aliases.some((a) => norm(a) === key));
};

export interface FoundSampler {
  sampler: SamplerInfo;
  /** The scheduler implied by an old combined name ("DPM++ 2M Karras"), if any. */
  scheduler?: SchedulerName;
}

/**
 * A sampler by display name or alias, case-insensitive. Old combined names ("LMS Karras",
 * "DPM++ 2M SDE Exponential", "Euler SGMUniform", alias "k_dpmpp_2m_ka") resolve to the sampler plus
 * that scheduler, as A1111 1.9+ does (`get_sampler_and_scheduler`).
 */
export function findSampler(name: string): FoundSampler | undefined {
  const direct = exact(name);
  if (direct) return { sampler: direct };
  const key = norm(name);
  for (const sch of SCHEDULERS) {
    if (sch.name === 'automatic') continue;
    for (const suffix of [sch.label, ...sch.aliases]) {
      const tail = ' ' + norm(suffix);
      if (!key.endsWith(tail)) continue;
      const base = exact(key.slice(0, -tail.length));
      if (base) return { sampler: base, scheduler: sch.name };
    }
  }
  if (key.endsWith('_ka')) {
    const base = exact(key.slice(0, -3));
    if (base) return { sampler: base, scheduler: 'karras' };
  }
  return undefined;
}

/** A sampler, or a UserError naming `field` and the choices. */
export function requireSampler(name: string, field = 'sampler'): FoundSampler {
  const found = findSampler(name);
  if (!found) {
    throw new UserError(`unknown ${field} "${name}"; available: ${SAMPLERS.map((s) => s.label).join(', ')}`);
  }
  return found;
}

/** A request's sampler and schedule type, resolved once. */
export interface SamplerChoice {
  sampler: SamplerInfo;
  /** The schedule type asked for (an old combined name's suffix wins, as in A1111). */
  scheduler: SchedulerInfo;
  /** "Automatic" resolved to the sampler's default: what runs, and the infotext's "Schedule type". */
  effectiveScheduler: SchedulerInfo;
}

/**
 * A1111's `get_sampler_and_scheduler`: the sampler by name or alias (case-insensitive), a combined
 * "<sampler> <schedule>" name's suffix taking precedence over `scheduler`. Unlike A1111 (which falls
 * back to its first sampler) an unknown name is a UserError: a silent fallback gives a different
 * image than asked for; the API's drop-in fallback is the caller's choice.
 */
export function resolveSampler(
  samplerName: string,
  scheduler = 'Automatic',
  field = 'sampler_name',
): SamplerChoice {
  const found = findSampler(samplerName);
  if (!found) {
    throw new UserError(
      `${field} "${samplerName}" is unknown; use one of ${SAMPLERS.map((s) => s.label).join(', ')}`,
    );
  }
  const asked = found.scheduler
    ? requireScheduler(found.scheduler)
    : requireScheduler(scheduler === '' ? 'automatic' : scheduler);
  const effective =
    asked.name === 'automatic' && found.sampler.scheduler ? requireScheduler(found.sampler.scheduler) : asked;
  return { sampler: found.sampler, scheduler: asked, effectiveScheduler: effective };
}

/** One item of A1111's GET /sdapi/v1/samplers. */
export interface ApiSampler {
  name: string;
  aliases: string[];
  /** Values as strings, as A1111's response model coerces them (booleans become "True"). */
  options: Record<string, string>;
}

/** One item of A1111's GET /sdapi/v1/schedulers. */
export interface ApiScheduler {
  name: string;
  label: string;
  aliases: string[] | null;
  default_rho: number;
  need_inner_model: boolean;
}

const pyStr = (v: unknown): string => (v === true ? 'True' : v === false ? 'False' : String(v));

/** GET /sdapi/v1/samplers, A1111's shape and order. */
export function samplersForApi(): ApiSampler[] {
  return SAMPLERS.map((s) => ({
    name: s.label,
    aliases: [...s.aliases],
    options: Object.fromEntries(Object.entries(s.options).map(([k, v]) => [k, pyStr(v)])),
  }));
}

/** GET /sdapi/v1/schedulers, A1111's shape and order (aliases null where A1111 has none). */
export function schedulersForApi(): ApiScheduler[] {
  return SCHEDULERS.map((s) => ({
    name: s.name,
    label: s.label,
    aliases: s.aliases.length ? [...s.aliases] : null,
    default_rho: s.defaultRho,
    need_inner_model: s.needInnerModel,
  }));
}
