/**
 * What `sdstudio txt2img` and `sdstudio img2img` share: flags → GenerationParams (over the A1111 web
 * UI's defaults, or over the infotext of `--params FILE.png`), model lookup, the run with a progress
 * bar, Ctrl-C as "interrupt", and saving in A1111's output layout.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { PromptStyle } from '../prompt/styles.js';
import { UserError } from '../util/errors.js';
import { progressBar, type Progress } from '../util/progress.js';
import type { StopFlags } from './generate.js';
import { decodeImage, type DecodedImage } from './images.js';
import { paramsFromInfotext, unetPrecisionFromInfotext } from './infotext-fields.js';
import { MASKED_CONTENT, withDefaults, type GenerationParams } from './params.js';
import { previewModeOf, type PreviewMode } from './preview-mode.js';
import {
  checkPrecisionProvider,
  defaultPrecision,
  precisionRunsOn,
  unetPrecisionOf,
  type UnetPrecisionChoice,
} from './unet-precision.js';

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

const OPTIONS = {
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
  'cache-dir': { type: 'string' },
  'live-preview': { type: 'string' },
  'preview-every': { type: 'string' },
  'preview-type': { type: 'string' },
  'embeddings-dir': { type: 'string' },
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

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** The A1111 web UI's defaults, which a person at a terminal expects (the API's differ: steps 50, Euler). */
const UI_DEFAULTS: Partial<GenerationParams> = {
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
  const n = Number(v);
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
function previewFlags(
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

async function readImageFile(path: string, what: string): Promise<DecodedImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new UserError(`${what} ${path} cannot be read; check the path`);
  }
  return decodeImage(bytes, `${what} ${path}`);
}

/** Parameters of `--params FILE.png`, and the UNet precision its infotext records. */
async function paramsFromImage(
  path: string,
): Promise<{ params: Partial<GenerationParams>; precision?: UnetPrecisionChoice }> {
  const { readGenerationInfo } = await import('../prompt/image-metadata.js');
  const { parseInfotext } = await import('../prompt/infotext.js');
  const { geninfo } = await readGenerationInfo(path);
  if (!geninfo)
    throw new UserError(
      `${path} has no generation parameters (no A1111 "parameters" text in it); give an image SD Studio or A1111 saved, or drop --params`,
    );
  const dict = parseInfotext(geninfo);
  return { params: paramsFromInfotext(dict), precision: unetPrecisionFromInfotext(dict) };
}

export async function runGenerateCommand(mode: 'txt2img' | 'img2img', argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: OPTIONS,
    allowPositionals: true,
    strict: true,
  });
  const dataDir = resolve(values['data-dir'] ?? '.');
  let initPath: string | undefined;
  let positionalPrompt: string | undefined;
  if (mode === 'txt2img') {
    if (positionals.length > 1) throw new UserError('give the prompt as one quoted argument');
    positionalPrompt = positionals[0];
  } else {
    if (positionals.length !== 1)
      throw new UserError('give one init image: sdstudio img2img INIT.png --prompt "…"');
    initPath = positionals[0];
  }
  const flagPrecision = values.precision === undefined ? undefined : unetPrecisionOf(values.precision);
  if (flagPrecision) checkPrecisionProvider(flagPrecision, values.provider);
  const image = values.params ? await paramsFromImage(values.params) : undefined;
  const fromImage = image?.params ?? {};
  const flags = paramsFromFlags(values, mode);
  if (positionalPrompt !== undefined) flags.prompt = positionalPrompt;
  if (values.prompt !== undefined && positionalPrompt !== undefined) {
    throw new UserError('give the prompt either as the argument or with --prompt, not both');
  }
  const merged: Partial<GenerationParams> = {
    ...UI_DEFAULTS,
    ...fromImage,
    ...flags,
    override_settings: { ...fromImage.override_settings, ...flags.override_settings },
  };
  if (mode === 'img2img' || (!fromImage.enable_hr && !flags.enable_hr)) merged.enable_hr = false;
  if (
    merged.enable_hr &&
    fromImage.denoising_strength === undefined &&
    flags.denoising_strength === undefined
  ) {
    merged.denoising_strength = 0.7; // A1111's hires-fix slider default
  }
  const params = withDefaults(merged);
  const preview = previewFlags(values);

  const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);
  const { findCheckpoint, findVae, loadModel } = await import('./model.js');
  let checkpoint: string;
  const wantedModel = values.model ?? (params.override_settings.sd_model_checkpoint as string | undefined);
  try {
    checkpoint = findCheckpoint(wantedModel, dataDir);
  } catch (e) {
    if (values.model || !wantedModel) throw e;
    warn(`the model of ${values.params} ("${wantedModel}") is not here; using the default model`);
    checkpoint = findCheckpoint(undefined, dataDir);
  }
  let vaePath: string | null;
  const infotextVae = params.override_settings.sd_vae as string | undefined;
  if (values.vae || !infotextVae) vaePath = findVae(values.vae ?? 'Automatic', checkpoint, dataDir);
  else {
    try {
      vaePath = findVae(infotextVae, checkpoint, dataDir);
    } catch {
      warn(`the VAE of ${values.params} ("${infotextVae}") is not here; using "Automatic"`);
      vaePath = findVae('Automatic', checkpoint, dataDir);
    }
  }
  // The explicit flag wins over --params; an image's precision this provider cannot run (int8
  // off the CPU, fp16 on it) falls back to the provider's default.
  let precision: UnetPrecisionChoice = flagPrecision ?? image?.precision ?? defaultPrecision(values.provider);
  if (!flagPrecision && !precisionRunsOn(precision, values.provider)) {
    const fallback = defaultPrecision(values.provider);
    warn(
      `${values.params} was made with the ${precision} UNet, which ${values.provider ?? 'cpu'} does not run; using ${fallback}`,
    );
    precision = fallback;
  }
  const provider = values.provider
    ? (await import('../runtime/session.js')).checkProvider(values.provider)
    : undefined;

  let styles: PromptStyle[] | undefined;
  if (params.styles.length) {
    const file = join(dataDir, 'styles.csv');
    if (!existsSync(file)) throw new UserError(`--styles needs ${file}; create it or drop --styles`);
    styles = await (await import('../prompt/styles.js')).loadStyles(file);
    const missing = params.styles.filter((s) => !styles!.some((x) => x.name === s));
    if (missing.length)
      throw new UserError(
        `style "${missing[0]}" is not in ${file}; its styles are: ${styles.map((x) => x.name).join(', ') || 'none'}`,
      );
  }

  const initImages = initPath ? [await readImageFile(initPath, 'init image')] : undefined;
  const mask = values.mask ? await readImageFile(values.mask, 'mask') : null;

  const model = await loadModel({
    checkpoint,
    vaePath,
    provider,
    cacheDir: values['cache-dir'],
    clipVocab: values['clip-vocab'],
    unetPrecision: precision,
    onNotice: (message) => process.stderr.write(`${message}\n`),
  });
  const { loadPreviewDecoder } = await import('./taesd.js');
  // Without --preview-type, TAESD is used when its file is there, silently falling back otherwise.
  const taesd = preview
    ? await loadPreviewDecoder(preview.mode, dataDir, {
        provider,
        cacheDir: values['cache-dir'],
        warn: preview.explicit ? warn : undefined,
      })
    : null;
  const previewFile =
    preview && (await import('./live-preview.js')).livePreviewFile(preview.path, params.batch_size);
  const stop: StopFlags = { interrupted: false, skipped: false };
  const onSigint = () => {
    if (stop.interrupted) process.exit(130);
    stop.interrupted = true;
    process.stderr.write('\ninterrupting after the current step (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  let bar: Progress | undefined;
  let barJob = -1;
  try {
    const { EmbeddingDatabase } = await import('../prompt/embeddings.js');
    const { generate } = await import('./generate.js');
    const { encodePngWithInfotext, saveOutput } = await import('./outputs.js');
    const embeddings = await EmbeddingDatabase.loadDir(
      resolve(values['embeddings-dir'] ?? join(dataDir, 'embeddings')),
      {
        expectedWidth: model.engine.config.text.width,
      },
    );
    for (const w of embeddings.warnings) warn(w);
    const result = await generate(
      model,
      params,
      mode,
      { initImages, mask },
      {
        stop,
        styles,
        warn,
        grid: !values['no-grid'],
        ...(previewFile && {
          onPreview: (p) => previewFile.onPreview(p),
          previewEvery: preview!.every,
          previewMode: preview!.mode,
          taesd,
        }),
        onProgress: (p) => {
          if (p.job !== barJob) {
            bar?.finish();
            barJob = p.job;
            bar = progressBar(p.steps, { label: `${p.phase} ${p.job + 1}/${p.jobCount}`, unit: 'it' });
          }
          bar!.update(p.step);
        },
      },
    );
    bar?.finish();
    await previewFile
      ?.flush()
      .catch((e: Error) => warn(`live preview ${preview!.path} not written: ${e.message}`));
    const outRoot = resolve(values.out ?? join(dataDir, 'outputs'));
    const date = new Date();
    for (const img of result.images) {
      const png = await encodePngWithInfotext(img.image, img.infotext);
      const path = await saveOutput(png, { root: outRoot, kind: `${mode}-images`, seed: img.seed, date });
      process.stdout.write(path + '\n');
    }
    if (result.grid) {
      const png = await encodePngWithInfotext(result.grid.image, result.grid.infotext);
      process.stdout.write((await saveOutput(png, { root: outRoot, kind: `${mode}-grids`, date })) + '\n');
    }
    if (result.interrupted) {
      process.stderr.write(`interrupted: saved ${result.images.length} image(s)\n`);
      return 130;
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    await taesd?.release();
    await model.release();
  }
}
