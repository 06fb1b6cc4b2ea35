/**
 * The flags of `sdstudio txt2img` and `sdstudio img2img`: their help text, flags → GenerationParams
 * over the A1111 web UI's defaults (or over the infotext of `--params FILE.png`), checked before
 * anything loads.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { parseArgs } from 'node:util';
import { decodeImage, type DecodedImage } from '../image/images.js';
import { paramsFromInfotext, unetPrecisionFromInfotext } from '../infotext/infotext-fields.js';
import { MASKED_CONTENT, type GenerationParams } from '../params/generation.js';
import { previewModeOf, type PreviewMode } from '../pipeline/preview-mode.js';
import type { UnetPrecisionChoice } from '../pipeline/unet-precision.js';
import { UserError } from '../util/errors.js';
import { parseDecimal } from '../util/numbers.js';

// The engine, metadata readers and embeddings load lazily, after the arguments are checked, so a
// mistyped flag is answered at once.

export const COMMON_USAGE = `Generation options (defaults are A1111's web UI defaults):
  --negative TEXT          negative prompt
  --model NAME|PATH        checkpoint in <data-dir>/models/Stable-diffusion, or a file (default: the first one there)
  --vae NAME|PATH          VAE from <data-dir>/models/VAE, "Automatic" (a .vae.* file beside the
                           checkpoint; default) or "None"
  --sampler NAME           "DPM++ 2M" (default), "Euler a", "Euler", "DDIM", … (A1111 names)
  --scheduler NAME         Automatic (default), Karras, Exponential, …
  --steps N                sampling steps (default 20)
  --cfg X                  CFG scale (default 7)
  --seed N                 seed, -1 = random (default -1); image i of the job gets seed+i
  --subseed N, --subseed-strength X   variation seed and strength
  --width N, --height N    size in pixels (default 512 x 512)
  --batch-size N           images per batch (default 1)
  --batch-count N          number of batches (default 1)
  --clip-skip N            stop at the N-th last CLIP layer (default 1)
  --tiling                 seamless image that tiles (A1111 "Tiling": circular padding in UNet and VAE)
  --eta X, --ensd N, --rng GPU|CPU|NV   sampler eta, eta noise seed delta, random source
  --styles NAME            apply a style from <data-dir>/styles.csv (repeatable)
  --embeddings-dir DIR     textual-inversion embeddings (default <data-dir>/embeddings)
  --lora-dir DIR           LoRA/LyCORIS files for <lora:name:te:unet> tags (default <data-dir>/models/Lora;
                           <data-dir>/models/LyCORIS is searched too); name = file name or ss_output_name
  --params FILE.png        start from the parameters in an image's infotext; other flags override them
  --out DIR                outputs folder (default <data-dir>/outputs)
  --no-grid                do not save a grid of the job's images
  --data-dir DIR           A1111-style data folder (default: the current folder)
  --clip-vocab PATH        CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz); also $SDSTUDIO_CLIP_VOCAB
  --provider NAME          onnxruntime execution provider: cpu (default), cuda, webgpu, …
  --precision fp32|fp16|int8  UNet arithmetic (default fp32 on the CPU, fp16 on GPU providers;
                           --params images reuse theirs where the provider runs it)
                           fp16: UNet and text encoder in float16 (the VAE in float32), GPU only
                           int8: faster UNet on the CPU provider, slightly different images, the
                           first use of a checkpoint quantizes it once into the weights cache
  --refiner NAME           SDXL refiner checkpoint (models/Stable-diffusion or a path) that takes over
                           the sampling (the hires pass when --hires is on), as A1111's "Refiner"
  --refiner-switch-at X    fraction of the sampling done before the refiner takes over (default 0.8)
  --prediction v|eps       what the UNet predicts, overriding the file: SD 2.x 768-v and 512-base
                           have the same keys; without a <model>.yaml sidecar the model is probed
                           once as A1111 does (see README)
  --token-merging X        A1111 "Token merging ratio" 0 … 0.9 (default 0 = off): merge similar
                           tokens before the full-size self-attentions — faster, slightly
                           different images; 0.5 with --precision int8 is the fastest setting
  --cache-dir DIR          weights cache folder
  --live-preview FILE.png  keep FILE.png updated with a preview of the batch while sampling
  --preview-every N        preview every N steps (default 1)
  --preview-type TYPE      TAESD (default when <data-dir>/models/VAE-taesd/taesd_decoder.safetensors
                           is there), "Approx cheap" (default otherwise; also "Approx NN") or Full
`;

export const HIRES_USAGE = `Hires fix (txt2img):
  --hires                  enable the hires fix
  --hires-scale X          upscale by (default 2)
  --hires-width N, --hires-height N   upscale to (instead of a scale; one may be 0)
  --hires-upscaler NAME    Latent (default), "Latent (nearest-exact)", …, Lanczos, Nearest
  --hires-steps N          second-pass steps (default: same as --steps)
  --hires-denoise X        second-pass denoising strength (default 0.7)
  --hires-sampler NAME, --hires-scheduler NAME, --hires-prompt TEXT, --hires-negative TEXT
  --hires-token-merging X  token merging ratio of the second pass (default: --token-merging)
`;

export const IMG2IMG_USAGE = `img2img and inpainting:
  --denoise X              denoising strength (default 0.75)
  --resize-mode MODE       just-resize (default), crop-and-resize, resize-and-fill, latent-upscale
  --mask FILE              inpainting mask: white = repaint (or an image with transparency: the
                           transparent part is kept)
  --mask-blur N            mask blur (default 4)
  --invert-mask            inpaint the unmasked area ("Inpaint not masked")
  --masked-content MODE    original (default), fill, latent-noise, latent-nothing
  --only-masked            inpaint area "Only masked": crop around the mask, render at the size, paste back
  --padding N              padding around the mask for --only-masked (default 32)
  --noise-multiplier X     extra noise multiplier
`;

export const OPTIONS = {
  prompt: { type: 'string' },
  negative: { type: 'string' },
  model: { type: 'string' },
  vae: { type: 'string' },
  sampler: { type: 'string' },
  scheduler: { type: 'string' },
  steps: { type: 'string' },
  cfg: { type: 'string' },
  seed: { type: 'string' },
  subseed: { type: 'string' },
  'subseed-strength': { type: 'string' },
  width: { type: 'string' },
  height: { type: 'string' },
  'batch-size': { type: 'string' },
  'batch-count': { type: 'string' },
  'clip-skip': { type: 'string' },
  eta: { type: 'string' },
  ensd: { type: 'string' },
  rng: { type: 'string' },
  'token-merging': { type: 'string' },
  'hires-token-merging': { type: 'string' },
  styles: { type: 'string', multiple: true },
  params: { type: 'string' },
  out: { type: 'string' },
  'no-grid': { type: 'boolean' },
  'data-dir': { type: 'string' },
  'clip-vocab': { type: 'string' },
  provider: { type: 'string' },
  precision: { type: 'string' },
  prediction: { type: 'string' },
  refiner: { type: 'string' },
  'refiner-switch-at': { type: 'string' },
  'cache-dir': { type: 'string' },
  'live-preview': { type: 'string' },
  'preview-every': { type: 'string' },
  'preview-type': { type: 'string' },
  'embeddings-dir': { type: 'string' },
  'lora-dir': { type: 'string' },
  tiling: { type: 'boolean' },
  hires: { type: 'boolean' },
  'hires-scale': { type: 'string' },
  'hires-width': { type: 'string' },
  'hires-height': { type: 'string' },
  'hires-upscaler': { type: 'string' },
  'hires-steps': { type: 'string' },
  'hires-denoise': { type: 'string' },
  'hires-sampler': { type: 'string' },
  'hires-scheduler': { type: 'string' },
  'hires-prompt': { type: 'string' },
  'hires-negative': { type: 'string' },
  denoise: { type: 'string' },
  'resize-mode': { type: 'string' },
  mask: { type: 'string' },
  'mask-blur': { type: 'string' },
  'invert-mask': { type: 'boolean' },
  'masked-content': { type: 'string' },
  'only-masked': { type: 'boolean' },
  padding: { type: 'string' },
  'noise-multiplier': { type: 'string' },
} as const;

export type Values = ReturnType<
  typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>
>['values'];

/** The A1111 web UI's defaults, which a person at a terminal expects (the API's differ: steps 50, Euler). */
export const UI_DEFAULTS: Partial<GenerationParams> = {
  steps: 20,
  sampler_name: 'DPM++ 2M',
  scheduler: 'Automatic',
  denoising_strength: 0.75,
  inpainting_fill: 1,
  inpaint_full_res: false,
  inpaint_full_res_padding: 32,
  mask_blur: 4,
  hr_upscaler: 'Latent',
};

function num(values: Values, flag: keyof Values): number | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  const n = typeof v === 'string' ? parseDecimal(v) : NaN;
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) {
    throw new UserError(`--${String(flag)} needs a number (got "${String(v)}")`);
  }
  return n;
}

const RESIZE_MODES: Record<string, 0 | 1 | 2 | 3> = {
  'just-resize': 0,
  'crop-and-resize': 1,
  'resize-and-fill': 2,
  'latent-upscale': 3,
};

/** Flags that were given, as GenerationParams fields. */
export function paramsFromFlags(values: Values, mode: 'txt2img' | 'img2img'): Partial<GenerationParams> {
  const p: Record<string, unknown> = {};
  const set = (key: keyof GenerationParams, v: unknown) => {
    if (v !== undefined) p[key] = v;
  };
  set('prompt', values.prompt);
  set('negative_prompt', values.negative);
  set('sampler_name', values.sampler);
  set('scheduler', values.scheduler);
  set('steps', num(values, 'steps'));
  set('cfg_scale', num(values, 'cfg'));
  set('seed', num(values, 'seed'));
  set('subseed', num(values, 'subseed'));
  set('subseed_strength', num(values, 'subseed-strength'));
  set('width', num(values, 'width'));
  set('height', num(values, 'height'));
  set('batch_size', num(values, 'batch-size'));
  set('n_iter', num(values, 'batch-count'));
  set('eta', num(values, 'eta'));
  set('styles', values.styles);
  if (values.tiling) p.tiling = true;
  const o: Record<string, unknown> = {};
  if (values['clip-skip'] !== undefined) o.CLIP_stop_at_last_layers = num(values, 'clip-skip');
  if (values.ensd !== undefined) o.eta_noise_seed_delta = num(values, 'ensd');
  if (values.rng !== undefined) o.randn_source = values.rng.toUpperCase();
  if (values['token-merging'] !== undefined) o.token_merging_ratio = num(values, 'token-merging');
  if (values['hires-token-merging'] !== undefined) {
    o.token_merging_ratio_hr = num(values, 'hires-token-merging');
  }
  if (Object.keys(o).length) p.override_settings = o;

  const hiresFlags = Object.keys(values).filter((k) => k.startsWith('hires-'));
  if (mode === 'img2img' && (values.hires || hiresFlags.length)) {
    throw new UserError('the hires fix is a txt2img option; drop --hires* for img2img');
  }
  set('refiner_checkpoint', values.refiner);
  set('refiner_switch_at', num(values, 'refiner-switch-at'));
  if (values.hires || hiresFlags.length) {
    p.enable_hr = true;
    set('hr_scale', num(values, 'hires-scale'));
    set('hr_resize_x', num(values, 'hires-width'));
    set('hr_resize_y', num(values, 'hires-height'));
    set('hr_upscaler', values['hires-upscaler']);
    set('hr_second_pass_steps', num(values, 'hires-steps'));
    set('denoising_strength', num(values, 'hires-denoise'));
    set('hr_sampler_name', values['hires-sampler']);
    set('hr_scheduler', values['hires-scheduler']);
    set('hr_prompt', values['hires-prompt']);
    set('hr_negative_prompt', values['hires-negative']);
  }
  const imgFlags = [
    'denoise',
    'resize-mode',
    'mask',
    'mask-blur',
    'invert-mask',
    'masked-content',
    'only-masked',
    'padding',
    'noise-multiplier',
  ];
  if (mode === 'txt2img') {
    const given = imgFlags.filter((f) => values[f as keyof Values] !== undefined);
    if (given.length) throw new UserError(`--${given[0]} is an img2img option; use \`sdstudio img2img\``);
    return p as Partial<GenerationParams>;
  }
  set('denoising_strength', num(values, 'denoise'));
  if (values['resize-mode'] !== undefined) {
    const m = RESIZE_MODES[values['resize-mode']];
    if (m === undefined) {
      throw new UserError(`--resize-mode must be one of ${Object.keys(RESIZE_MODES).join(', ')}`);
    }
    p.resize_mode = m;
  }
  set('mask_blur', num(values, 'mask-blur'));
  if (values['invert-mask']) p.inpainting_mask_invert = 1;
  if (values['masked-content'] !== undefined) {
    const i = MASKED_CONTENT.indexOf(
      values['masked-content'].replace(/-/g, ' ') as (typeof MASKED_CONTENT)[number],
    );
    if (i < 0) throw new UserError('--masked-content must be fill, original, latent-noise or latent-nothing');
    p.inpainting_fill = i;
  }
  if (values['only-masked']) p.inpaint_full_res = true;
  set('inpaint_full_res_padding', num(values, 'padding'));
  set('initial_noise_multiplier', num(values, 'noise-multiplier'));
  return p as Partial<GenerationParams>;
}

/** `--live-preview FILE --preview-every N --preview-type TYPE`, checked before anything loads. */
export function previewFlags(
  values: Values,
): { path: string; every: number; mode: PreviewMode; explicit: boolean } | null {
  if (values['live-preview'] === undefined) {
    const stray = (['preview-every', 'preview-type'] as const).find((f) => values[f] !== undefined);
    if (stray) throw new UserError(`--${stray} needs --live-preview FILE.png`);
    return null;
  }
  const every = num(values, 'preview-every') ?? 1;
  if (!Number.isInteger(every) || every < 1) throw new UserError('--preview-every needs a whole number ≥ 1');
  const type = values['preview-type'];
  return {
    path: resolve(values['live-preview']),
    every,
    mode: type === undefined ? 'taesd' : previewModeOf(type),
    explicit: type !== undefined,
  };
}

export async function readImageFile(path: string, what: string): Promise<DecodedImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new UserError(`${what} ${path} cannot be read; check the path`);
  }
  return decodeImage(bytes, `${what} ${path}`);
}

/** Parameters of `--params FILE.png`, and the UNet precision its infotext records. */
export async function paramsFromImage(
  path: string,
): Promise<{ params: Partial<GenerationParams>; precision?: UnetPrecisionChoice; loraHashes?: string }> {
  const { readGenerationInfo } = await import('../infotext/image-metadata.js');
  const { parseInfotext } = await import('../infotext/infotext.js');
  const { geninfo } = await readGenerationInfo(path);
  if (!geninfo)
    throw new UserError(
      `${path} has no generation parameters (no A1111 "parameters" text in it); give an image SD Studio or A1111 saved, or drop --params`,
    );
  const dict = parseInfotext(geninfo);
  const loraHashes = typeof dict['Lora hashes'] === 'string' ? dict['Lora hashes'] : undefined;
  return { params: paramsFromInfotext(dict), precision: unetPrecisionFromInfotext(dict), loraHashes };
}
