/**
 * The request contract as one table: every GenerationParams field and every `override_settings`
 * key we interpret, each with its TypeBox schema (type, A1111 default, bounds: the API validation
 * and OpenAPI come from it) and its metadata — label and group for the UI, the CLI flag(s) that set
 * it with their help, and the infotext key(s) it is written under (how each key is written and read
 * is params/infotext-map.ts, in A1111's order). Everything else is derived from here: the
 * GenerationParams type and schema (schema.ts), defaults and validation (validate.ts), the CLI's
 * options (cli-flags.ts) and the infotext mapping. No Node imports: the browser uses it.
 */
import { Type, type TSchema } from 'typebox';
import {
  EMPHASIS_MODES,
  HIRES_REFINER_PASSES,
  LIMITS,
  MAX_SEED,
  MAX_TOKEN_MERGE_RATIO,
  RANDN_SOURCES,
  MASKED_CONTENT,
} from './catalog.js';

export type GenerationMode = 'txt2img' | 'img2img';

export type FieldGroup =
  'prompt' | 'sampling' | 'size' | 'seed' | 'hires' | 'img2img' | 'inpaint' | 'settings' | 'model';

/** One command-line flag that sets a field. */
export interface CliFlag {
  /** Without the leading `--`. */
  flag: string;
  /** Placeholder of the value in the help ("N", "X", "TEXT"); absent for a switch. */
  arg?: string;
  help: string;
  /** The front doors' modes that take this flag (default: the field's modes). */
  modes?: readonly GenerationMode[];
  /** Giving this flag turns the hires fix on. */
  hires?: boolean;
  /** Value of the field when a switch is given. */
  value?: unknown;
  /** Accepted words → field value (matched case-insensitively). */
  choices?: Readonly<Record<string, unknown>>;
  /** May be repeated; values are collected into a list. */
  multiple?: boolean;
  /** Help's "(default …)" text when the default shown is not the field's UI default. */
  defaultText?: string;
}

/** Metadata of one field or setting. */
export interface FieldSpec<S extends TSchema = TSchema> {
  /** The value's schema; `T | null` (an anyOf with null) where null means "the setting's default". */
  schema: S;
  /** UI label, also used in messages where no flag or JSON field name fits. */
  label: string;
  group: FieldGroup;
  /** Modes the field applies to (default both). */
  modes?: readonly GenerationMode[];
  /** UI slider step. */
  step?: number;
  /** The A1111 web UI's default where it differs from the API's (what a person at a UI or terminal expects). */
  uiDefault?: unknown;
  /** Words after the JSON name in messages ("clip skip"); not used after a CLI flag. */
  hint?: string;
  cli?: readonly CliFlag[];
  /** Infotext keys the field is written under and read from (see infotext-map.ts). */
  infotext?: readonly string[];
  /** Choices a text field must be one of (case-insensitive), beyond its type. */
  choices?: readonly string[];
}

function f<S extends TSchema>(schema: S, spec: Omit<FieldSpec<S>, 'schema'>): FieldSpec<S> {
  return { schema, ...spec };
}

const int = (min: number, max: number, def: number, extra: Record<string, unknown> = {}) =>
  Type.Integer({ minimum: min, maximum: max, default: def, ...extra });
const num = (min: number, max: number, def: number) =>
  Type.Number({ minimum: min, maximum: max, default: def });
const str = (def: string, maxLength?: number) =>
  Type.String(maxLength === undefined ? { default: def } : { default: def, maxLength });

/**
 * A field whose null means "the setting's default" (A1111's None). Null comes first: a coercing
 * validator (Ajv's coerceTypes, fastify's default) would turn null into 0 or "" in a branch tried
 * before it.
 */
const orNull = <S extends TSchema>(s: S) => Type.Union([Type.Null(), s], { default: null });

const I2I = ['img2img'] as const;
const T2I = ['txt2img'] as const;

/** GenerationParams fields: A1111's /sdapi/v1/txt2img and /img2img request fields (v1.10.1). */
export const FIELDS = {
  prompt: f(str('', LIMITS.maxPromptChars), {
    label: 'Prompt',
    group: 'prompt',
    cli: [{ flag: 'prompt', arg: 'TEXT', help: 'the prompt (txt2img also takes it as the argument)' }],
    infotext: ['Prompt'],
  }),
  negative_prompt: f(str('', LIMITS.maxPromptChars), {
    label: 'Negative prompt',
    group: 'prompt',
    cli: [{ flag: 'negative', arg: 'TEXT', help: 'negative prompt' }],
    infotext: ['Negative prompt'],
  }),
  styles: f(Type.Array(Type.String(), { default: [] }), {
    label: 'Styles',
    group: 'prompt',
    cli: [
      {
        flag: 'styles',
        arg: 'NAME',
        help: 'apply a style from <data-dir>/styles.csv (repeatable)',
        multiple: true,
      },
    ],
    infotext: ['Styles array'],
  }),
  seed: f(int(-1, MAX_SEED, -1), {
    label: 'Seed',
    group: 'seed',
    hint: '-1 = random',
    cli: [{ flag: 'seed', arg: 'N', help: 'seed, -1 = random; image i of the job gets seed+i' }],
    infotext: ['Seed'],
  }),
  subseed: f(int(-1, MAX_SEED, -1), {
    label: 'Variation seed',
    group: 'seed',
    cli: [{ flag: 'subseed', arg: 'N', help: 'variation seed, -1 = random' }],
    infotext: ['Variation seed'],
  }),
  subseed_strength: f(num(0, 1, 0), {
    label: 'Variation strength',
    group: 'seed',
    step: 0.01,
    cli: [{ flag: 'subseed-strength', arg: 'X', help: 'variation strength 0 … 1' }],
    infotext: ['Variation seed strength'],
  }),
  seed_resize_from_h: f(int(-1, LIMITS.maxSide, -1), {
    label: 'Resize seed from height',
    group: 'seed',
    step: 8,
    infotext: ['Seed resize from'],
  }),
  seed_resize_from_w: f(int(-1, LIMITS.maxSide, -1), {
    label: 'Resize seed from width',
    group: 'seed',
    step: 8,
    infotext: ['Seed resize from'],
  }),
  // A1111's API takes `sampler_name or sampler_index`, and sampler_index defaults to "Euler".
  sampler_name: f(str('Euler'), {
    label: 'Sampling method',
    group: 'sampling',
    uiDefault: 'DPM++ 2M',
    cli: [
      {
        flag: 'sampler',
        arg: 'NAME',
        help: 'sampler: "DPM++ 2M", "Euler a", "Euler", "DDIM", … (A1111 names)',
      },
    ],
    infotext: ['Sampler'],
  }),
  scheduler: f(str('Automatic'), {
    label: 'Schedule type',
    group: 'sampling',
    uiDefault: 'Automatic',
    cli: [{ flag: 'scheduler', arg: 'NAME', help: 'schedule: Automatic, Karras, Exponential, …' }],
    infotext: ['Schedule type'],
  }),
  batch_size: f(int(1, LIMITS.maxBatchSize, 1), {
    label: 'Batch size',
    group: 'size',
    cli: [{ flag: 'batch-size', arg: 'N', help: 'images per batch' }],
  }),
  n_iter: f(int(1, LIMITS.maxBatchCount, 1), {
    label: 'Batch count',
    group: 'size',
    cli: [{ flag: 'batch-count', arg: 'N', help: 'number of batches' }],
  }),
  steps: f(int(1, LIMITS.maxSteps, 50), {
    label: 'Sampling steps',
    group: 'sampling',
    uiDefault: 20,
    cli: [{ flag: 'steps', arg: 'N', help: 'sampling steps' }],
    infotext: ['Steps'],
  }),
  cfg_scale: f(num(-1000, 1000, 7), {
    label: 'CFG scale',
    group: 'sampling',
    step: 0.5,
    cli: [{ flag: 'cfg', arg: 'X', help: 'CFG scale' }],
    infotext: ['CFG scale'],
  }),
  width: f(int(8, LIMITS.maxSide, 512, { multipleOf: 8 }), {
    label: 'Width',
    group: 'size',
    step: 8,
    cli: [{ flag: 'width', arg: 'N', help: 'width in pixels, a multiple of 8' }],
    infotext: ['Size'],
  }),
  height: f(int(8, LIMITS.maxSide, 512, { multipleOf: 8 }), {
    label: 'Height',
    group: 'size',
    step: 8,
    cli: [{ flag: 'height', arg: 'N', help: 'height in pixels, a multiple of 8' }],
    infotext: ['Size'],
  }),
  restore_faces: f(Type.Boolean({ default: false }), {
    label: 'Restore faces',
    group: 'sampling',
    infotext: ['Face restoration'],
  }),
  tiling: f(Type.Boolean({ default: false }), {
    label: 'Tiling',
    group: 'sampling',
    cli: [
      {
        flag: 'tiling',
        value: true,
        help: 'seamless image that tiles (A1111 "Tiling": circular padding in UNet and VAE)',
      },
    ],
    infotext: ['Tiling'],
  }),
  eta: f(orNull(Type.Number({ minimum: 0, maximum: 100 })), {
    label: 'Eta',
    group: 'sampling',
    step: 0.01,
    cli: [
      { flag: 'eta', arg: 'X', help: 'sampler eta', defaultText: '1 for ancestral samplers, 0 for DDIM' },
    ],
    infotext: ['Eta', 'Eta DDIM'],
  }),
  s_min_uncond: f(orNull(Type.Number({ minimum: 0, maximum: 1e6 })), {
    label: 'Negative guidance minimum sigma',
    group: 'sampling',
    infotext: ['NGMS'],
  }),
  s_churn: f(orNull(Type.Number({ minimum: 0, maximum: 1000 })), {
    label: 'Sigma churn',
    group: 'sampling',
    infotext: ['Sigma churn'],
  }),
  s_tmax: f(orNull(Type.Number({ minimum: 0, maximum: 1e6 })), {
    label: 'Sigma tmax',
    group: 'sampling',
    infotext: ['Sigma tmax'],
  }),
  s_tmin: f(orNull(Type.Number({ minimum: 0, maximum: 1e6 })), {
    label: 'Sigma tmin',
    group: 'sampling',
    infotext: ['Sigma tmin'],
  }),
  s_noise: f(orNull(Type.Number({ minimum: 0, maximum: 100 })), {
    label: 'Sigma noise',
    group: 'sampling',
    infotext: ['Sigma noise'],
  }),
  /** img2img strength, and the hires-fix second pass strength. */
  denoising_strength: f(num(0, 1, 0.75), {
    label: 'Denoising strength',
    group: 'img2img',
    step: 0.01,
    uiDefault: 0.75,
    cli: [
      { flag: 'denoise', arg: 'X', help: 'denoising strength', modes: I2I },
      {
        flag: 'hires-denoise',
        arg: 'X',
        help: 'second-pass denoising strength',
        modes: T2I,
        hires: true,
        defaultText: '0.7',
      },
    ],
    infotext: ['Denoising strength'],
  }),
  override_settings: f(Type.Object({}, { additionalProperties: true, default: {} }), {
    label: 'Override settings',
    group: 'settings',
  }),

  enable_hr: f(Type.Boolean({ default: false }), {
    label: 'Hires. fix',
    group: 'hires',
    modes: T2I,
    cli: [{ flag: 'hires', value: true, help: 'enable the hires fix' }],
    infotext: ['Hires upscale', 'Hires resize', 'Hires upscaler'],
  }),
  hr_scale: f(num(0.05, LIMITS.maxHrScale, 2), {
    label: 'Upscale by',
    group: 'hires',
    modes: T2I,
    step: 0.05,
    cli: [{ flag: 'hires-scale', arg: 'X', help: 'upscale by', hires: true }],
    infotext: ['Hires upscale'],
  }),
  /** A latent mode ("Latent", "Latent (nearest-exact)", …) or an image upscaler ("Lanczos", "Nearest"). */
  hr_upscaler: f(str('Latent'), {
    label: 'Upscaler',
    group: 'hires',
    modes: T2I,
    uiDefault: 'Latent',
    cli: [
      {
        flag: 'hires-upscaler',
        arg: 'NAME',
        help: 'Latent, "Latent (nearest-exact)", …, Lanczos, Nearest',
        hires: true,
      },
    ],
    infotext: ['Hires upscaler'],
  }),
  hr_second_pass_steps: f(int(0, LIMITS.maxSteps, 0), {
    label: 'Hires steps',
    group: 'hires',
    modes: T2I,
    cli: [
      {
        flag: 'hires-steps',
        arg: 'N',
        help: 'second-pass steps',
        hires: true,
        defaultText: 'same as --steps',
      },
    ],
    infotext: ['Hires steps'],
  }),
  hr_resize_x: f(int(0, LIMITS.maxSide, 0), {
    label: 'Resize width to',
    group: 'hires',
    modes: T2I,
    step: 8,
    cli: [
      {
        flag: 'hires-width',
        arg: 'N',
        help: 'upscale to this width (instead of a scale; 0 = keep the aspect)',
        hires: true,
      },
    ],
    infotext: ['Hires resize'],
  }),
  hr_resize_y: f(int(0, LIMITS.maxSide, 0), {
    label: 'Resize height to',
    group: 'hires',
    modes: T2I,
    step: 8,
    cli: [
      {
        flag: 'hires-height',
        arg: 'N',
        help: 'upscale to this height (instead of a scale; 0 = keep the aspect)',
        hires: true,
      },
    ],
    infotext: ['Hires resize'],
  }),
  /** null = same sampler as the first pass. */
  hr_sampler_name: f(orNull(Type.String()), {
    label: 'Hires sampling method',
    group: 'hires',
    modes: T2I,
    cli: [
      {
        flag: 'hires-sampler',
        arg: 'NAME',
        help: 'second-pass sampler',
        hires: true,
        defaultText: 'same as --sampler',
      },
    ],
    infotext: ['Hires sampler'],
  }),
  /** null = same scheduler as the first pass. */
  hr_scheduler: f(orNull(Type.String()), {
    label: 'Hires schedule type',
    group: 'hires',
    modes: T2I,
    cli: [
      {
        flag: 'hires-scheduler',
        arg: 'NAME',
        help: 'second-pass schedule',
        hires: true,
        defaultText: 'same as --scheduler',
      },
    ],
    infotext: ['Hires schedule type'],
  }),
  /** "" = same as prompt. */
  hr_prompt: f(str('', LIMITS.maxPromptChars), {
    label: 'Hires prompt',
    group: 'hires',
    modes: T2I,
    cli: [
      {
        flag: 'hires-prompt',
        arg: 'TEXT',
        help: 'second-pass prompt',
        hires: true,
        defaultText: 'the prompt',
      },
    ],
    infotext: ['Hires prompt'],
  }),
  hr_negative_prompt: f(str('', LIMITS.maxPromptChars), {
    label: 'Hires negative prompt',
    group: 'hires',
    modes: T2I,
    cli: [
      {
        flag: 'hires-negative',
        arg: 'TEXT',
        help: 'second-pass negative prompt',
        hires: true,
        defaultText: 'the negative prompt',
      },
    ],
    infotext: ['Hires negative prompt'],
  }),

  /** SDXL refiner checkpoint (A1111 "Refiner"): name, path or title "name [hash]"; null = none. */
  refiner_checkpoint: f(orNull(Type.String({ maxLength: 1024 })), {
    label: 'Refiner',
    group: 'model',
    cli: [{ flag: 'refiner', arg: 'NAME', help: 'SDXL refiner checkpoint that takes over the sampling' }],
    infotext: ['Refiner'],
  }),
  /** Fraction of the sampling after which the refiner takes over; null = A1111's 0.8. */
  refiner_switch_at: f(orNull(Type.Number({ minimum: 0, maximum: 1 })), {
    label: 'Refiner switch at',
    group: 'model',
    step: 0.01,
    uiDefault: 0.8,
    cli: [
      { flag: 'refiner-switch-at', arg: 'X', help: 'fraction of the sampling before the refiner takes over' },
    ],
    infotext: ['Refiner switch at'],
  }),

  /** img2img: base64 images (API) — front doors decode them; the pipeline takes decoded images. */
  init_images: f(orNull(Type.Array(Type.String())), {
    label: 'Init images',
    group: 'img2img',
    modes: I2I,
  }),
  mask: f(orNull(Type.String()), {
    label: 'Mask',
    group: 'inpaint',
    modes: I2I,
  }),
  /** 0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale). */
  resize_mode: f(
    Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2), Type.Literal(3)], { default: 0 }),
    {
      label: 'Resize mode',
      group: 'img2img',
      modes: I2I,
      hint: '0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale',
      cli: [
        {
          flag: 'resize-mode',
          arg: 'MODE',
          help: 'how the init image is fitted to the size',
          choices: { 'just-resize': 0, 'crop-and-resize': 1, 'resize-and-fill': 2, 'latent-upscale': 3 },
        },
      ],
    },
  ),
  /** When set, overrides mask_blur_x and mask_blur_y. */
  mask_blur: f(orNull(Type.Integer({ minimum: 0, maximum: LIMITS.maxMaskBlur })), {
    label: 'Mask blur',
    group: 'inpaint',
    modes: I2I,
    uiDefault: 4,
    cli: [{ flag: 'mask-blur', arg: 'N', help: 'mask blur' }],
    infotext: ['Mask blur'],
  }),
  mask_blur_x: f(int(0, LIMITS.maxMaskBlur, 4), {
    label: 'Mask blur x',
    group: 'inpaint',
    modes: I2I,
    infotext: ['Mask blur', 'Mask blur x'],
  }),
  mask_blur_y: f(int(0, LIMITS.maxMaskBlur, 4), {
    label: 'Mask blur y',
    group: 'inpaint',
    modes: I2I,
    infotext: ['Mask blur', 'Mask blur y'],
  }),
  mask_round: f(Type.Boolean({ default: true }), {
    label: 'Round mask',
    group: 'inpaint',
    modes: I2I,
  }),
  /** 0 fill, 1 original, 2 latent noise, 3 latent nothing. */
  inpainting_fill: f(
    Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2), Type.Literal(3)], { default: 0 }),
    {
      label: 'Masked content',
      group: 'inpaint',
      modes: I2I,
      uiDefault: 1,
      hint: '0 fill, 1 original, 2 latent noise, 3 latent nothing',
      cli: [
        {
          flag: 'masked-content',
          arg: 'MODE',
          help: 'what the masked part starts from',
          choices: Object.fromEntries(MASKED_CONTENT.map((m, i) => [m.replace(/ /g, '-'), i])),
        },
      ],
      infotext: ['Masked content'],
    },
  ),
  /** true = "Only masked". */
  inpaint_full_res: f(Type.Boolean({ default: true }), {
    label: 'Inpaint area: only masked',
    group: 'inpaint',
    modes: I2I,
    uiDefault: false,
    cli: [
      {
        flag: 'only-masked',
        value: true,
        help: 'inpaint area "Only masked": crop around the mask, render at the size, paste back',
      },
    ],
    infotext: ['Inpaint area', 'Masked area padding'],
  }),
  inpaint_full_res_padding: f(int(0, LIMITS.maxPadding, 0), {
    label: 'Only masked padding, pixels',
    group: 'inpaint',
    modes: I2I,
    uiDefault: 32,
    cli: [{ flag: 'padding', arg: 'N', help: 'padding around the mask for --only-masked' }],
    infotext: ['Masked area padding'],
  }),
  /** 1 = "Inpaint not masked". */
  inpainting_mask_invert: f(Type.Union([Type.Literal(0), Type.Literal(1)], { default: 0 }), {
    label: 'Mask mode: inpaint not masked',
    group: 'inpaint',
    modes: I2I,
    cli: [{ flag: 'invert-mask', value: 1, help: 'inpaint the unmasked area ("Inpaint not masked")' }],
    infotext: ['Mask mode'],
  }),
  /** null = 1.0 (A1111 setting initial_noise_multiplier). */
  initial_noise_multiplier: f(orNull(Type.Number({ minimum: 0, maximum: 10 })), {
    label: 'Noise multiplier for img2img',
    group: 'img2img',
    modes: I2I,
    step: 0.01,
    cli: [{ flag: 'noise-multiplier', arg: 'X', help: 'extra noise multiplier', defaultText: '1' }],
    infotext: ['Noise multiplier'],
  }),
};

/**
 * The `override_settings` keys we interpret (A1111 /sdapi/v1/options names). Every other key is
 * kept as given (A1111 accepts any setting).
 */
export const SETTINGS = {
  /** Checkpoint by name, file name, title or hash. */
  sd_model_checkpoint: f(Type.String(), {
    label: 'Stable Diffusion checkpoint',
    group: 'model',
    infotext: ['Model hash', 'Model'],
  }),
  /** "Automatic", "None" or a VAE file name from models/VAE. */
  sd_vae: f(Type.String(), { label: 'SD VAE', group: 'model', infotext: ['VAE hash', 'VAE'] }),
  /** Clip skip: 1 = last layer, 2 = penultimate, … */
  CLIP_stop_at_last_layers: f(Type.Integer({ minimum: 1, maximum: 12, default: 1 }), {
    label: 'Clip skip',
    group: 'settings',
    hint: 'clip skip',
    cli: [{ flag: 'clip-skip', arg: 'N', help: 'stop at the N-th last CLIP layer' }],
    infotext: ['Clip skip'],
  }),
  /**
   * A1111's `sdxl_clip_l_skip` ("Clip skip SDXL"): clip skip N also picks SDXL's CLIP-L layer
   * (hidden_states[-N]); off, CLIP-L always gives its penultimate layer. Not in A1111's infotext.
   */
  sdxl_clip_l_skip: f(Type.Boolean({ default: false }), {
    label: 'Clip skip SDXL',
    group: 'settings',
    cli: [
      {
        flag: 'sdxl-clip-l-skip',
        value: true,
        help: 'apply --clip-skip to SDXL\'s CLIP-L too (A1111 "Clip skip SDXL"; off: CLIP-L always uses its penultimate layer)',
      },
    ],
  }),
  /**
   * A1111's `refiner_switch_by_sample_steps`: the refiner switch judges progress by model calls
   * made / the pass's steps (×2 for second-order samplers) instead of by noise level.
   */
  refiner_switch_by_sample_steps: f(Type.Boolean({ default: false }), {
    label: 'Switch to refiner by sampling steps instead of fraction of sigma',
    group: 'settings',
    cli: [
      {
        flag: 'refiner-switch-by-steps',
        value: true,
        help: "--refiner-switch-at counts the pass's sampling steps, not its noise level (A1111 refiner_switch_by_sample_steps)",
      },
    ],
    infotext: ['Refiner switch by sampling steps'],
  }),
  /** A1111's `hires_fix_refiner_pass`: which hires-fix passes the SDXL refiner may take over. */
  hires_fix_refiner_pass: f(Type.String({ default: 'second pass' }), {
    label: 'Hires fix: which pass to enable refiner for',
    group: 'settings',
    choices: HIRES_REFINER_PASSES,
    cli: [
      {
        flag: 'hires-refiner-pass',
        arg: 'first|second|both',
        help: 'which hires-fix passes the --refiner may take over (A1111 hires_fix_refiner_pass)',
        modes: T2I,
        choices: { first: 'first pass', second: 'second pass', both: 'both passes' },
        defaultText: 'second',
      },
    ],
    infotext: ['Hires refiner'],
  }),
  /** ENSD: shifts the seed of the ancestral samplers' per-step noise. */
  eta_noise_seed_delta: f(Type.Integer({ minimum: -MAX_SEED, maximum: MAX_SEED, default: 0 }), {
    label: 'Eta noise seed delta',
    group: 'settings',
    cli: [{ flag: 'ensd', arg: 'N', help: 'eta noise seed delta (31337 matches NovelAI)' }],
    infotext: ['ENSD'],
  }),
  /** Random source: "GPU" (A1111 default, = NV Philox), "NV" or "CPU". */
  randn_source: f(Type.String({ default: 'GPU' }), {
    label: 'Random number generator source',
    group: 'settings',
    choices: RANDN_SOURCES,
    cli: [
      {
        flag: 'rng',
        arg: 'GPU|CPU|NV',
        help: 'random source (GPU = A1111 default, NV Philox)',
        choices: { gpu: 'GPU', cpu: 'CPU', nv: 'NV' },
      },
    ],
    infotext: ['RNG'],
  }),
  /** Token merging (tomesd) ratio 0 … 0.9 for txt2img, and the img2img / hires-pass overrides (0 = unset). */
  token_merging_ratio: f(Type.Number({ minimum: 0, maximum: MAX_TOKEN_MERGE_RATIO, default: 0 }), {
    label: 'Token merging ratio',
    group: 'settings',
    step: 0.1,
    hint: 'token merging',
    cli: [
      {
        flag: 'token-merging',
        arg: 'X',
        help:
          'A1111 "Token merging ratio" 0 … 0.9 (0 = off): merge similar tokens before the full-size ' +
          'self-attentions — faster, slightly different images; 0.5 with --precision int8 is the fastest setting',
      },
    ],
    infotext: ['Token merging ratio'],
  }),
  token_merging_ratio_img2img: f(Type.Number({ minimum: 0, maximum: MAX_TOKEN_MERGE_RATIO, default: 0 }), {
    label: 'Token merging ratio for img2img',
    group: 'settings',
    step: 0.1,
    hint: 'token merging',
  }),
  token_merging_ratio_hr: f(Type.Number({ minimum: 0, maximum: MAX_TOKEN_MERGE_RATIO, default: 0 }), {
    label: 'Token merging ratio for high-res pass',
    group: 'settings',
    step: 0.1,
    hint: 'token merging',
    cli: [
      {
        flag: 'hires-token-merging',
        arg: 'X',
        help: 'token merging ratio of the second pass',
        modes: T2I,
        hires: true,
        defaultText: '--token-merging',
      },
    ],
    infotext: ['Token merging ratio hr'],
  }),
  /** A1111 "NGMS": skip the negative prompt on alternate steps below this sigma (0 = never). */
  s_min_uncond: f(Type.Number({ minimum: 0, maximum: 1e6, default: 0 }), {
    label: 'Negative guidance minimum sigma',
    group: 'settings',
    hint: 'NGMS',
    cli: [
      {
        flag: 's-min-uncond',
        arg: 'X',
        help: 'A1111 "Negative Guidance minimum sigma" (NGMS): skip the negative prompt on alternate steps below this sigma (0 = off)',
      },
    ],
    infotext: ['NGMS'],
  }),
  /** A1111's s_min_uncond_all ("NGMS all steps"): skip the negative prompt on every step below the sigma. */
  s_min_uncond_all: f(Type.Boolean({ default: false }), {
    label: 'NGMS: skip on all steps',
    group: 'settings',
    infotext: ['NGMS all steps'],
  }),
  /**
   * A1111's `inpainting_mask_weight` ("Inpainting conditioning mask strength"): how much of the
   * masked area an inpainting model's image conditioning blanks out (1 = all, 0 = the whole image).
   */
  inpainting_mask_weight: f(Type.Number({ minimum: 0, maximum: 1, default: 1 }), {
    label: 'Inpainting conditioning mask strength',
    group: 'settings',
    step: 0.01,
    cli: [
      {
        flag: 'inpainting-mask-weight',
        arg: 'X',
        help: 'inpainting models: 1 blanks the masked area in their image conditioning, 0 shows them the whole image',
        defaultText: '1',
      },
    ],
    infotext: ['Conditional mask weight'],
  }),
  /** A1111's `emphasis`: how (word:1.2) weights apply to the text encoder's output. */
  emphasis: f(Type.String({ default: 'Original' }), {
    label: 'Emphasis mode',
    group: 'settings',
    choices: EMPHASIS_MODES,
    cli: [
      {
        flag: 'emphasis',
        arg: 'NAME',
        help: '(word:1.2) weights: Original, "No norm" (SDXL users like it), Ignore (no weights) or None (brackets are text)',
        choices: {
          original: 'Original',
          'no norm': 'No norm',
          'no-norm': 'No norm',
          ignore: 'Ignore',
          none: 'None',
        },
      },
    ],
    infotext: ['Emphasis'],
  }),
};

export type FieldName = keyof typeof FIELDS;
export type SettingName = keyof typeof SETTINGS;

export const FIELD_NAMES = Object.keys(FIELDS) as FieldName[];
export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** The spec of a field or, as "override_settings.KEY", of a setting. */
export function specOf(path: string): FieldSpec | undefined {
  if (path.startsWith('override_settings.')) {
    return (SETTINGS as Record<string, FieldSpec>)[path.slice('override_settings.'.length)];
  }
  return (FIELDS as Record<string, FieldSpec>)[path];
}
