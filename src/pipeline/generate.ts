/**
 * The generation loop A1111 users know (processing.py process_images): batch count × batch size
 * images with seeds seed+i, each batch sampled (pipeline/sample.ts) as txt2img with an optional
 * hires fix (hires.ts) or as img2img (img2img.ts: resize modes and inpainting), decoded one image at
 * a time, composited back, given its infotext and handed to `onImage` at once; previews
 * (previews.ts) and progress are per-step hooks of the UNet call; interrupt and skip.
 */
import { applyOverlay } from '../image/masks.js';
import { imageGrid, type DecodedImage, type RgbImage } from '../image/images.js';
import { formatInfotext } from '../infotext/infotext.js';
import {
  extraGenerationParams,
  paramsToInfotextFields,
  type InfotextValue,
} from '../infotext/infotext-fields.js';
import {
  clipSkipOf,
  emphasisOf,
  ensdOf,
  fixSeed,
  hiresTargetSize,
  jobSeeds,
  randnSourceOf,
  resolveSampler,
  hiresRefinerPassOf,
  refinerSwitchByStepsOf,
  sdxlClipLSkipOf,
  sMinUncondAllOf,
  sMinUncondOf,
  tokenMergingRatioOf,
  type GenerationParams,
} from '../params/generation.js';
import { parseExtraNetworks } from '../prompt/extra-networks.js';
import { applyStyles, type PromptStyle } from '../prompt/styles.js';
import { requireSampler, type SamplerOptions } from '../sampling/index.js';
import { ImageRng } from '../sampling/seeds.js';
import { UserError } from '../util/errors.js';
import { Conditioner, type TextEmbedding } from './conditioning.js';
import type { ImageConditioning, ScheduledCond } from './denoiser.js';
import { hiresPass } from './hires.js';
import { prepareImg2Img, txt2imgConditioning, type Img2ImgPrep } from './img2img.js';
import type { LoadedModel } from './model.js';
import type { PreviewMode } from './preview-mode.js';
import { previewHook } from './previews.js';
import {
  concat,
  samplePass,
  type Dims,
  type PassRefiner,
  type StopFlags,
  type UnetStepHook,
} from './sample.js';
import type { PreviewDecoder } from './taesd.js';
import { decodeLatents } from './vae.js';
import { infotextVersion } from '../util/version.js';

export type { StopFlags, UnetStepHook } from './sample.js';

/** The infotext's Version value: sdstudio-<package.json version>. */
export const VERSION = infotextVersion();

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
  /**
   * Per-step hooks of every pass's UNet call, after progress and previews (pipeline/sample.ts):
   * how ControlNet residuals and hypernetwork K/V context plug in.
   */
  unetHooks?: readonly UnetStepHook[];
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
  /** A1111's `extra_generation_params` (from the first image's infotext fields; {} without images). */
  extraGenerationParams: Record<string, InfotextValue | null>;
  grid: { image: RgbImage; infotext: string } | null;
  seeds: number[];
  subseeds: number[];
  interrupted: boolean;
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

/** A1111's sampler options (eta, s_churn, s_tmin, s_tmax, s_noise) of the request. */
function samplerOptionsOf(p: GenerationParams): SamplerOptions {
  return {
    eta: p.eta ?? undefined,
    sChurn: p.s_churn ?? undefined,
    sTmin: p.s_tmin ?? undefined,
    sTmax: p.s_tmax || undefined,
    sNoise: p.s_noise ?? undefined,
  };
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
  const newConditioner = (m: LoadedModel, height: number, width: number) =>
    new Conditioner({
      model: m.engine,
      tokenizer: m.tokenizer,
      clipSkip: clipSkipOf(p),
      sdxlClipLSkip: sdxlClipLSkipOf(p),
      embeddings: hooks.embeddings,
      emphasis: emphasisOf(p),
      sdxl: { size: [height, width] },
    });
  const conditioner = newConditioner(model, p.height, p.width);
  const conditionerFor = (height: number, width: number) =>
    model.engine.config.vector ? newConditioner(model, height, width) : conditioner;
  if (conditioner.skippedEmbeddings.length > 0) {
    warn(
      `embeddings not compatible with this ${model.engine.family} model were skipped: ${conditioner.skippedEmbeddings.join(', ')}`,
    );
  }
  // SDXL refiner: its own conditioning (bigG only, aesthetic scores), and whether it took over.
  const refiner = hooks.refiner;
  let refinerUsed = false;
  // Whether the refiner took over in the current batch's first pass (it then keeps the hires pass).
  let switchedInFirstPass = false;
  // A1111's hires_fix_refiner_pass: which passes of a hires job the refiner may take over.
  const refinerPass = hiresRefinerPassOf(p);
  const refinerFor = async (
    texts: { prompt: string; negative: string }[],
    baseConds: ImageConditioning[],
    steps: number,
    size: [number, number],
    hiresSteps?: number,
    switchAt = refiner?.switchAt ?? 1,
  ): Promise<PassRefiner | undefined> => {
    if (!refiner) return undefined;
    const rc = newConditioner(refiner.model, size[0], size[1]);
    const conds = await Promise.all(texts.map((t) => rc.forImage(t.prompt, t.negative, steps, hiresSteps)));
    // The same texts give schedules of the same shape: each base entry gets its refiner twin.
    const attach = (base: ScheduledCond[], twin: ScheduledCond[]) =>
      base.forEach((e, k) => {
        const { cond, y } = twin[k]!;
        e.alt = y ? { cond, y } : { cond };
      });
    baseConds.forEach((img, i) => {
      img.parts.forEach((part, j) => attach(part.schedule, conds[i]!.parts[j]!.schedule));
      attach(img.uncond, conds[i]!.uncond);
    });
    return {
      engine: refiner.model.engine,
      latentChannels: refiner.model.latentChannels,
      switchAt,
      bySteps: refinerSwitchByStepsOf(p),
      onSwitch: () => {
        refinerUsed = true;
        if (hiresSteps === undefined) switchedInFirstPass = true;
      },
    };
  };
  // A1111 counts prompt-editing steps per model call, so second-order samplers get twice the steps.
  const condSteps = (sampler: string, steps: number) =>
    requireSampler(sampler).sampler.secondOrder ? steps * 2 : steps;
  const hires = mode === 'txt2img' && p.enable_hr;
  const jobCount = p.n_iter * (hires ? 2 : 1);
  const C = model.latentChannels;
  const h = p.height / 8;
  const w = p.width / 8;
  const samplerOptions = samplerOptionsOf(p);
  const onModelCall = hooks.onModelCall && (() => hooks.onModelCall!());
  const previews = hooks.onPreview
    ? {
        onPreview: hooks.onPreview,
        every: hooks.previewEvery ?? 0,
        mode: hooks.previewMode,
        taesd: hooks.taesd,
      }
    : null;
  /** The per-step hooks of one pass: progress, previews, then the caller's own. */
  const passHooks = (progress: Omit<ProgressInfo, 'step' | 'steps'>, dims: Dims) => {
    const list: UnetStepHook[] = [];
    let steps = 0;
    list.push({
      start: (plan) => {
        steps = plan.steps;
        hooks.onStage?.({ ...progress, step: 0, steps });
      },
      afterStep: (info) => hooks.onProgress?.({ ...progress, step: info.i + 1, steps }),
    });
    const preview = previewHook(previews, model, dims);
    if (preview) list.push(preview);
    list.push(...(hooks.unetHooks ?? []));
    return list;
  };

  const results: GeneratedImage[] = [];
  let extraParams: Record<string, InfotextValue | null> | undefined;
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
    // A1111 parses extra networks from the positive prompts only (processing.py
    // parse_extra_network_prompts): a negative prompt's `<lora:…>` is never activated and stays in
    // it as text for the text encoder.
    const negatives = idx.map((i) => ({
      prompt: allNegatives[i]!,
      networks: parseExtraNetworks(allNegatives[i]!).networks,
    }));
    const applied = hooks.appliedNetworkKinds ?? new Set<string>();
    if (n === 0 && prompts.some((x) => x.networks.some((t) => !applied.has(t.name)))) {
      warn(
        'extra networks other than <lora:…> and <hypernet:…> are not applied yet; their tags were removed from the prompt',
      );
    }
    if (n === 0 && negatives.some((x) => x.networks.length > 0)) {
      warn(
        'extra-network tags in the negative prompt are not applied (as in A1111); they stay in it as text',
      );
    }
    const steps1 = condSteps(resolved.sampler, p.steps);
    const conds = await Promise.all(
      prompts.map((pr, i) => conditioner.forImage(pr.prompt, negatives[i]!.prompt, steps1)),
    );
    // With the hires fix the refiner takes only the second pass unless hires_fix_refiner_pass says.
    switchedInFirstPass = false;
    const firstRefiner =
      hires && refinerPass === 'second pass'
        ? undefined
        : await refinerFor(
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
      sampler: resolved.sampler,
      scheduler: resolved.schedulerName,
      steps: p.steps,
      cfgScale: p.cfg_scale,
      sMinUncond: sMinUncondOf(p),
      sMinUncondAll: sMinUncondAllOf(p),
      conds,
      refiner: firstRefiner,
      rng,
      seeds: bSeeds,
      dims,
      samplerOptions,
      stop: hooks.stop,
      onModelCall,
    };
    if (prep) {
      const mult = p.initial_noise_multiplier ?? 1;
      if (mult !== 1) noise = noise.map((v) => v * mult);
      const init = concat(prep.initLatents);
      const nmask = prep.nmask ? concat(Array.from({ length: p.batch_size }, () => prep!.nmask!)) : undefined;
      const r = await samplePass({
        ...pass,
        x0: init,
        noise,
        denoisingStrength: p.denoising_strength,
        imageConditioning: prep.imageConditioning ? concat(prep.imageConditioning) : undefined,
        initLatent: nmask ? init : undefined,
        nmask,
        hooks: passHooks({ phase: 'img2img', job: n, jobCount }, dims),
        tokenMergeRatio: tokenMergingRatioOf(p, 'img2img'),
      });
      latents = r.x;
      stopped = r.stopped;
      if (nmask)
        for (let k = 0; k < latents.length; k++)
          latents[k] = latents[k]! * nmask[k]! + init[k]! * (1 - nmask[k]!);
    } else {
      const r = await samplePass({
        ...pass,
        x0: null,
        noise,
        imageConditioning: await (firstPassConditioning ??= txt2imgConditioning(
          model,
          p.width,
          p.height,
          p.batch_size,
        )),
        hooks: passHooks({ phase: hires ? 'first pass' : 'txt2img', job: hires ? n * 2 : n, jobCount }, dims),
        tokenMergeRatio: tokenMergingRatioOf(p, 'txt2img'),
      });
      latents = r.x;
      stopped = r.stopped;
    }

    if (hires && stopped !== 'interrupt') {
      const r = await hiresPass({
        model,
        p,
        latents,
        dims,
        seeds: bSeeds,
        rngOptions: rngOpts,
        prompts: idx.map((i) => allPrompts[i]!),
        negatives: idx.map((i) => allNegatives[i]!),
        hrPrompt: hrStyled.prompt,
        hrNegative: hrStyled.negativePrompt,
        conditioner: conditionerFor,
        // A1111 keeps the refiner loaded once it took over: then it runs the whole second pass.
        refiner: switchedInFirstPass
          ? (texts, conds, steps, size, hiresSteps) => refinerFor(texts, conds, steps, size, hiresSteps, 0)
          : refinerPass === 'first pass'
            ? undefined
            : refinerFor,
        firstPassCondSteps: steps1,
        condSteps,
        pass: {
          stop: hooks.stop,
          samplerOptions,
          onModelCall,
          sMinUncond: sMinUncondOf(p),
          sMinUncondAll: sMinUncondAllOf(p),
        },
        passHooks: (d) => passHooks({ phase: 'hires fix', job: n * 2 + 1, jobCount }, d),
      });
      latents = r.x;
      dims = r.dims;
      stopped = r.stopped ?? stopped;
    }

    // Each image is decoded, finished and handed on by itself, so a saver writes it at once.
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
        // A1111 also makes it from the upscaled first pass in the hires fix.
        inpaintingConditioning: !!prep?.imageConditioning || (hires && model.inpainting),
        modelHash: model.hash,
        modelName: model.name,
        vaeHash: model.vae?.hash ?? null,
        vaeName: model.vae?.name ?? null,
        tiHashes: tiHashes(conditioner.usedEmbeddings, hooks.embeddings),
        loraHashes: hooks.loraHashes ?? null,
        extra: refinerUsed
          ? {
              ...(hires && refinerPass !== 'second pass' ? { 'Hires refiner': refinerPass } : {}),
              Refiner: refiner!.title,
              'Refiner switch at': refiner!.switchAt,
            }
          : undefined,
        unetPrecision: model.precision,
        version: VERSION,
      });
      if (!extraParams) extraParams = extraGenerationParams(fields, { hires });
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
    extraGenerationParams: extraParams ?? {},
    grid,
    seeds: seeds.slice(0, results.length),
    subseeds: subseeds.slice(0, results.length),
    interrupted,
  };
}
