/**
 * The body of `sdstudio txt2img` and `sdstudio img2img`: flags → a job request for
 * pipeline/job.ts `runJob`, a progress bar (or log lines), and signals. SIGINT, SIGTERM and
 * SIGHUP stop after the current step; every image finished by then is already saved. A second
 * signal quits at once.
 */
import { resolve } from 'node:path';
import type { DecodedImage } from '../image/images.js';
import { withDefaults, type GenerationParams } from '../params/generation.js';
import type { StopFlags } from '../pipeline/generate.js';
import type { JobRequest } from '../pipeline/job.js';
import { checkPrecisionProvider, unetPrecisionOf } from '../params/unet-precision.js';
import { UserError } from '../util/errors.js';
import {
  flagNameOf,
  paramsFromFlags,
  parseGenerateArgs,
  paramsFromImage,
  previewFlags,
  readImageFile,
  UI_DEFAULTS,
} from './generate-flags.js';
import { jobProgress } from './progress.js';

const SIGNALS = { SIGINT: 2, SIGHUP: 1, SIGTERM: 15 } as const;
type StopSignal = keyof typeof SIGNALS;

/** Exit code of a job stopped by `signal` (the shell's 128 + signal number). */
export function signalExitCode(signal: StopSignal): number {
  return 128 + SIGNALS[signal];
}

/**
 * Size of an img2img job without --width/--height: the init image's, each side rounded to a
 * multiple of 8; with one side given, the other keeps the image's aspect ratio.
 */
export function img2imgSize(
  image: { width: number; height: number },
  width: number | undefined,
  height: number | undefined,
): { width: number; height: number } {
  const r8 = (v: number) => Math.max(8, Math.round(v / 8) * 8);
  if (width !== undefined && height !== undefined) return { width, height };
  if (width !== undefined) return { width, height: r8((width * image.height) / image.width) };
  if (height !== undefined) return { width: r8((height * image.width) / image.height), height };
  return { width: r8(image.width), height: r8(image.height) };
}

/**
 * Stop on SIGINT/SIGTERM/SIGHUP after the current step; a second signal exits now. The same signal
 * twice within a second counts once: at a terminal it may reach this process both directly and
 * through bin/sdstudio.js's parent. Returns the handlers' remover and which signal stopped us.
 */
export function trapSignals(stop: StopFlags): { dispose(): void; signal(): StopSignal | null } {
  let first: { signal: StopSignal; at: number } | null = null;
  const handlers = new Map<StopSignal, () => void>();
  for (const signal of Object.keys(SIGNALS) as StopSignal[]) {
    const h = () => {
      const now = Date.now();
      if (first) {
        if (first.signal === signal && now - first.at < 1000) return;
        process.stderr.write(`\n${signal}: quitting now\n`);
        process.exit(signalExitCode(signal));
      }
      first = { signal, at: now };
      stop.interrupted = true;
      process.stderr.write(
        `\n${signal}: stopping after the current step; finished images are saved` +
          ` (${signal === 'SIGINT' ? 'Ctrl-C' : 'a second signal'} again quits now)\n`,
      );
    };
    handlers.set(signal, h);
    process.on(signal, h);
  }
  return {
    dispose() {
      for (const [s, h] of handlers) process.off(s, h);
    },
    signal: () => first?.signal ?? null,
  };
}

export async function runGenerateCommand(mode: 'txt2img' | 'img2img', argv: string[]): Promise<number> {
  const { values, positionals } = parseGenerateArgs(mode, argv);
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
  if (values.precision !== undefined) {
    checkPrecisionProvider(unetPrecisionOf(values.precision), values.provider);
  }
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
  let initImages: DecodedImage[] | undefined;
  if (initPath) {
    initImages = [await readImageFile(initPath, 'init image')];
    // A person at a terminal means "this image": its own size, not A1111's 512 default.
    Object.assign(merged, img2imgSize(initImages[0]!, merged.width, merged.height));
  }
  // txt2img sides given by neither a flag nor --params take the model family's default size.
  const sizeFromModel =
    mode === 'txt2img'
      ? { width: merged.width === undefined, height: merged.height === undefined }
      : undefined;
  const params = withDefaults(merged, { nameOf: flagNameOf(values, mode) });
  const preview = previewFlags(values);
  const mask = values.mask ? await readImageFile(values.mask, 'mask') : null;

  const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);
  const request: JobRequest = {
    mode,
    params,
    initImages,
    mask,
    model: values.model,
    vae: values.vae,
    sizeFromModel,
    lenientSettings: true,
    provider: values.provider,
    precision: values.precision,
    prediction: predictionFlag(values.prediction),
    preferredPrecision: image?.precision,
    preferredPrecisionFrom: values.params,
    embeddingsDir: values['embeddings-dir'],
    loraDir: values['lora-dir'],
    hypernetworkDir: values['hypernetwork-dir'],
    infotextLoraHashes: image?.loraHashes,
    preview: preview && { every: preview.every, mode: preview.mode, warnMissing: preview.explicit },
    output: { root: values.out ?? resolve(dataDir, 'outputs'), grid: !values['no-grid'] },
  };

  const { ModelLibrary } = await import('../pipeline/model-library.js');
  const { runJob } = await import('../pipeline/job.js');
  const library = new ModelLibrary({
    dataDir,
    cacheDir: values['cache-dir'],
    clipVocab: values['clip-vocab'],
    onNotice: (message) => process.stderr.write(`${message}\n`),
  });
  const previewFile =
    preview && (await import('../pipeline/live-preview.js')).livePreviewFile(preview.path, params.batch_size);
  const stop: StopFlags = { interrupted: false, skipped: false };
  const signals = trapSignals(stop);
  const logEvery = Number(process.env.SDSTUDIO_PROGRESS_LOG ?? 5);
  const progress = jobProgress({ logEverySec: Number.isFinite(logEvery) ? logEvery : 5 });
  try {
    const result = await runJob(request, library, {
      stop,
      warn,
      notice: (m) => process.stderr.write(`${m}\n`),
      onProgress: (p) => progress.update(p),
      onPreview: previewFile ? (p) => previewFile.onPreview(p) : undefined,
      onImageSaved: (s) => {
        if (s.path) process.stdout.write(s.path + '\n');
      },
    });
    progress.finish();
    await previewFile
      ?.flush()
      .catch((e: Error) => warn(`live preview ${preview!.path} not written: ${e.message}`));
    if (result.grid?.path) process.stdout.write(result.grid.path + '\n');
    if (result.rescueDir) {
      process.stderr.write(
        `sdstudio ${mode}: the output folder could not be written; the images are in ${result.rescueDir}\n`,
      );
      return 73;
    }
    if (result.interrupted) {
      const signal = signals.signal() ?? 'SIGINT';
      process.stderr.write(`interrupted: saved ${result.images.filter((i) => i.path).length} image(s)\n`);
      return signalExitCode(signal);
    }
    return 0;
  } finally {
    progress.finish();
    signals.dispose();
    await library.release();
  }
}

/** `--prediction v|eps`. */
function predictionFlag(v: string | undefined): 'eps' | 'v' | undefined {
  if (v === undefined) return undefined;
  if (v === 'v' || v === 'eps') return v;
  throw new UserError(`--prediction must be "v" or "eps", not "${v}"`, 2);
}
