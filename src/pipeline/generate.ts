/**
 * The generation loop A1111 users know (processing.py process_images): batch count × batch size
 * images with seeds seed+i, txt2img with an optional hires fix, img2img with resize modes and
 * inpainting (mask, blur, masked content, only-masked crop, composite back), per-image infotext,
 * live previews, interrupt and skip.
 */
import { formatInfotext } from '../infotext/infotext.js';
import { parseExtraNetworks } from '../prompt/extra-networks.js';
import { applyStyles, type PromptStyle } from '../prompt/styles.js';
import {
  planSampling,
  requireSampler,
  runSampler,
  startLatent,
  type SamplerOptions,
  type StepInfo,
} from '../sampling/index.js';
import { BrownianNoise, imageRngNoise } from '../sampling/noise.js';
import { ImageRng } from '../sampling/seeds.js';
import { UserError } from '../util/errors.js';
import { Conditioner, type TextEmbedding } from './conditioning.js';
import { CfgDenoiser, type ImageConditioning } from './denoiser.js';
import { refinerGate } from './refiner.js';
import {
  cheapPreview,
  crop,
  flatten,
  imageGrid,
  imageToTensor,
  resizeImage,
  resizeRgb,
  type DecodedImage,
  type GrayImage,
  type RgbImage,
} from '../image/images.js';
import { paramsToInfotextFields } from '../infotext/infotext-fields.js';
import { cropLatent, interpolate, LATENT_MODES } from '../image/latents.js';
import {
  applyOverlay,
  blurMask,
  expandCropRegion,
  fillMasked,
  getCropRegion,
  invertMask,
  latentMask,
  maskFromImage,
  overlayMaskWholePicture,
  type PasteLocation,
} from '../image/masks.js';
import type { LoadedModel } from './model.js';
import {
  clipSkipOf,
  ensdOf,
  fixSeed,
  hiresTargetSize,
  jobSeeds,
  randnSourceOf,
  resolveSampler,
  sMinUncondOf,
  tokenMergingRatioOf,
  type GenerationParams,
} from '../params/generation.js';
import type { PreviewMode } from './preview-mode.js';
import type { PreviewDecoder } from './taesd.js';
import { decodeLatents, encodeImage } from './vae.js';

export const VERSION = 'sdstudio-0.1.0';

/** Set from outside (another request, a signal handler) and checked before every UNet call. */
export interface StopFlags {
  interrupted: boolean;
  skipped: boolean;
}

export interface ProgressInfo {
  /**
   * What runs: sampling a txt2img batch ('txt2img', or 'first pass' when a hires fix follows), the
   * hires fix's second pass, an img2img batch, or the VAE decoding the batch's images (step = images
   * decoded, steps = batch size; reported through `onStage` only).
   */
  phase: 'txt2img' | 'first pass' | 'hires fix' | 'img2img' | 'vae decode';
  /** Batch index (0-based) and count; the hires pass counts as its own job as in A1111. */
  job: number;
  jobCount: number;
  step: number;
  steps: number;
}

export interface GenerateHooks {
  stop?: StopFlags;
  /** After each sampling step (step 1 … steps). */
  onProgress?: (p: ProgressInfo) => void;
  /** When a sampling pass starts (step 0) and around each image's VAE decode. */
  onStage?: (p: ProgressInfo) => void;
  /** Live preview of each image every `previewEvery` steps (0 = never). */
  onPreview?: (p: { image: RgbImage; index: number; step: number }) => void;
  previewEvery?: number;
  /**
   * "cheap": A1111's linear latent→RGB at latent size (free); "full": the VAE decodes the denoised
   * latent; "taesd": the `taesd` decoder does (cheap when there is none or it does not fit the model).
   */
  previewMode?: PreviewMode;
  /** TAESD decoder for previewMode "taesd" (pipeline/taesd.ts `loadPreviewDecoder`). */
  taesd?: PreviewDecoder | null;
  /** Every UNet call (tests use it to check interrupt latency). */
  onModelCall?: () => void;
  styles?: readonly PromptStyle[];
  /** Textual-inversion embeddings by name (an EmbeddingDatabase's `loaded`); `hash` feeds "TI hashes". */
  embeddings?: ReadonlyMap<string, TextEmbedding & { hash?: string }>;
  /** Make a grid of the job's images when it has at least two. */
  grid?: boolean;
  /**
   * Each finished image (decoded, composited, with its infotext) as soon as it is there, in order;
   * `index` counts the job's images. Awaited before the job goes on, so a saver keeps pace.
   */
  onImage?: (image: GeneratedImage, index: number) => void | Promise<void>;
  warn?: (message: string) => void;
  /** Extra-network kinds the front door applied (`lora`, `lyco`): their tags are not warned about. */
  appliedNetworkKinds?: ReadonlySet<string>;
  /** "Lora hashes" infotext value of the applied networks. */
  loraHashes?: string | null;
  /**
   * SDXL refiner (A1111 "Refiner"): the loaded refiner checkpoint, its title for the infotext
   * ("name [hash]") and the switch point. It takes over the first pass (txt2img, img2img), or only
   * the hires pass when the hires fix is on (A1111's default "second pass").
   */
  refiner?: { model: LoadedModel; title: string; switchAt: number };
}

export interface GenerateInputs {
  /** img2img: decoded init images (one is repeated for the batch). */
  initImages?: readonly DecodedImage[];
  mask?: DecodedImage | null;
}

export interface GeneratedImage {
  image: RgbImage;
  infotext: string;
  seed: number;
  subseed: number;
  prompt: string;
  negativePrompt: string;
}

export interface GenerationResult {
  images: GeneratedImage[];
  grid: { image: RgbImage; infotext: string } | null;
  seeds: number[];
  subseeds: number[];
  interrupted: boolean;
}

type Dims = [number, number, number, number];

interface Img2ImgPrep {
  /** Per batch slot: the init latent [C·h·w]. */
  initLatents: Float32Array[];
  /** Repaint mask at latent resolution (1 = repaint), [h·w]; null without a mask. */
  nmask: Float32Array | null;
  /** For compositing back. */
  overlays: { original: RgbImage; mask: GrayImage }[] | null;
  pasteTo: PasteLocation | null;
  /** Inpainting-model conditioning per slot [5·h·w]. */
  imageConditioning: Float32Array[] | null;
  batchSize: number;
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Inpainting-model conditioning: [mask (1 ch, nearest to latent size), latent of the masked image]. */
async function inpaintConditioning(
  model: LoadedModel,
  imageTensor: Float32Array,
  width: number,
  height: number,
  mask: GrayImage | null,
): Promise<Float32Array> {
  const n = width * height;
  const masked = new Float32Array(imageTensor.length);
  const bin = new Float32Array(n);
  for (let i = 0; i < n; i++) bin[i] = mask ? Math.round(mask.data[i]! / 255) : 1;
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < n; i++) masked[c * n + i] = imageTensor[c * n + i]! * (1 - bin[i]!);
  const lat = await encodeImage(
    model.engine,
    { data: masked, width, height },
    model.scaleFactor,
    model.latentChannels,
    null,
  );
  const lw = width / 8;
  const lh = height / 8;
  const small = interpolate(bin, [1, 1, height, width], lh, lw, 'nearest');
  return concat([small, lat]);
}

/** A1111 StableDiffusionProcessingImg2Img.init: masks, resize/crop, fill, init latents. */
async function prepareImg2Img(
  model: LoadedModel,
  p: GenerationParams,
  inputs: GenerateInputs,
  seeds: readonly number[],
  warn: (m: string) => void,
): Promise<Img2ImgPrep> {
  const inits = inputs.initImages ?? [];
  if (inits.length === 0) throw new UserError('img2img needs an init image');
  let batchSize = p.batch_size;
  if (inits.length > 1) {
    if (inits.length > p.batch_size) {
      throw new UserError(
        `${inits.length} init images given for batch size ${p.batch_size}; give at most ${p.batch_size}`,
      );
    }
    batchSize = inits.length;
  }
  const W = p.width;
  const H = p.height;
  let imageMask: GrayImage | null = null;
  let overlayMask: GrayImage | null = null;
  let cropRegion: ReturnType<typeof getCropRegion> = null;
  if (inputs.mask) {
    const first = inits[0]!;
    let m = maskFromImage(inputs.mask, p.mask_round);
    if (m.width !== first.width || m.height !== first.height) {
      m = await resizeImage(0, m, first.width, first.height);
    }
    if (p.inpainting_mask_invert) m = invertMask(m);
    if (p.mask_blur_x > 0 || p.mask_blur_y > 0) m = blurMask(m, p.mask_blur_x, p.mask_blur_y);
    const onlyMasked = p.inpaint_full_res;
    if (onlyMasked) cropRegion = getCropRegion(m, p.inpaint_full_res_padding);
    if (onlyMasked && !cropRegion) {
      // As A1111: a blank mask with "only masked" drops the mask and runs plain img2img.
      warn('Unable to perform "Inpaint Only mask" because the mask is blank; running plain img2img');
    } else if (cropRegion) {
      overlayMask = m;
      cropRegion = expandCropRegion(cropRegion, W, H, m.width, m.height);
      const { x1, y1, x2, y2 } = cropRegion;
      imageMask = await resizeImage(2, crop(m, x1, y1, x2, y2), W, H);
    } else {
      imageMask = await resizeImage(p.resize_mode === 3 ? 0 : p.resize_mode, m, W, H);
      overlayMask = overlayMaskWholePicture(imageMask);
    }
  }
  const pasteTo = cropRegion
    ? {
        x: cropRegion.x1,
        y: cropRegion.y1,
        w: cropRegion.x2 - cropRegion.x1,
        h: cropRegion.y2 - cropRegion.y1,
      }
    : null;

  const latentShape: [number, number, number] = [model.latentChannels, H / 8, W / 8];
  const source = randnSourceOf(p);
  const initLatents: Float32Array[] = [];
  const overlays: { original: RgbImage; mask: GrayImage }[] = [];
  const imageConditioning: Float32Array[] = [];
  for (let slot = 0; slot < batchSize; slot++) {
    const decoded = inits[inits.length === 1 ? 0 : slot]!;
    let image = flatten(decoded);
    if (!cropRegion) {
      // Latent upscale (mode 3) resizes the latent; the image only needs a size the VAE takes.
      image =
        p.resize_mode === 3
          ? await resizeRgb(
              image,
              Math.max(8, Math.round(image.width / 8) * 8),
              Math.max(8, Math.round(image.height / 8) * 8),
            )
          : await resizeImage(p.resize_mode, image, W, H);
    }
    if (overlayMask) {
      const original = p.resize_mode === 3 && !cropRegion ? await resizeRgb(image, W, H) : image;
      overlays.push({ original, mask: overlayMask });
    }
    if (cropRegion) {
      image = await resizeImage(
        2,
        crop(image, cropRegion.x1, cropRegion.y1, cropRegion.x2, cropRegion.y2),
        W,
        H,
      );
    }
    if (imageMask && p.inpainting_fill !== 1) image = fillMasked(image, imageMask);
    let latent = await encodeImage(
      model.engine,
      image,
      model.scaleFactor,
      model.latentChannels,
      seeds[slot]!,
      source,
    );
    if (p.resize_mode === 3 && (image.width !== W || image.height !== H)) {
      latent = interpolate(
        latent,
        [1, model.latentChannels, image.height / 8, image.width / 8],
        H / 8,
        W / 8,
        'bilinear',
      );
    }
    initLatents.push(latent);
    if (model.inpainting) {
      const t =
        image.width === W && image.height === H
          ? imageToTensor(image)
          : imageToTensor(await resizeRgb(image, W, H));
      imageConditioning.push(await inpaintConditioning(model, t, W, H, imageMask));
    }
  }

  let nmask: Float32Array | null = null;
  if (imageMask) {
    const lm = await latentMask(imageMask, W / 8, H / 8);
    nmask = concat(Array.from({ length: latentShape[0] }, () => lm));
    if (p.inpainting_fill === 2 || p.inpainting_fill === 3) {
      // A1111 draws "latent noise" from the first batch's seeds, once, for every batch.
      const noise =
        p.inpainting_fill === 2
          ? new ImageRng({ shape: latentShape, seeds: seeds.slice(0, batchSize), source }).next()
          : null;
      const n = nmask.length;
      initLatents.forEach((lat, slot) => {
        for (let k = 0; k < n; k++) {
          lat[k] = lat[k]! * (1 - nmask![k]!) + (noise ? noise[slot * n + k]! * nmask![k]! : 0);
        }
      });
    }
  }
  return {
    initLatents,
    nmask,
    overlays: overlayMask ? overlays : null,
    pasteTo,
    imageConditioning: model.inpainting ? imageConditioning : null,
    batchSize,
  };
}

/** Inpainting-model conditioning for txt2img: an all-ones mask over a black image. */
async function txt2imgConditioning(
  model: LoadedModel,
  width: number,
  height: number,
  batch: number,
): Promise<Float32Array | undefined> {
  if (!model.inpainting) return undefined;
  const black = new Float32Array(3 * width * height).fill(-1);
  const one = await inpaintConditioning(model, black, width, height, null);
  return concat(Array.from({ length: batch }, () => one));
}

interface SampleArgs {
  model: LoadedModel;
  /** The refiner for this pass (its conditioning is attached to `conds` as TextCond.alt). */
  refiner?: { model: LoadedModel; switchAt: number; onSwitch: () => void };
  p: GenerationParams;
  sampler: string;
  scheduler: string;
  steps: number;
  conds: ImageConditioning[];
  rng: ImageRng;
  seeds: number[];
  x0: Float32Array | null;
  noise: Float32Array;
  dims: Dims;
  denoisingStrength?: number;
  fixSteps?: boolean;
  imageConditioning?: Float32Array;
  initLatent?: Float32Array;
  nmask?: Float32Array;
  hooks: GenerateHooks;
  progress: Omit<ProgressInfo, 'step' | 'steps'>;
  /** Token merging in this pass's UNet calls (0 = off). */
  tokenMergeRatio: number;
}

/** One sampler run over a batch; returns the latents and whether it was stopped. */
async function sample(a: SampleArgs): Promise<{ x: Float32Array; stopped?: 'interrupt' | 'skip' }> {
  const { model, p, hooks } = a;
  const [b, c, h, w] = a.dims;
  const plan = planSampling({
    sampler: a.sampler,
    scheduler: a.scheduler,
    steps: a.steps,
    schedule: model.schedule,
    denoisingStrength: a.denoisingStrength,
    img2imgFixSteps: a.fixSteps,
  });
  const x = startLatent(plan, a.noise, a.x0 ?? undefined, model.schedule.alphasCumprod);
  let pending: { latent: Float32Array; step: number } | null = null;
  const taesd = hooks.previewMode === 'taesd' && hooks.taesd?.latentChannels === c ? hooks.taesd : null;
  if (a.refiner && a.refiner.model.latentChannels !== c) {
    throw new UserError(`the refiner has ${a.refiner.model.latentChannels} latent channels, this model ${c}`);
  }
  const gate = a.refiner ? refinerGate(model.schedule, a.refiner.switchAt, a.refiner.onSwitch) : null;
  const denoiser = new CfgDenoiser({
    unet: async (xt, t, context, extras) => {
      // A full or TAESD preview is decoded between steps, before the next UNet call.
      if (pending) {
        const { latent, step } = pending;
        pending = null;
        const imgs = taesd
          ? await taesd.decode(latent, a.dims)
          : await decodeLatents(model.engine, latent, a.dims, model.scaleFactor);
        imgs.forEach((image, index) => hooks.onPreview?.({ image, index, step }));
      }
      // SDXL refiner: from the switch on, its UNet runs on its own conditioning (TextCond.alt).
      if (gate && extras.alt && gate(t.data[0]!)) {
        return a.refiner!.model.engine.unet({
          x: xt,
          t,
          context: extras.alt.context,
          y: extras.alt.y,
          tokenMergeRatio: a.tokenMergeRatio,
        });
      }
      return model.engine.unet({ x: xt, t, context, y: extras.y, tokenMergeRatio: a.tokenMergeRatio });
    },
    schedule: model.schedule,
    latentShape: [c, h, w],
    images: a.conds,
    cfgScale: p.cfg_scale,
    prediction: model.prediction ?? 'eps',
    lcm: plan.sampler.kind === 'lcm',
    sMinUncond: sMinUncondOf(p),
    imageConditioning: a.imageConditioning,
    initLatent: a.initLatent,
    nmask: a.nmask,
    onModelCall: () => hooks.onModelCall?.(),
  });
  let brownian: BrownianNoise | undefined;
  if (plan.sampler.brownianNoise) {
    const positive = plan.sigmas.filter((s) => s > 0);
    brownian = new BrownianNoise(c * h * w, a.seeds, Math.min(...positive), Math.max(...positive));
  }
  const every = hooks.previewEvery ?? 0;
  hooks.onStage?.({ ...a.progress, step: 0, steps: plan.steps });
  const callback = (info: StepInfo): void => {
    hooks.onProgress?.({ ...a.progress, step: info.i + 1, steps: plan.steps });
    if (hooks.onPreview && every > 0 && (info.i + 1) % every === 0) {
      if (hooks.previewMode === 'full' || taesd) {
        pending = { latent: info.denoised.slice(), step: info.i + 1 };
        return;
      }
      for (let i = 0; i < b; i++) {
        hooks.onPreview({
          image: cheapPreview(info.denoised, w, h, i * c * h * w),
          index: i,
          step: info.i + 1,
        });
      }
    }
  };
  const options: SamplerOptions = {
    eta: p.eta ?? undefined,
    sChurn: p.s_churn ?? undefined,
    sTmin: p.s_tmin ?? undefined,
    sTmax: p.s_tmax || undefined,
    sNoise: p.s_noise ?? undefined,
  };
  const stop = hooks.stop;
  return runSampler(
    plan,
    {
      model: denoiser.model,
      epsModel: denoiser.epsModel,
      alphasCumprod: model.schedule.alphasCumprod,
      noise: imageRngNoise(a.rng, brownian),
      callback,
      shouldStop: () => (stop?.interrupted ? 'interrupt' : stop?.skipped ? 'skip' : null),
    },
    x,
    options,
  );
}

function upscalerKernel(name: string): 'lanczos3' | 'nearest' {
  return name === 'Nearest' ? 'nearest' : 'lanczos3';
}

/** A1111's "TI hashes" value for the embeddings the prompts used. */
function tiHashes(used: ReadonlySet<string>, all: GenerateHooks['embeddings']): string | null {
  const parts: string[] = [];
  for (const name of used) {
    const hash = all?.get(name)?.hash;
    if (hash) parts.push(`${name.replaceAll(':', '').replaceAll(',', '')}: ${hash}`);
  }
  return parts.length ? parts.join(', ') : null;
}

/**
 * Latents are 1/8 of the image. Sizes that the UNet cannot halve evenly at every level run with
 * A1111's skip-connection resize (the engine picks that graph), so any multiple of 8 works.
 */
function checkUnetSize(width: number, height: number, what: string): void {
  const m = 8;
  if (width % m !== 0 || height % m !== 0) {
    throw new UserError(
      `${what} ${width}x${height} must be a multiple of ${m} for this model; try ${Math.max(m, Math.round(width / m) * m)}x${Math.max(m, Math.round(height / m) * m)}`,
    );
  }
}

/** Runs a whole job. `mode` decides txt2img (with hires fix) or img2img (with inpainting). */
export async function generate(
  model: LoadedModel,
  params: GenerationParams,
  mode: 'txt2img' | 'img2img',
  inputs: GenerateInputs = {},
  hooks: GenerateHooks = {},
): Promise<GenerationResult> {
  const warn = hooks.warn ?? (() => undefined);
  const p: GenerationParams = { ...params };
  const resolved = resolveSampler(p.sampler_name, p.scheduler);
  requireSampler(resolved.sampler);
  // Seamless tiling: every UNet/VAE convolution pads circularly for this job (A1111 apply_circular).
  if (p.tiling) model = { ...model, engine: model.engine.withTiling(true) };
  if (p.restore_faces) throw new UserError('face restoration is not available yet; turn restore_faces off');
  checkUnetSize(p.width, p.height, 'width/height');
  if (mode === 'txt2img' && p.enable_hr) {
    const t = hiresTargetSize(p);
    checkUnetSize(t.width - 8 * t.truncateX, t.height - 8 * t.truncateY, 'hires fix size');
  }
  const seed = fixSeed(p.seed);
  const subseed = fixSeed(p.subseed);
  const source = randnSourceOf(p);

  let prep: Img2ImgPrep | null = null;
  if (mode === 'img2img') {
    const { seeds } = jobSeeds(p, seed, subseed);
    prep = await prepareImg2Img(model, p, inputs, seeds, warn);
    p.batch_size = prep.batchSize;
  }
  const total = p.batch_size * p.n_iter;
  const { seeds, subseeds } = jobSeeds(p, seed, subseed);
  const styled = (prompt: string, negative: string) =>
    hooks.styles && p.styles.length
      ? applyStyles(prompt, negative, p.styles, hooks.styles)
      : { prompt, negativePrompt: negative };
  const main = styled(p.prompt, p.negative_prompt);
  const allPrompts = Array.from({ length: total }, () => main.prompt);
  const allNegatives = Array.from({ length: total }, () => main.negativePrompt);
  const hrStyled = styled(p.hr_prompt, p.hr_negative_prompt);
  // SDXL's vector takes the pass's image size (A1111: original = target = (height, width)).
  const conditionerFor = (height: number, width: number) =>
    new Conditioner({
      model: model.engine,
      tokenizer: model.tokenizer,
      clipSkip: clipSkipOf(p),
      embeddings: hooks.embeddings,
      sdxl: { size: [height, width] },
    });
  const conditioner = conditionerFor(p.height, p.width);
  // SDXL refiner: its own conditioner (bigG only, aesthetic scores) and whether it took over.
  const refiner = hooks.refiner;
  let refinerUsed = false;
  const refinerArgs = async (
    texts: { prompt: string; negative: string }[],
    baseConds: ImageConditioning[],
    steps: number,
    size: [number, number],
    hiresSteps?: number,
  ): Promise<SampleArgs['refiner']> => {
    if (!refiner) return undefined;
    const rc = new Conditioner({
      model: refiner.model.engine,
      tokenizer: refiner.model.tokenizer,
      clipSkip: clipSkipOf(p),
      embeddings: hooks.embeddings,
      sdxl: { size },
    });
    const conds = await Promise.all(texts.map((t) => rc.forImage(t.prompt, t.negative, steps, hiresSteps)));
    // The same texts give schedules of the same shape: each base entry gets its refiner twin.
    baseConds.forEach((img, i) => {
      img.parts.forEach((part, j) =>
        part.schedule.forEach((e, k) => (e.cond.alt = conds[i]!.parts[j]!.schedule[k]!.cond)),
      );
      img.uncond.forEach((e, k) => (e.cond.alt = conds[i]!.uncond[k]!.cond));
    });
    return {
      model: refiner.model,
      switchAt: refiner.switchAt,
      onSwitch: () => {
        refinerUsed = true;
      },
    };
  };
  if (conditioner.skippedEmbeddings.length > 0) {
    warn(
      `embeddings not compatible with this ${model.engine.family} model were skipped: ${conditioner.skippedEmbeddings.join(', ')}`,
    );
  }
  // A1111 counts prompt-editing steps per model call, so second-order samplers get twice the steps.
  const condSteps = (sampler: string, steps: number) =>
    requireSampler(sampler).sampler.secondOrder ? steps * 2 : steps;
  const hires = mode === 'txt2img' && p.enable_hr;
  const jobCount = p.n_iter * (hires ? 2 : 1);
  const C = model.latentChannels;
  const h = p.height / 8;
  const w = p.width / 8;

  const results: GeneratedImage[] = [];
  let interrupted = false;
  // An inpainting model's txt2img conditioning (a VAE encode) is the same for every batch: once.
  let firstPassConditioning: Promise<Float32Array | undefined> | undefined;
  for (let n = 0; n < p.n_iter; n++) {
    if (hooks.stop?.interrupted) {
      interrupted = true;
      break;
    }
    if (hooks.stop) hooks.stop.skipped = false;
    const idx = Array.from({ length: p.batch_size }, (_, i) => n * p.batch_size + i);
    const bSeeds = idx.map((i) => seeds[i]!);
    const bSubseeds = idx.map((i) => subseeds[i]!);
    const prompts = idx.map((i) => parseExtraNetworks(allPrompts[i]!));
    const negatives = idx.map((i) => parseExtraNetworks(allNegatives[i]!));
    const applied = hooks.appliedNetworkKinds ?? new Set<string>();
    if (n === 0 && prompts.some((x) => x.networks.some((t) => !applied.has(t.name)))) {
      warn(
        'extra networks other than <lora:…> (<hypernet:…>, …) are not applied yet; their tags were removed from the prompt',
      );
    }
    if (n === 0 && negatives.some((x) => x.networks.length > 0)) {
      warn('extra-network tags in the negative prompt are not applied; they were removed from it');
    }
    const steps1 = condSteps(resolved.sampler, p.steps);
    const conds = await Promise.all(
      prompts.map((pr, i) => conditioner.forImage(pr.prompt, negatives[i]!.prompt, steps1)),
    );
    // The refiner takes the first pass unless the hires fix is on (then only the second pass).
    const firstRefiner = hires
      ? undefined
      : await refinerArgs(
          prompts.map((pr, i) => ({ prompt: pr.prompt, negative: negatives[i]!.prompt })),
          conds,
          steps1,
          [p.height, p.width],
        );
    const rngOpts = {
      seeds: bSeeds,
      subseeds: bSubseeds,
      subseedStrength: p.subseed_strength,
      seedResizeFromH: p.seed_resize_from_h > 0 ? p.seed_resize_from_h : 0,
      seedResizeFromW: p.seed_resize_from_w > 0 ? p.seed_resize_from_w : 0,
      source,
      etaNoiseSeedDelta: ensdOf(p),
    };
    const rng = new ImageRng({ ...rngOpts, shape: [C, h, w] });
    let dims: Dims = [p.batch_size, C, h, w];
    let noise = rng.next();
    let latents: Float32Array;
    let stopped: 'interrupt' | 'skip' | undefined;
    // What the first pass samples with, txt2img or img2img.
    const pass = {
      model,
      p,
      sampler: resolved.sampler,
      scheduler: resolved.schedulerName,
      steps: p.steps,
      conds,
      rng,
      seeds: bSeeds,
      dims,
      hooks,
    };
    if (prep) {
      const mult = p.initial_noise_multiplier ?? 1;
      if (mult !== 1) noise = noise.map((v) => v * mult);
      const init = concat(prep.initLatents);
      const nmask = prep.nmask ? concat(Array.from({ length: p.batch_size }, () => prep!.nmask!)) : undefined;
      const r = await sample({
        ...pass,
        x0: init,
        noise,
        denoisingStrength: p.denoising_strength,
        imageConditioning: prep.imageConditioning ? concat(prep.imageConditioning) : undefined,
        initLatent: nmask ? init : undefined,
        nmask,
        progress: { phase: 'img2img', job: n, jobCount },
        refiner: firstRefiner,
        tokenMergeRatio: tokenMergingRatioOf(p, 'img2img'),
      });
      latents = r.x;
      stopped = r.stopped;
      if (nmask)
        for (let k = 0; k < latents.length; k++)
          latents[k] = latents[k]! * nmask[k]! + init[k]! * (1 - nmask[k]!);
    } else {
      const r = await sample({
        ...pass,
        x0: null,
        noise,
        imageConditioning: await (firstPassConditioning ??= txt2imgConditioning(
          model,
          p.width,
          p.height,
          p.batch_size,
        )),
        progress: { phase: hires ? 'first pass' : 'txt2img', job: hires ? n * 2 : n, jobCount },
        refiner: firstRefiner,
        tokenMergeRatio: tokenMergingRatioOf(p, 'txt2img'),
      });
      latents = r.x;
      stopped = r.stopped;
    }

    if (hires && stopped !== 'interrupt') {
      const target = hiresTargetSize(p);
      const latentMode = LATENT_MODES[p.hr_upscaler];
      const th = Math.floor(target.height / 8);
      const tw = Math.floor(target.width / 8);
      let up: Float32Array;
      if (latentMode) {
        up = interpolate(latents, dims, th, tw, latentMode.mode);
      } else {
        const low = await decodeLatents(model.engine, latents, dims, model.scaleFactor);
        const encoded: Float32Array[] = [];
        for (let i = 0; i < low.length; i++) {
          const big = await resizeRgb(low[i]!, target.width, target.height, upscalerKernel(p.hr_upscaler));
          const fitted = big.width % 8 || big.height % 8 ? await resizeRgb(big, tw * 8, th * 8) : big;
          encoded.push(await encodeImage(model.engine, fitted, model.scaleFactor, C, bSeeds[i]!, source));
        }
        up = concat(encoded);
      }
      const tx = target.truncateX;
      const ty = target.truncateY;
      const cropped = cropLatent(
        up,
        [p.batch_size, C, th, tw],
        ty >> 1,
        (ty + 1) >> 1,
        tx >> 1,
        (tx + 1) >> 1,
      );
      dims = cropped.dims;
      const hrRng = new ImageRng({ ...rngOpts, shape: [C, dims[2], dims[3]] });
      const hrSampler =
        p.hr_sampler_name && p.hr_sampler_name !== 'Use same sampler' ? p.hr_sampler_name : p.sampler_name;
      const hrSched =
        p.hr_scheduler && p.hr_scheduler !== 'Use same scheduler' ? p.hr_scheduler : p.scheduler;
      const hrResolved = resolveSampler(hrSampler, hrSched);
      const hrSteps = p.hr_second_pass_steps || p.steps;
      const hrPrompts = idx.map((i) => parseExtraNetworks(p.hr_prompt ? hrStyled.prompt : allPrompts[i]!));
      const hrNegs = idx.map((i) =>
        parseExtraNetworks(p.hr_negative_prompt ? hrStyled.negativePrompt : allNegatives[i]!),
      );
      const hrConditioner = model.engine.config.vector ? conditionerFor(th * 8, tw * 8) : conditioner;
      const hrConds = await Promise.all(
        hrPrompts.map((pr, i) =>
          hrConditioner.forImage(
            pr.prompt,
            hrNegs[i]!.prompt,
            steps1,
            condSteps(hrResolved.sampler, hrSteps),
          ),
        ),
      );
      const r = await sample({
        model,
        p,
        sampler: hrResolved.sampler,
        scheduler: hrResolved.schedulerName,
        steps: hrSteps,
        conds: hrConds,
        rng: hrRng,
        seeds: bSeeds,
        x0: cropped.data,
        noise: hrRng.next(),
        dims,
        denoisingStrength: p.denoising_strength,
        fixSteps: true,
        imageConditioning: await txt2imgConditioning(model, dims[3] * 8, dims[2] * 8, p.batch_size),
        hooks,
        progress: { phase: 'hires fix', job: n * 2 + 1, jobCount },
        refiner: await refinerArgs(
          hrPrompts.map((pr, i) => ({ prompt: pr.prompt, negative: hrNegs[i]!.prompt })),
          hrConds,
          steps1,
          [th * 8, tw * 8],
          condSteps(hrResolved.sampler, hrSteps),
        ),
        tokenMergeRatio: tokenMergingRatioOf(p, 'hires'),
      });
      latents = r.x;
      stopped = r.stopped ?? stopped;
    }
    const decodeJob = hires ? n * 2 + 1 : n;
    const perLatent = dims[1] * dims[2] * dims[3];
    for (let i = 0; i < dims[0]; i++) {
      hooks.onStage?.({ phase: 'vae decode', job: decodeJob, jobCount, step: i, steps: dims[0] });
      const [decoded] = await decodeLatents(
        model.engine,
        latents.subarray(i * perLatent, (i + 1) * perLatent),
        [1, dims[1], dims[2], dims[3]],
        model.scaleFactor,
      );
      let image = decoded!;
      if (prep?.overlays) {
        const ov = prep.overlays[i % prep.overlays.length]!;
        image = await applyOverlay(image, ov.original, ov.mask, prep.pasteTo);
      }
      const k = idx[i]!;
      const perImage: GenerationParams = { ...p, seed: seeds[k]!, subseed: subseeds[k]! };
      const fields = paramsToInfotextFields(perImage, {
        mode,
        inpaint: !!prep?.nmask,
        modelHash: model.hash,
        modelName: model.name,
        vaeHash: model.vae?.hash ?? null,
        vaeName: model.vae?.name ?? null,
        tiHashes: tiHashes(conditioner.usedEmbeddings, hooks.embeddings),
        loraHashes: hooks.loraHashes ?? null,
        extra: refinerUsed ? { Refiner: refiner!.title, 'Refiner switch at': refiner!.switchAt } : undefined,
        unetPrecision: model.precision,
        version: VERSION,
      });
      const infotext = formatInfotext({
        prompt: allPrompts[k]!,
        negativePrompt: allNegatives[k]!,
        params: fields,
      });
      const done: GeneratedImage = {
        image,
        infotext,
        seed: seeds[k]!,
        subseed: subseeds[k]!,
        prompt: allPrompts[k]!,
        negativePrompt: allNegatives[k]!,
      };
      results.push(done);
      await hooks.onImage?.(done, results.length - 1);
      hooks.onStage?.({ phase: 'vae decode', job: decodeJob, jobCount, step: i + 1, steps: dims[0] });
    }
    if (stopped === 'interrupt') {
      interrupted = true;
      break;
    }
  }

  let grid: GenerationResult['grid'] = null;
  if (hooks.grid && results.length >= 2) {
    grid = { image: imageGrid(results.map((r) => r.image)), infotext: results[0]!.infotext };
  }
  return {
    images: results,
    grid,
    seeds: seeds.slice(0, results.length),
    subseeds: subseeds.slice(0, results.length),
    interrupted,
  };
}
