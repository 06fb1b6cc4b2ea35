/**
 * GenerationParams: the one request shape every front door (API JSON, UI form, CLI flags, an
 * infotext read back from a PNG) hands to the pipeline. Field names and defaults are those of
 * A1111's /sdapi/v1/txt2img and /img2img request bodies (v1.10.1), so API JSON maps 1:1.
 */
import { MAX_TOKEN_MERGE_RATIO } from '../models/token-merging.js';
import {
  findScheduler as findRegistryScheduler,
  requireScheduler,
  resolveSampler as resolveRegistrySampler,
  SAMPLERS as REGISTRY_SAMPLERS,
  SCHEDULERS as REGISTRY_SCHEDULERS,
} from '../sampling/registry.js';
import { UserError } from '../util/errors.js';

/** Per-job settings, as A1111's `override_settings` (same keys as /sdapi/v1/options). */
export interface OverrideSettings {
  /** Clip skip: 1 = last layer, 2 = penultimate, … */
  CLIP_stop_at_last_layers?: number;
  /** Checkpoint by name, file name, title or hash. */
  sd_model_checkpoint?: string;
  /** "Automatic", "None" or a VAE file name from models/VAE. */
  sd_vae?: string;
  /** ENSD: shifts the seed of the ancestral samplers' per-step noise. */
  eta_noise_seed_delta?: number;
  /** Random source: "GPU" (A1111 default, = NV Philox), "NV" or "CPU". */
  randn_source?: string;
  /** Token merging (tomesd) ratio 0 … 0.9 for txt2img, and the img2img / hires-pass overrides (0 = unset). */
  token_merging_ratio?: number;
  token_merging_ratio_img2img?: number;
  token_merging_ratio_hr?: number;
  /** Settings we do not interpret are kept (A1111 accepts any key). */
  [key: string]: unknown;
}

export interface GenerationParams {
  prompt: string;
  negative_prompt: string;
  styles: string[];
  /** -1 = random; the seed actually used is reported in the infotext. */
  seed: number;
  subseed: number;
  subseed_strength: number;
  seed_resize_from_h: number;
  seed_resize_from_w: number;
  /** A1111 display name ("Euler a", "DPM++ 2M"); may carry a schedule suffix ("DPM++ 2M Karras"). */
  sampler_name: string;
  /** Scheduler label or name; "Automatic" = the sampler's default. */
  scheduler: string;
  batch_size: number;
  n_iter: number;
  steps: number;
  cfg_scale: number;
  width: number;
  height: number;
  restore_faces: boolean;
  tiling: boolean;
  /** null = the settings' default (1 for ancestral samplers, 0 for DDIM). */
  eta: number | null;
  s_min_uncond: number | null;
  s_churn: number | null;
  s_tmax: number | null;
  s_tmin: number | null;
  s_noise: number | null;
  /** img2img strength, and the hires-fix second pass strength. */
  denoising_strength: number;
  override_settings: OverrideSettings;

  enable_hr: boolean;
  hr_scale: number;
  /** A latent mode ("Latent", "Latent (nearest-exact)", …) or an image upscaler ("Lanczos", "Nearest"). */
  hr_upscaler: string;
  /** 0 = same as steps. */
  hr_second_pass_steps: number;
  hr_resize_x: number;
  hr_resize_y: number;
  /** null = same sampler as the first pass. */
  hr_sampler_name: string | null;
  /** null = same scheduler as the first pass. */
  hr_scheduler: string | null;
  /** "" = same as prompt. */
  hr_prompt: string;
  hr_negative_prompt: string;

  /** img2img: base64 images (API) — front doors decode them; the pipeline takes decoded images. */
  init_images: string[] | null;
  mask: string | null;
  /** 0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale). */
  resize_mode: 0 | 1 | 2 | 3;
  /** When set, overrides mask_blur_x and mask_blur_y. */
  mask_blur: number | null;
  mask_blur_x: number;
  mask_blur_y: number;
  mask_round: boolean;
  /** 0 fill, 1 original, 2 latent noise, 3 latent nothing. */
  inpainting_fill: 0 | 1 | 2 | 3;
  /** true = "Only masked". */
  inpaint_full_res: boolean;
  inpaint_full_res_padding: number;
  /** 1 = "Inpaint not masked". */
  inpainting_mask_invert: 0 | 1;
  /** null = 1.0 (A1111 setting initial_noise_multiplier). */
  initial_noise_multiplier: number | null;
}

export interface SamplerInfo {
  name: string;
  aliases: readonly string[];
  /** Label of the scheduler "Automatic" resolves to ("Karras"); none = the model's own sigmas. */
  defaultScheduler?: string;
  /** Its per-step noise is shifted by ENSD (A1111 option uses_ensd). */
  usesEnsd?: boolean;
  /** Takes eta (default: the registry's etaDefault). */
  usesEta?: boolean;
}

/**
 * A1111 1.10.1 sampler display names (order of /sdapi/v1/samplers) with their aliases: a view of the
 * sampling registry (src/sampling/registry.ts), which holds the functions and all metadata.
 */
export const SAMPLERS: readonly SamplerInfo[] = REGISTRY_SAMPLERS.map((s) => ({
  name: s.label,
  aliases: s.aliases,
  defaultScheduler: s.scheduler ? findRegistryScheduler(s.scheduler)?.label : undefined,
  usesEnsd: s.usesEnsd,
  usesEta: s.etaDefault !== null,
}));

/** A1111 schedulers: label (shown, written to infotext) and name (API), plus aliases (the registry's). */
export const SCHEDULERS: readonly { label: string; name: string; aliases?: readonly string[] }[] =
  REGISTRY_SCHEDULERS.map((s) => ({ label: s.label, name: s.name, aliases: s.aliases }));

/** Latent upscale modes of the hires fix (A1111 shared.latent_upscale_modes). */
export const LATENT_UPSCALE_MODES: readonly string[] = [
  'Latent',
  'Latent (antialiased)',
  'Latent (bicubic)',
  'Latent (bicubic antialiased)',
  'Latent (nearest)',
  'Latent (nearest-exact)',
];

/** Image upscalers available without model weights. */
export const IMAGE_UPSCALERS: readonly string[] = ['None', 'Lanczos', 'Nearest'];

export const MASKED_CONTENT = ['fill', 'original', 'latent noise', 'latent nothing'] as const;

export const RESIZE_MODES = [
  'Just resize',
  'Crop and resize',
  'Resize and fill',
  'Just resize (latent upscale)',
] as const;

export function defaultParams(): GenerationParams {
  return {
    prompt: '',
    negative_prompt: '',
    styles: [],
    seed: -1,
    subseed: -1,
    subseed_strength: 0,
    seed_resize_from_h: -1,
    seed_resize_from_w: -1,
    // A1111's API takes `sampler_name or sampler_index`, and sampler_index defaults to "Euler".
    sampler_name: 'Euler',
    scheduler: 'Automatic',
    batch_size: 1,
    n_iter: 1,
    steps: 50,
    cfg_scale: 7,
    width: 512,
    height: 512,
    restore_faces: false,
    tiling: false,
    eta: null,
    s_min_uncond: null,
    s_churn: null,
    s_tmax: null,
    s_tmin: null,
    s_noise: null,
    denoising_strength: 0.75,
    override_settings: {},
    enable_hr: false,
    hr_scale: 2,
    hr_upscaler: 'Latent',
    hr_second_pass_steps: 0,
    hr_resize_x: 0,
    hr_resize_y: 0,
    hr_sampler_name: null,
    hr_scheduler: null,
    hr_prompt: '',
    hr_negative_prompt: '',
    init_images: null,
    mask: null,
    resize_mode: 0,
    mask_blur: null,
    mask_blur_x: 4,
    mask_blur_y: 4,
    mask_round: true,
    inpainting_fill: 0,
    inpaint_full_res: true,
    inpaint_full_res_padding: 0,
    inpainting_mask_invert: 0,
    initial_noise_multiplier: null,
  };
}

/** Upper bounds that keep hostile requests from asking for unbounded memory or time. */
export const LIMITS = {
  maxSide: 8192,
  maxSteps: 1000,
  maxBatchSize: 64,
  maxBatchCount: 10000,
  maxMaskBlur: 256,
  maxPadding: 4096,
  maxHrScale: 8,
  maxPromptChars: 100_000,
} as const;

const MAX_SEED = 2 ** 53 - 1;

/**
 * Fills every field missing or null in `input` with A1111's default and validates the result.
 * Unknown keys are ignored (as A1111's pydantic models do); legacy `sampler_index` is honoured.
 * Throws UserError naming the first bad field.
 */
export interface WithDefaultsOptions {
  /**
   * "error" (default): an unknown sampler is a UserError. "fallback": A1111's API behaviour — an
   * unknown name silently becomes "DPM++ 2M" (for drop-in API compatibility).
   */
  unknownSampler?: 'error' | 'fallback';
}

export function withDefaults(
  input: Partial<GenerationParams> | Record<string, unknown> = {},
  options: WithDefaultsOptions = {},
): GenerationParams {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new UserError('generation parameters must be an object');
  }
  const src = input as Record<string, unknown>;
  const p = defaultParams() as unknown as Record<string, unknown>;
  const defaults = defaultParams() as unknown as Record<string, unknown>;
  for (const key of Object.keys(defaults)) {
    const v = src[key];
    if (v === undefined || v === null) continue;
    p[key] = coerceField(key, v, defaults[key]);
  }
  if (
    (src.sampler_name === undefined || src.sampler_name === null) &&
    typeof src.sampler_index === 'string'
  ) {
    p.sampler_name = src.sampler_index;
  }
  const params = p as unknown as GenerationParams;
  if (options.unknownSampler === 'fallback') {
    try {
      resolveSampler(params.sampler_name, 'Automatic');
    } catch {
      params.sampler_name = 'DPM++ 2M';
    }
  }
  if (params.mask_blur !== null) {
    params.mask_blur_x = params.mask_blur;
    params.mask_blur_y = params.mask_blur;
  }
  params.override_settings = { ...params.override_settings };
  validateParams(params);
  return params;
}

/** Booleans may arrive as 0/1 (A1111's inpainting_mask_invert) or "true"; numbers as numeric strings. */
function coerceField(key: string, v: unknown, def: unknown): unknown {
  switch (key) {
    case 'seed':
    case 'subseed':
      // A1111 get_fixed_seed: "" or a non-numeric string means random.
      if (typeof v === 'string' && !/^\s*-?\d+\s*$/.test(v)) return -1;
      return toNumber(key, v);
    case 'styles':
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
        throw new UserError(`styles must be a list of style names`);
      }
      return [...v];
    case 'init_images':
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
        throw new UserError(`init_images must be a list of base64 images`);
      }
      return [...v];
    case 'override_settings':
      if (typeof v !== 'object' || Array.isArray(v))
        throw new UserError('override_settings must be an object');
      return v;
    case 'inpainting_mask_invert':
      return toBool(key, v) ? 1 : 0;
    case 'mask':
    case 'hr_sampler_name':
    case 'hr_scheduler':
      if (typeof v !== 'string') throw new UserError(`${key} must be a string`);
      return v;
  }
  if (typeof def === 'string') {
    if (typeof v !== 'string') throw new UserError(`${key} must be a string`);
    return v;
  }
  if (typeof def === 'boolean') return toBool(key, v);
  // Numbers, including the nullable ones whose default is null.
  return toNumber(key, v);
}

function toBool(key: string, v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  if (v === 'true' || v === 'True') return true;
  if (v === 'false' || v === 'False') return false;
  throw new UserError(`${key} must be true or false`);
}

function toNumber(key: string, v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new UserError(`${key} must be a number (got ${JSON.stringify(v)})`);
  return n;
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new UserError(message);
}

function intIn(p: GenerationParams, key: keyof GenerationParams, lo: number, hi: number, hint = ''): void {
  const v = p[key] as number;
  check(
    Number.isInteger(v) && v >= lo && v <= hi,
    `${key} must be an integer from ${lo} to ${hi}${hint} (got ${v})`,
  );
}

function numIn(p: GenerationParams, key: keyof GenerationParams, lo: number, hi: number): void {
  const v = p[key] as number | null;
  if (v === null) return;
  check(Number.isFinite(v) && v >= lo && v <= hi, `${key} must be a number from ${lo} to ${hi} (got ${v})`);
}

/** Throws UserError naming the first field that A1111 would not accept or that we cannot run. */
export function validateParams(p: GenerationParams): void {
  for (const key of ['width', 'height'] as const) {
    intIn(p, key, 8, LIMITS.maxSide);
    check(
      p[key] % 8 === 0,
      `${key} must be a multiple of 8 (got ${p[key]}); try ${Math.max(8, Math.round(p[key] / 8) * 8)}`,
    );
  }
  intIn(p, 'steps', 1, LIMITS.maxSteps);
  intIn(p, 'batch_size', 1, LIMITS.maxBatchSize);
  intIn(p, 'n_iter', 1, LIMITS.maxBatchCount);
  check(
    Number.isFinite(p.cfg_scale) && Math.abs(p.cfg_scale) <= 1000,
    `cfg_scale must be a number from -1000 to 1000`,
  );
  for (const key of ['seed', 'subseed'] as const) {
    check(
      Number.isInteger(p[key]) && p[key] >= -1 && p[key] <= MAX_SEED,
      `${key} must be -1 (random) or a whole number from 0 to ${MAX_SEED} (got ${p[key]})`,
    );
  }
  numIn(p, 'subseed_strength', 0, 1);
  intIn(p, 'seed_resize_from_w', -1, LIMITS.maxSide);
  intIn(p, 'seed_resize_from_h', -1, LIMITS.maxSide);
  numIn(p, 'denoising_strength', 0, 1);
  numIn(p, 'eta', 0, 100);
  numIn(p, 's_churn', 0, 1000);
  numIn(p, 's_tmin', 0, 1e6);
  numIn(p, 's_tmax', 0, 1e6);
  numIn(p, 's_noise', 0, 100);
  numIn(p, 's_min_uncond', 0, 1e6);
  check(
    p.prompt.length <= LIMITS.maxPromptChars,
    `prompt is longer than ${LIMITS.maxPromptChars} characters`,
  );
  check(
    p.negative_prompt.length <= LIMITS.maxPromptChars,
    `negative_prompt is longer than ${LIMITS.maxPromptChars} characters`,
  );
  resolveSampler(p.sampler_name, p.scheduler, 'sampler_name');
  if (p.hr_sampler_name !== null && p.hr_sampler_name !== 'Use same sampler') {
    resolveSampler(p.hr_sampler_name, p.hr_scheduler ?? 'Automatic', 'hr_sampler_name');
  }
  if (p.hr_scheduler !== null && p.hr_scheduler !== 'Use same scheduler')
    requireScheduler(p.hr_scheduler, 'hr_scheduler');

  numIn(p, 'hr_scale', 0.05, LIMITS.maxHrScale);
  intIn(p, 'hr_second_pass_steps', 0, LIMITS.maxSteps);
  intIn(p, 'hr_resize_x', 0, LIMITS.maxSide);
  intIn(p, 'hr_resize_y', 0, LIMITS.maxSide);
  if (p.enable_hr) {
    check(
      LATENT_UPSCALE_MODES.includes(p.hr_upscaler) || IMAGE_UPSCALERS.includes(p.hr_upscaler),
      `hr_upscaler "${p.hr_upscaler}" is not available; use one of ${[...LATENT_UPSCALE_MODES, ...IMAGE_UPSCALERS].join(', ')}`,
    );
    const { width, height } = hiresTargetSize(p);
    check(
      width <= LIMITS.maxSide && height <= LIMITS.maxSide,
      `the hires fix target ${width}x${height} is larger than ${LIMITS.maxSide} pixels a side`,
    );
  }

  intIn(p, 'resize_mode', 0, 3, ' (0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale)');
  intIn(p, 'inpainting_fill', 0, 3, ' (0 fill, 1 original, 2 latent noise, 3 latent nothing)');
  intIn(p, 'mask_blur_x', 0, LIMITS.maxMaskBlur);
  intIn(p, 'mask_blur_y', 0, LIMITS.maxMaskBlur);
  intIn(p, 'inpaint_full_res_padding', 0, LIMITS.maxPadding);
  numIn(p, 'initial_noise_multiplier', 0, 10);

  const o = p.override_settings;
  if (o.CLIP_stop_at_last_layers !== undefined) {
    const v = Number(o.CLIP_stop_at_last_layers);
    check(
      Number.isInteger(v) && v >= 1 && v <= 12,
      'override_settings.CLIP_stop_at_last_layers (clip skip) must be 1 to 12',
    );
  }
  if (o.eta_noise_seed_delta !== undefined) {
    const v = Number(o.eta_noise_seed_delta);
    check(
      Number.isInteger(v) && Math.abs(v) <= MAX_SEED,
      'override_settings.eta_noise_seed_delta must be a whole number',
    );
  }
  if (o.randn_source !== undefined) {
    check(
      o.randn_source === 'GPU' || o.randn_source === 'CPU' || o.randn_source === 'NV',
      'override_settings.randn_source must be "GPU", "CPU" or "NV"',
    );
  }
  for (const key of TOKEN_MERGING_SETTINGS) {
    if (o[key] === undefined) continue;
    const v = Number(o[key]);
    check(
      Number.isFinite(v) && v >= 0 && v <= MAX_TOKEN_MERGE_RATIO,
      `override_settings.${key} (token merging) must be 0 to ${MAX_TOKEN_MERGE_RATIO}`,
    );
  }
}

const TOKEN_MERGING_SETTINGS = [
  'token_merging_ratio',
  'token_merging_ratio_img2img',
  'token_merging_ratio_hr',
] as const;

export interface ResolvedSampler {
  /** A1111 display name. */
  sampler: string;
  /** Scheduler label actually used ("Automatic" resolved to the sampler's default, e.g. "Karras"). */
  scheduleLabel: string;
  /** Scheduler name ("karras", "automatic" …) to hand to the schedule builder. */
  schedulerName: string;
}

/**
 * A1111's sampler/scheduler resolution through the sampling registry (`resolveSampler` there):
 * case-insensitive names and aliases, a " <scheduler>" suffix ("DPM++ 2M Karras") wins over
 * `scheduler`; an unknown name is a UserError naming `field`.
 */
export function resolveSampler(
  samplerName: string,
  scheduler: string,
  field = 'sampler_name',
): ResolvedSampler {
  const r = resolveRegistrySampler(samplerName, scheduler, field);
  return {
    sampler: r.sampler.label,
    scheduleLabel: r.effectiveScheduler.label,
    schedulerName: r.effectiveScheduler.name,
  };
}

export interface HiresTarget {
  /** Size the first pass is upscaled to (A1111 hr_upscale_to_x/y). */
  width: number;
  height: number;
  /** Latent columns/rows cropped afterwards when both hr_resize_x and hr_resize_y are given. */
  truncateX: number;
  truncateY: number;
}

/** The hires fix target size, as A1111's calculate_target_resolution. */
export function hiresTargetSize(p: GenerationParams): HiresTarget {
  const floorDiv = (a: number, b: number): number => Math.floor(a / b);
  if (p.hr_resize_x === 0 && p.hr_resize_y === 0) {
    return {
      width: Math.trunc(p.width * p.hr_scale),
      height: Math.trunc(p.height * p.hr_scale),
      truncateX: 0,
      truncateY: 0,
    };
  }
  if (p.hr_resize_y === 0) {
    return {
      width: p.hr_resize_x,
      height: floorDiv(p.hr_resize_x * p.height, p.width),
      truncateX: 0,
      truncateY: 0,
    };
  }
  if (p.hr_resize_x === 0) {
    return {
      width: floorDiv(p.hr_resize_y * p.width, p.height),
      height: p.hr_resize_y,
      truncateX: 0,
      truncateY: 0,
    };
  }
  // Both given: scale to cover the target keeping the aspect, then crop the overflow in latent space.
  let width: number;
  let height: number;
  if (p.width / p.height < p.hr_resize_x / p.hr_resize_y) {
    width = p.hr_resize_x;
    height = floorDiv(p.hr_resize_x * p.height, p.width);
  } else {
    width = floorDiv(p.hr_resize_y * p.width, p.height);
    height = p.hr_resize_y;
  }
  return {
    width,
    height,
    truncateX: floorDiv(width - p.hr_resize_x, 8),
    truncateY: floorDiv(height - p.hr_resize_y, 8),
  };
}

/** A sampler's params view by name or alias (case-insensitive, through the registry). */
export function findSamplerInfo(name: string): SamplerInfo | undefined {
  const key = name.trim().toLowerCase();
  return SAMPLERS.find((s) => s.name.toLowerCase() === key || s.aliases.some((a) => a.toLowerCase() === key));
}

/** Clip skip in force (1 = none). */
export function clipSkipOf(p: GenerationParams): number {
  const v = Number(p.override_settings.CLIP_stop_at_last_layers ?? 1);
  return Number.isInteger(v) && v >= 1 ? v : 1;
}

export function ensdOf(p: GenerationParams): number {
  const v = Number(p.override_settings.eta_noise_seed_delta ?? 0);
  return Number.isInteger(v) ? v : 0;
}

/**
 * The token merging ratio of one sampling pass, as A1111's get_token_merging_ratio picks it: the
 * hires pass takes token_merging_ratio_hr, else the base ratio; img2img its own setting unless the
 * job sets the base one.
 */
export function tokenMergingRatioOf(p: GenerationParams, pass: 'txt2img' | 'hires' | 'img2img'): number {
  const o = p.override_settings;
  const v = (key: (typeof TOKEN_MERGING_SETTINGS)[number]) => {
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
