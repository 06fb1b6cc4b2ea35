/**
 * The one job runner every front door uses (CLI, HTTP API, UI): a request (GenerationParams +
 * mode + init images + where to save) → resolve the checkpoint, VAE, precision, styles,
 * embeddings and preview decoder → generate → save each image with its infotext as soon as it is
 * decoded, the grid at the end → paths, infotexts and A1111's info fields.
 *
 * Safe for a long-lived server: no process handlers, no process.exit, no globals; the caller owns
 * the ModelLibrary (what stays loaded) and the stop flags. Mistakes in the request are UserErrors.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { DecodedImage, RgbImage } from '../image/images.js';
import type { GenerationParams } from '../params/generation.js';
import type { PromptStyle } from '../prompt/styles.js';
import type { Provider } from '../runtime/session.js';
import { UserError } from '../util/errors.js';
import type { GeneratedImage, ProgressInfo, StopFlags } from './generate.js';
import type { ModelLibrary, ModelSpec } from './model-library.js';
import type { HypernetworkSpec } from '../adapters/run-hypernetworks.js';
import { DEFAULT_REFINER_SWITCH_AT } from './refiner.js';
import { outputDir, type OutputKind } from './outputs.js';
import type { PreviewMode } from './preview-mode.js';
import {
  checkPrecisionProvider,
  defaultPrecision,
  precisionRunsOn,
  unetPrecisionOf,
  type UnetPrecisionChoice,
} from '../params/unet-precision.js';

export type JobMode = 'txt2img' | 'img2img';

export interface JobRequest {
  mode: JobMode;
  /** Complete parameters (params/generation.ts `withDefaults`). */
  params: GenerationParams;
  /** img2img: the decoded init images (one is repeated over the batch). */
  initImages?: readonly DecodedImage[];
  mask?: DecodedImage | null;
  /**
   * Checkpoint by path, file name or stem, A1111 title or hash. Default: the params'
   * `override_settings.sd_model_checkpoint`, else the first checkpoint of the library.
   */
  model?: string;
  /** VAE name or path, "Automatic" or "None". Default: `override_settings.sd_vae`, else "Automatic". */
  vae?: string;
  /**
   * A checkpoint or VAE named only by `override_settings` (an image's infotext) that is not here
   * is replaced by the default with a warning instead of failing the job.
   */
  lenientSettings?: boolean;
  /**
   * Sides of the image the user did not give (the CLI's txt2img without --width/--height): they
   * take the model family's default size (`DiffusionConfig.defaultSize`: 768 for SD 2.x v, 1024 for
   * SDXL) instead of the params' 512, with a notice. The API leaves this unset: A1111's API default
   * is 512 for every family.
   */
  sizeFromModel?: { width: boolean; height: boolean };
  /** onnxruntime execution provider (default cpu); checked before anything loads. */
  provider?: string;
  /** UNet precision asked for explicitly: it must run on the provider. */
  precision?: string;
  /**
   * What the UNet predicts, overriding the file and its sidecar (`--prediction v|eps`: SD 2.x
   * 768-v and 512-base have the same keys).
   */
  prediction?: 'eps' | 'v';
  /** A precision to use where the provider runs it (an image's infotext), else the provider's default. */
  preferredPrecision?: UnetPrecisionChoice;
  /** Where preferredPrecision came from (the `--params` image), named in the fallback warning. */
  preferredPrecisionFrom?: string;
  /** Textual-inversion embeddings folder (default <dataDir>/embeddings). */
  embeddingsDir?: string;
  /** LoRA folder for `<lora:…>` tags (A1111 --lora-dir; default <dataDir>/models/Lora, plus models/LyCORIS). */
  loraDir?: string;
  /** `Lora hashes` of the infotext the params came from: tags are mapped to the files with those hashes. */
  infotextLoraHashes?: string;
  /** Hypernetwork folder for `<hypernet:…>` tags (A1111 --hypernetwork-dir; default <dataDir>/models/hypernetworks). */
  hypernetworkDir?: string;
  /** styles.csv for `params.styles` (default <dataDir>/styles.csv). */
  stylesFile?: string;
  /** Live previews every `every` steps ('taesd' falls back to cheap when no TAESD file is there). */
  preview?: { every: number; mode: PreviewMode; warnMissing?: boolean } | null;
  output?: JobOutputOptions;
}

export interface JobOutputOptions {
  /** Write files (A1111 `save_images`; default true). */
  save?: boolean;
  /** The outputs folder (default <dataDir>/outputs). */
  root?: string;
  /** Make a grid of the job's images when there are at least two (default true). */
  grid?: boolean;
  /** Return each image's PNG bytes (A1111 `send_images`; default: when not saving). */
  sendImages?: boolean;
}

export interface JobProgress extends ProgressInfo {
  /** Images finished so far in the job and their total. */
  imagesDone: number;
  imagesTotal: number;
}

export interface SavedImage {
  /** Index of the image in the job. */
  index: number;
  /** Where it was written; null when saving is off or failed even in the rescue folder. */
  path: string | null;
  /** True when the output folder failed and the file went to the rescue folder instead. */
  rescued: boolean;
  seed: number;
  subseed: number;
  prompt: string;
  negativePrompt: string;
  infotext: string;
  /** The PNG (with its infotext), when `sendImages`. */
  png: Buffer | null;
}

export interface JobHooks {
  onProgress?: (p: JobProgress) => void;
  onPreview?: (p: { image: RgbImage; index: number; step: number }) => void;
  /** Each image once it is written (or encoded, when saving is off). */
  onImageSaved?: (image: SavedImage) => void;
  /** Set `interrupted` to stop after the current step (the finished images are kept), `skipped` to skip the batch. */
  stop?: StopFlags;
  warn?: (message: string) => void;
  /** Slow one-time work as it starts (quantizing, optimising a new checkpoint). */
  notice?: (message: string) => void;
}

/** A1111's `info` of /sdapi/v1/txt2img (processing.py Processed.js), as far as it applies. */
export interface A1111Info {
  prompt: string;
  all_prompts: string[];
  negative_prompt: string;
  all_negative_prompts: string[];
  seed: number;
  all_seeds: number[];
  subseed: number;
  all_subseeds: number[];
  subseed_strength: number;
  width: number;
  height: number;
  sampler_name: string;
  cfg_scale: number;
  steps: number;
  batch_size: number;
  restore_faces: boolean;
  face_restoration_model: string | null;
  sd_model_name: string;
  sd_model_hash: string | null;
  sd_vae_name: string | null;
  sd_vae_hash: string | null;
  seed_resize_from_w: number;
  seed_resize_from_h: number;
  denoising_strength: number | null;
  /** The infotext entries A1111 keeps in p.extra_generation_params (hires, inpainting, hashes, …). */
  extra_generation_params: Record<string, string | number | boolean | null>;
  index_of_first_image: number;
  infotexts: string[];
  styles: string[];
  job_timestamp: string;
  clip_skip: number;
  is_using_inpainting_conditioning: boolean;
  version: string;
}

export interface JobResult {
  images: SavedImage[];
  grid: { path: string | null; png: Buffer | null; infotext: string } | null;
  /** Stopped by `stop.interrupted`; `images` holds what was finished. */
  interrupted: boolean;
  /** The folder images went to because the output folder failed, if any. */
  rescueDir: string | null;
  info: A1111Info;
  model: { name: string; path: string; hash: string | null; vae: string | null };
}

/** What a request resolves to before anything loads. */
export interface ResolvedJob {
  spec: ModelSpec;
  /** The params to generate with (LoRA tags renamed to the files an infotext's hashes found). */
  params: GenerationParams;
  styles: PromptStyle[] | undefined;
  outRoot: string | null;
  date: Date;
  /** `<hypernet:…>` networks found for the prompt, loaded once the model's family is known. */
  hypernetworks: HypernetworkSpec[];
}

const kinds = (mode: JobMode) =>
  ({ images: `${mode}-images`, grids: `${mode}-grids` }) as { images: OutputKind; grids: OutputKind };

/**
 * Throws a UserError naming `dir` when files cannot be created in it (creating it first, as
 * saving does). Called before any model loads, so a bad output folder costs nothing.
 */
export async function checkWritable(dir: string): Promise<void> {
  const probe = join(dir, `.sdstudio-write-test-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(probe, '');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new UserError(
      `cannot write images to ${dir} (${code}); choose another output folder or make this one writable`,
      73,
      500,
    );
  }
  await unlink(probe).catch(() => undefined);
}

/** Resolves everything a request names (files, provider, precision, styles, output folder) without loading models. */
export async function resolveJob(
  request: JobRequest,
  library: ModelLibrary,
  warn: (m: string) => void = () => undefined,
): Promise<ResolvedJob> {
  const p = request.params;
  const date = new Date();
  const save = request.output?.save !== false;
  const outRoot = save ? resolve(request.output?.root ?? join(library.dataDir, 'outputs')) : null;
  if (outRoot) {
    const k = kinds(request.mode);
    await checkWritable(outputDir(outRoot, k.images, date));
    const total = p.batch_size * p.n_iter;
    if (request.output?.grid !== false && total >= 2) await checkWritable(outputDir(outRoot, k.grids, date));
  }
  if (request.mode === 'img2img' && !request.initImages?.length) {
    throw new UserError('img2img needs an init image');
  }

  const explicitPrecision =
    request.precision === undefined ? undefined : unetPrecisionOf(request.precision, 'precision');
  if (explicitPrecision) checkPrecisionProvider(explicitPrecision, request.provider);
  let provider: Provider | undefined;
  if (request.provider !== undefined && request.provider !== 'cpu') {
    // Started once here (a child process probes it) so a missing GPU is one line before any load.
    provider = await (await import('../runtime/provider-check.js')).ensureProvider(request.provider);
  }
  let precision: UnetPrecisionChoice =
    explicitPrecision ?? request.preferredPrecision ?? defaultPrecision(provider);
  if (!explicitPrecision && !precisionRunsOn(precision, provider)) {
    const fallback = defaultPrecision(provider);
    warn(
      `${request.preferredPrecisionFrom ?? 'the parameters'} ${request.preferredPrecisionFrom ? 'was' : 'were'} made with the ${precision} UNet, which ${provider ?? 'cpu'} does not run; using ${fallback}`,
    );
    precision = fallback;
  }

  const settingsModel = p.override_settings.sd_model_checkpoint as string | undefined;
  let checkpoint: string;
  if (request.model !== undefined || !settingsModel) {
    checkpoint = await library.findCheckpoint(request.model);
  } else {
    try {
      checkpoint = await library.findCheckpoint(settingsModel);
    } catch (e) {
      if (!request.lenientSettings) throw e;
      warn(`the parameters' model "${settingsModel}" is not here; using the default model`);
      checkpoint = await library.findCheckpoint(undefined);
    }
  }
  const settingsVae = p.override_settings.sd_vae as string | undefined;
  let vaePath: string | null;
  if (request.vae !== undefined || !settingsVae) {
    vaePath = library.findVae(request.vae ?? 'Automatic', checkpoint);
  } else {
    try {
      vaePath = library.findVae(settingsVae, checkpoint);
    } catch (e) {
      if (!request.lenientSettings) throw e;
      warn(`the parameters' VAE "${settingsVae}" is not here; using "Automatic"`);
      vaePath = library.findVae('Automatic', checkpoint);
    }
  }

  let styles: PromptStyle[] | undefined;
  if (p.styles.length) {
    const file = resolve(request.stylesFile ?? join(library.dataDir, 'styles.csv'));
    if (!existsSync(file)) throw new UserError(`styles need ${file}; create it or give no styles`);
    styles = await (await import('../prompt/styles.js')).loadStyles(file);
    const missing = p.styles.filter((s) => !styles!.some((x) => x.name === s));
    if (missing.length) {
      throw new UserError(
        `style "${missing[0]}" is not in ${file}; its styles are: ${styles.map((x) => x.name).join(', ') || 'none'}`,
      );
    }
  }
  // LoRA / LyCORIS tags of the styled prompt become part of the model (adapters/run-loras.ts).
  const { resolveLoraJob } = await import('../adapters/run-loras.js');
  const { applyStyles } = await import('../prompt/styles.js');
  const styledPrompt = styles ? applyStyles(p.prompt, p.negative_prompt, p.styles, styles).prompt : p.prompt;
  const loraJob = await resolveLoraJob({
    dataDir: library.dataDir,
    loraDir: request.loraDir,
    styledPrompt,
    infotextLoraHashes: request.infotextLoraHashes,
    warn,
  });
  let params = p;
  if (loraJob.renames.size) {
    const { renameLoraTags } = await import('../adapters/lora-library.js');
    params = { ...p, prompt: renameLoraTags(p.prompt, loraJob.renames) };
  }
  // <hypernet:…> tags and the sd_hypernetwork setting (which adds its tag to the prompt, as A1111).
  const { resolveHypernetworkJob } = await import('../adapters/run-hypernetworks.js');
  const hn = resolveHypernetworkJob({
    dataDir: library.dataDir,
    hypernetworkDir: request.hypernetworkDir,
    styledPrompt,
    setting: p.override_settings.sd_hypernetwork,
    warn,
  });
  if (hn.promptSuffix) params = { ...params, prompt: params.prompt + hn.promptSuffix };
  if (request.prediction !== undefined && request.prediction !== 'eps' && request.prediction !== 'v') {
    throw new UserError(`prediction must be "v" or "eps", not "${String(request.prediction)}"`);
  }
  const spec: ModelSpec = { checkpoint, vaePath, precision, provider };
  if (loraJob.specs.length) spec.loras = loraJob.specs;
  if (request.prediction) spec.prediction = request.prediction;
  return { spec, params, styles, outRoot, date, hypernetworks: hn.specs };
}

/** Runs one generation job; see the module comment. */
export async function runJob(
  request: JobRequest,
  library: ModelLibrary,
  hooks: JobHooks = {},
): Promise<JobResult> {
  const warn = hooks.warn ?? (() => undefined);
  const stop = hooks.stop ?? { interrupted: false, skipped: false };
  const resolved = await resolveJob(request, library, warn);
  let p = resolved.params;
  const save = resolved.outRoot !== null;
  const send = request.output?.sendImages ?? !save;
  const wantGrid = request.output?.grid !== false;
  const kind = kinds(request.mode);
  const imagesTotal = p.batch_size * p.n_iter;

  const lease = await library.acquire(resolved.spec);
  // SDXL refiner (A1111 "Refiner"): a second checkpoint lent for the job, with the base's
  // precision and provider; its title "name [hash]" goes into the infotext.
  let refinerLease: Awaited<ReturnType<ModelLibrary['acquire']>> | undefined;
  try {
    if (p.refiner_checkpoint) {
      const path = await library.findCheckpoint(p.refiner_checkpoint);
      refinerLease = await library.acquire({
        checkpoint: path,
        vaePath: null,
        precision: resolved.spec.precision,
        ...(resolved.spec.provider ? { provider: resolved.spec.provider } : {}),
      });
    }
  } catch (e) {
    lease.done();
    throw e;
  }
  try {
    const model = lease.model;
    for (const w of model.loraWarnings ?? []) warn(w);
    const { hypernetworkHooks } = await import('../adapters/run-hypernetworks.js');
    const unetHooks = await hypernetworkHooks(resolved.hypernetworks, model.engine.family, warn);
    p = familySize(p, request.sizeFromModel, model, hooks.notice ?? warn);
    request = { ...request, params: p };
    const refinerModel = refinerLease?.model;
    const refiner = refinerModel
      ? {
          model: refinerModel,
          title: `${refinerModel.name}${refinerModel.hash ? ` [${refinerModel.hash}]` : ''}`,
          switchAt: p.refiner_switch_at ?? DEFAULT_REFINER_SWITCH_AT,
        }
      : undefined;
    const { EmbeddingDatabase } = await import('../prompt/embeddings.js');
    const embeddingsDir = resolve(request.embeddingsDir ?? join(library.dataDir, 'embeddings'));
    const embeddings = await EmbeddingDatabase.loadDir(embeddingsDir, {
      // SDXL embeddings are clip_l ‖ clip_g rows: the towers' widths summed (2048).
      expectedWidth: model.engine.towers.reduce((w, t) => w + t.config.width, 0),
    });
    for (const w of embeddings.warnings) warn(w);
    // A1111 networks.py: a LoRA's bundled embeddings join while it is loaded; one of the same
    // name from the embeddings folder wins.
    for (const e of model.loraEmbeddings ?? []) {
      if (embeddings.loaded.has(e.name))
        warn(`Skip bundle embedding: "${e.name}" as it was already loaded from embeddings folder`);
      else {
        const before = embeddings.warnings.length;
        embeddings.add(e);
        for (const w of embeddings.warnings.slice(before)) warn(w);
      }
    }
    const preview = request.preview && hooks.onPreview ? request.preview : null;
    const taesd = preview
      ? await library.previewDecoder(
          preview.mode,
          resolved.spec.provider,
          preview.warnMissing ? warn : undefined,
        )
      : null;

    const { generate, VERSION } = await import('./generate.js');
    const { encodePngWithInfotext, saveOutput } = await import('./outputs.js');
    let rescueDir: string | null = null;
    const store = async (png: Buffer, k: OutputKind, seed?: number): Promise<[string | null, boolean]> => {
      if (!resolved.outRoot) return [null, false];
      try {
        return [await saveOutput(png, { root: resolved.outRoot, kind: k, seed, date: resolved.date }), false];
      } catch (e) {
        const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        try {
          rescueDir ??= await mkdtemp(join(tmpdir(), 'sdstudio-rescued-'));
          const path = await saveOutput(png, { root: rescueDir, kind: k, seed, date: resolved.date });
          warn(`could not save into ${resolved.outRoot} (${why}); kept ${path} instead`);
          return [path, true];
        } catch (e2) {
          warn(
            `could not save an image into ${resolved.outRoot} (${why}) nor into a temporary folder ` +
              `(${(e2 as Error).message}); it is lost`,
          );
          return [null, false];
        }
      }
    };

    const saved: SavedImage[] = [];
    const onImage = async (img: GeneratedImage, index: number): Promise<void> => {
      const png = save || send ? await encodePngWithInfotext(img.image, img.infotext) : null;
      const [path, rescued] = png ? await store(png, kind.images, img.seed) : [null, false];
      const s: SavedImage = {
        index,
        path,
        rescued,
        seed: img.seed,
        subseed: img.subseed,
        prompt: img.prompt,
        negativePrompt: img.negativePrompt,
        infotext: img.infotext,
        png: send ? png : null,
      };
      saved.push(s);
      hooks.onImageSaved?.(s);
    };

    const result = await generate(
      model,
      p,
      request.mode,
      { initImages: request.initImages, mask: request.mask ?? null },
      {
        stop,
        styles: resolved.styles,
        embeddings: embeddings.loaded,
        warn,
        grid: wantGrid,
        refiner,
        onImage,
        appliedNetworkKinds: new Set(['lora', 'lyco', 'hypernet']),
        unetHooks,
        loraHashes: model.loraHashes ?? null,
        onProgress: (pi) => hooks.onProgress?.({ ...pi, imagesDone: saved.length, imagesTotal }),
        onStage: (pi) => hooks.onProgress?.({ ...pi, imagesDone: saved.length, imagesTotal }),
        ...(preview && {
          onPreview: hooks.onPreview,
          previewEvery: preview.every,
          previewMode: preview.mode,
          taesd,
        }),
      },
    );

    let grid: JobResult['grid'] = null;
    if (result.grid) {
      const png = await encodePngWithInfotext(result.grid.image, result.grid.infotext);
      const [path] = save ? await store(png, kind.grids) : [null];
      grid = { path, png: send ? png : null, infotext: result.grid.infotext };
    }
    return {
      images: saved,
      grid,
      interrupted: result.interrupted,
      rescueDir,
      info: a1111Info(request, saved, model, resolved.date, VERSION, result.extraGenerationParams),
      model: { name: model.name, path: model.path, hash: model.hash, vae: model.vae?.name ?? null },
    };
  } finally {
    refinerLease?.done();
    lease.done();
  }
}

/** The model family's default size on the sides `unset` names, said once when it is not 512. */
function familySize(
  p: GenerationParams,
  unset: JobRequest['sizeFromModel'],
  model: { engine: { family: string; config: { defaultSize: number } } },
  notice: (m: string) => void,
): GenerationParams {
  const size = model.engine.config.defaultSize;
  if (!unset || (!unset.width && !unset.height)) return p;
  const width = unset.width ? size : p.width;
  const height = unset.height ? size : p.height;
  if (width === p.width && height === p.height) return p;
  const which = unset.width && unset.height ? '--width/--height' : unset.width ? '--width' : '--height';
  notice(
    `size ${width}x${height}: the default of ${FAMILY_NAMES[model.engine.family] ?? model.engine.family} models (give ${which} to choose)`,
  );
  return { ...p, width, height };
}

const FAMILY_NAMES: Record<string, string> = { sd1: 'SD 1.x', sd2: 'SD 2.x v-prediction', sdxl: 'SDXL' };

function timestamp(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}` +
    `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`
  );
}

function a1111Info(
  request: JobRequest,
  images: readonly SavedImage[],
  model: {
    name: string;
    hash: string | null;
    vae: { name: string; hash: string | null } | null;
    inpainting: boolean;
  },
  date: Date,
  version: string,
  extra: A1111Info['extra_generation_params'],
): A1111Info {
  const p = request.params;
  const first = images[0];
  const clipSkip = Number(p.override_settings.CLIP_stop_at_last_layers ?? 1);
  return {
    prompt: first?.prompt ?? p.prompt,
    all_prompts: images.map((i) => i.prompt),
    negative_prompt: first?.negativePrompt ?? p.negative_prompt,
    all_negative_prompts: images.map((i) => i.negativePrompt),
    seed: first?.seed ?? p.seed,
    all_seeds: images.map((i) => i.seed),
    subseed: first?.subseed ?? p.subseed,
    all_subseeds: images.map((i) => i.subseed),
    subseed_strength: p.subseed_strength,
    width: p.width,
    height: p.height,
    sampler_name: p.sampler_name,
    cfg_scale: p.cfg_scale,
    steps: p.steps,
    batch_size: p.batch_size,
    restore_faces: p.restore_faces ?? false,
    face_restoration_model: null,
    sd_model_name: model.name,
    sd_model_hash: model.hash,
    sd_vae_name: model.vae?.name ?? null,
    sd_vae_hash: model.vae?.hash ?? null,
    seed_resize_from_w: p.seed_resize_from_w,
    seed_resize_from_h: p.seed_resize_from_h,
    denoising_strength: request.mode === 'img2img' || p.enable_hr ? (p.denoising_strength ?? null) : null,
    extra_generation_params: extra,
    index_of_first_image: 0,
    infotexts: images.map((i) => i.infotext),
    styles: [...p.styles],
    job_timestamp: timestamp(date),
    clip_skip: Number.isFinite(clipSkip) ? clipSkip : 1,
    is_using_inpainting_conditioning: model.inpainting,
    version,
  };
}
