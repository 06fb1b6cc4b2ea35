/**
 * The JobExecutor the server uses: the pipeline's job runner (`runJob`) with one ModelLibrary for
 * the server's lifetime (a model already loaded for the same checkpoint + VAE + precision is not
 * loaded again). No generation logic lives here: it decodes the request's images and hands the
 * request to `runJob`, which saves each image as it is decoded.
 */
import { realpathSync } from 'node:fs';
import type { LoadedModel } from '../pipeline/model.js';
import { ModelLibrary, type ModelSpec } from '../pipeline/model-library.js';
import { defaultPrecision } from '../params/unet-precision.js';
import { decodeBase64Image } from './images.js';
import type { ExecutorHooks, ExecutorOutput, JobExecutor, JobRequest } from './jobs.js';
import type { ModelDirs } from './catalog.js';

export interface PipelineExecutorOptions {
  dataDir: string;
  dirs: ModelDirs;
  outputsDir: string;
  stylesFile: string;
  cacheDir?: string;
  /** Told about slow one-time work and loads. */
  log?: (message: string) => void;
  /** Called after a checkpoint was loaded (its hash is then known). */
  onLoaded?: (model: LoadedModel) => void;
}

export class PipelineExecutor implements JobExecutor {
  readonly library: ModelLibrary;

  constructor(private readonly opts: PipelineExecutorOptions) {
    this.library = new ModelLibrary({
      dataDir: opts.dataDir,
      ckptDir: opts.dirs.checkpoints,
      vaeDir: opts.dirs.vae,
      cacheDir: opts.cacheDir,
      keep: 1,
      onNotice: opts.log,
    });
  }

  /** The spec of the model loaded now (most recently used), if any. */
  currentSpec(): ModelSpec | null {
    return this.library.loaded()[0] ?? null;
  }

  /** Runs `fn` with the loaded model, or returns null when none is loaded. */
  async withCurrent<T>(fn: (m: LoadedModel) => T | Promise<T>): Promise<T | null> {
    const spec = this.currentSpec();
    if (!spec) return null;
    const lease = await this.library.acquire(spec);
    try {
      return await fn(lease.model);
    } finally {
      lease.done();
    }
  }

  /** Loads `checkpoint` with `vae` ("Automatic", "None" or a VAE file) unless it is loaded already. */
  async load(checkpoint: string, vae: string): Promise<void> {
    const real = realpathSync(checkpoint);
    const spec: ModelSpec = {
      checkpoint: real,
      vaePath: this.library.findVae(vae, real),
      precision: defaultPrecision(undefined),
    };
    const lease = await this.library.acquire(spec);
    lease.done();
    this.opts.onLoaded?.(lease.model);
    // Only the newly selected model stays loaded.
    for (const other of this.library.loaded())
      if (other !== spec && other.checkpoint !== real) await this.library.unload(other);
  }

  async unload(): Promise<void> {
    await this.library.unload();
  }

  async close(): Promise<void> {
    await this.library.release();
  }

  async run(request: JobRequest, hooks: ExecutorHooks): Promise<ExecutorOutput> {
    const p = request.params;
    const img2img = request.mode === 'img2img';
    const initImages = img2img
      ? await Promise.all((p.init_images ?? []).map((b64, i) => decodeBase64Image(b64, `init_images[${i}]`)))
      : undefined;
    const mask = img2img && p.mask ? await decodeBase64Image(p.mask, 'mask') : null;
    const { runJob } = await import('../pipeline/job.js');
    const result = await runJob(
      {
        mode: request.mode,
        params: p,
        initImages,
        mask,
        model: request.checkpoint,
        vae: request.vae,
        embeddingsDir: this.opts.dirs.embeddings,
        loraDir: this.opts.dirs.lora,
        hypernetworkDir: this.opts.dirs.hypernetworks,
        stylesFile: this.opts.stylesFile,
        preview: request.previewEvery > 0 ? { every: request.previewEvery, mode: 'cheap' } : null,
        output: {
          save: request.save,
          root: this.opts.outputsDir,
          grid: request.grid,
          sendImages: !request.save,
        },
      },
      this.library,
      {
        stop: hooks.stop,
        warn: (m) => this.opts.log?.(`warning: ${m}`),
        notice: this.opts.log,
        onProgress: (pr) =>
          hooks.onProgress({
            phase: pr.phase,
            job: pr.job,
            jobCount: pr.jobCount,
            step: pr.step,
            steps: pr.steps,
          }),
        onPreview: (pv) => hooks.onPreview(pv),
        onImageSaved: (img) =>
          hooks.onImage({
            path: img.path,
            png: img.png,
            seed: img.seed,
            subseed: img.subseed,
            infotext: img.infotext,
            prompt: img.prompt,
            negativePrompt: img.negativePrompt,
          }),
      },
    );
    const spec = this.currentSpec();
    if (spec) await this.withCurrent((m) => this.opts.onLoaded?.(m));
    return { images: [], grid: result.grid, interrupted: result.interrupted, info: result.info };
  }
}

export const STYLES_FILE = (dataDir: string) => `${dataDir}/styles.csv`;
