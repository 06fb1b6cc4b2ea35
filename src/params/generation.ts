/**
 * GenerationParams: the one request shape every front door (API JSON, UI form, CLI flags, an
 * infotext read back from a PNG) hands to the pipeline. Field names and defaults are those of
 * A1111's /sdapi/v1/txt2img and /img2img request bodies (v1.10.1), so API JSON maps 1:1. The shape
 * is the field table (fields.ts) as a TypeBox schema (schema.ts); this module gathers what the
 * pipeline reads off a request (clip skip, ENSD, seeds, …).
 */
import { EMPHASIS_MODES, HIRES_REFINER_PASSES, MAX_TOKEN_MERGE_RATIO } from './catalog.js';
import type { GenerationParams } from './schema.js';

export {
  SAMPLERS,
  SCHEDULERS,
  LATENT_UPSCALE_MODES,
  IMAGE_UPSCALERS,
  MASKED_CONTENT,
  RESIZE_MODES,
  EMPHASIS_MODES,
  RANDN_SOURCES,
  LIMITS,
  MAX_SEED,
  MAX_TOKEN_MERGE_RATIO,
  samplerCatalog,
  findSamplerInfo,
  findSchedulerInfo,
  checkScheduler,
  resolveSampler,
  closestName,
  didYouMean,
  type SamplerInfo,
  type ResolvedSampler,
} from './catalog.js';
export type { GenerationParams, OverrideSettings, GenerationRequest } from './schema.js';
export {
  defaultParams,
  uiDefaults,
  withDefaults,
  validateParams,
  validateGenerationRequest,
  a1111ValidationDetail,
  hiresTargetSize,
  ParamsError,
  type FieldError,
  type HiresTarget,
  type ValidationResult,
  type WithDefaultsOptions,
} from './validate.js';

/** Clip skip in force (1 = none). */
export function clipSkipOf(p: GenerationParams): number {
  const v = Number(p.override_settings.CLIP_stop_at_last_layers ?? 1);
  return Number.isInteger(v) && v >= 1 ? v : 1;
}

/** A1111's `inpainting_mask_weight` in force (0 … 1, default 1). */
export function inpaintingMaskWeightOf(p: GenerationParams): number {
  const v = Number(p.override_settings.inpainting_mask_weight ?? 1);
  return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 1;
}

/** A1111's `sdxl_clip_l_skip` setting: clip skip also applies to SDXL's CLIP-L. */
export function sdxlClipLSkipOf(p: GenerationParams): boolean {
  const v: unknown = p.override_settings.sdxl_clip_l_skip;
  return v === true || v === 'True' || v === 'true';
}

/** A1111's `hires_fix_refiner_pass`: "second pass" (default), "first pass" or "both passes". */
export function hiresRefinerPassOf(p: GenerationParams): (typeof HIRES_REFINER_PASSES)[number] {
  const v = p.override_settings.hires_fix_refiner_pass;
  return HIRES_REFINER_PASSES.find((x) => x === v) ?? 'second pass';
}

/** A1111's `refiner_switch_by_sample_steps` setting. */
export function refinerSwitchByStepsOf(p: GenerationParams): boolean {
  const v: unknown = p.override_settings.refiner_switch_by_sample_steps;
  return v === true || v === 'True' || v === 'true';
}

export function ensdOf(p: GenerationParams): number {
  const v = Number(p.override_settings.eta_noise_seed_delta ?? 0);
  return Number.isInteger(v) ? v : 0;
}

type TokenMergingSetting = 'token_merging_ratio' | 'token_merging_ratio_img2img' | 'token_merging_ratio_hr';

/**
 * The token merging ratio of one sampling pass, as A1111's get_token_merging_ratio picks it: the
 * hires pass takes token_merging_ratio_hr, else the base ratio; img2img its own setting unless the
 * job sets the base one.
 */
export function tokenMergingRatioOf(p: GenerationParams, pass: 'txt2img' | 'hires' | 'img2img'): number {
  const o = p.override_settings;
  const v = (key: TokenMergingSetting) => {
    const n = Number(o[key] ?? 0);
    return Number.isFinite(n) && n > 0 ? Math.min(n, MAX_TOKEN_MERGE_RATIO) : 0;
  };
  if (pass === 'hires') return v('token_merging_ratio_hr') || v('token_merging_ratio');
  if (pass === 'img2img') return v('token_merging_ratio') || v('token_merging_ratio_img2img');
  return v('token_merging_ratio');
}

export function randnSourceOf(p: GenerationParams): 'GPU' | 'CPU' | 'NV' {
  const v = p.override_settings.randn_source;
  return v === 'CPU' || v === 'NV' ? v : 'GPU';
}

/**
 * A1111's s_min_uncond ("NGMS") in force: the request's field, else the setting, else 0 (as
 * A1111's `p.s_min_uncond if not None else opts.s_min_uncond`).
 */
export function sMinUncondOf(p: GenerationParams): number {
  const v = p.s_min_uncond ?? Number(p.override_settings.s_min_uncond ?? 0);
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/** A1111's s_min_uncond_all setting ("NGMS all steps"): skip the uncond on every step, not alternate ones. */
export function sMinUncondAllOf(p: GenerationParams): boolean {
  const v: unknown = p.override_settings.s_min_uncond_all;
  return v === true || v === 'True' || v === 'true';
}

/** A1111's `emphasis` setting in force: "Original" (default), "No norm", "Ignore" or "None". */
export function emphasisOf(p: GenerationParams): (typeof EMPHASIS_MODES)[number] {
  const v = p.override_settings.emphasis;
  return EMPHASIS_MODES.find((m) => m === v) ?? 'Original';
}

/** A1111 get_fixed_seed: -1 becomes a random seed in [0, 4294967294). */
export function fixSeed(seed: number, random: () => number = Math.random): number {
  return seed === -1 ? Math.floor(random() * 4294967294) : seed;
}

/** The seeds of every image of a job (A1111 all_seeds / all_subseeds): seed+i, or seed for all with variations. */
export function jobSeeds(
  params: GenerationParams,
  seed: number,
  subseed: number,
): { seeds: number[]; subseeds: number[] } {
  const n = params.batch_size * params.n_iter;
  const seeds: number[] = [];
  const subseeds: number[] = [];
  for (let i = 0; i < n; i++) {
    seeds.push(seed + (params.subseed_strength === 0 ? i : 0));
    subseeds.push(subseed + i);
  }
  return { seeds, subseeds };
}
