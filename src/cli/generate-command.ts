/**
 * The body of `sdstudio txt2img` and `sdstudio img2img`: model lookup, the run with a progress bar,
 * Ctrl-C as "interrupt", and saving in A1111's output layout.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { StopFlags } from '../pipeline/generate.js';
import { withDefaults, type GenerationParams } from '../params/generation.js';
import {
  checkPrecisionProvider,
  defaultPrecision,
  precisionRunsOn,
  unetPrecisionOf,
  type UnetPrecisionChoice,
} from '../pipeline/unet-precision.js';
import type { PromptStyle } from '../prompt/styles.js';
import { UserError } from '../util/errors.js';
import { progressBar, type Progress } from '../util/progress.js';
import {
  OPTIONS,
  paramsFromFlags,
  paramsFromImage,
  previewFlags,
  readImageFile,
  UI_DEFAULTS,
} from './generate-flags.js';

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
  const { findCheckpoint, findVae, loadModel } = await import('../pipeline/model.js');
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
  const { loadPreviewDecoder } = await import('../pipeline/taesd.js');
  // Without --preview-type, TAESD is used when its file is there, silently falling back otherwise.
  const taesd = preview
    ? await loadPreviewDecoder(preview.mode, dataDir, {
        provider,
        cacheDir: values['cache-dir'],
        warn: preview.explicit ? warn : undefined,
      })
    : null;
  const previewFile =
    preview && (await import('../pipeline/live-preview.js')).livePreviewFile(preview.path, params.batch_size);
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
    const { generate } = await import('../pipeline/generate.js');
    const { encodePngWithInfotext, saveOutput } = await import('../pipeline/outputs.js');
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
