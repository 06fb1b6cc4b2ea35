/**
 * The JobExecutor the server uses today: the pipeline's model loading and `generate`, with one
 * loaded model kept between jobs (a model already loaded for the same checkpoint + VAE is not
 * loaded again). No generation logic lives here: it decodes the request's images, hands the
 * request to the pipeline, and encodes the results as PNGs with their infotext.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadedModel } from '../pipeline/model.js';
import type { EmbeddingDatabase } from '../prompt/embeddings.js';
import type { PromptStyle } from '../prompt/styles.js';
import { UserError } from '../util/errors.js';
import { decodeBase64Image } from './images.js';
import type { ExecutorHooks, ExecutorOutput, JobExecutor, JobRequest } from './jobs.js';

export interface PipelineExecutorOptions {
  dataDir: string;
  embeddingsDir: string;
  stylesFile: string;
  cacheDir?: string;
  /** Told about slow one-time work and loads. */
  log?: (message: string) => void;
  /** Called after a checkpoint was loaded (its hash is then known). */
  onLoaded?: (model: LoadedModel) => void;
}

interface Loaded {
  key: string;
  model: LoadedModel;
  embeddings: EmbeddingDatabase;
}

export class PipelineExecutor implements JobExecutor {
  private loaded: Loaded | null = null;

  constructor(private readonly opts: PipelineExecutorOptions) {}

  /** The loaded model, if any. */
  current(): LoadedModel | null {
    return this.loaded?.model ?? null;
  }

  embeddings(): EmbeddingDatabase | null {
    return this.loaded?.embeddings ?? null;
  }

  /** Loads `checkpoint` with `vae` ("Automatic", "None" or a VAE file), unless it is the loaded one. */
  async ensureModel(checkpoint: string, vae: string): Promise<Loaded> {
    const { findVae, loadModel } = await import('../pipeline/model.js');
    const vaePath =
      vae === 'None' ? null : vae === 'Automatic' ? findVae('Automatic', checkpoint, this.opts.dataDir) : vae;
    const key = `${checkpoint}\0${vaePath ?? ''}`;
    if (this.loaded?.key === key) return this.loaded;
    await this.unload();
    this.opts.log?.(`loading ${checkpoint}${vaePath ? ` with VAE ${vaePath}` : ''}`);
    const model = await loadModel({
      checkpoint,
      vaePath,
      cacheDir: this.opts.cacheDir,
      onNotice: this.opts.log,
    });
    const { EmbeddingDatabase } = await import('../prompt/embeddings.js');
    const embeddings = await EmbeddingDatabase.loadDir(this.opts.embeddingsDir, {
      expectedWidth: model.engine.config.text.width,
    });
    for (const w of embeddings.warnings) this.opts.log?.(w);
    this.loaded = { key, model, embeddings };
    this.opts.onLoaded?.(model);
    return this.loaded;
  }

  /** Replaces the loaded model's embeddings (POST /refresh-embeddings). */
  setEmbeddings(db: EmbeddingDatabase): void {
    if (this.loaded) this.loaded.embeddings = db;
  }

  async unload(): Promise<void> {
    const l = this.loaded;
    this.loaded = null;
    await l?.model.release();
  }

  private async styles(names: readonly string[]): Promise<PromptStyle[] | undefined> {
    if (!names.length) return undefined;
    if (!existsSync(this.opts.stylesFile)) {
      throw new UserError(
        `styles: there is no ${this.opts.stylesFile}; create it or leave styles out`,
        2,
        422,
      );
    }
    const { loadStyles } = await import('../prompt/styles.js');
    const all = await loadStyles(this.opts.stylesFile);
    return all;
  }

  async run(request: JobRequest, hooks: ExecutorHooks): Promise<ExecutorOutput> {
    const p = request.params;
    const initImages =
      request.mode === 'img2img'
        ? await Promise.all(
            (p.init_images ?? []).map((b64, i) => decodeBase64Image(b64, `init_images[${i}]`)),
          )
        : undefined;
    const mask = request.mode === 'img2img' && p.mask ? await decodeBase64Image(p.mask, 'mask') : null;
    const styles = await this.styles(p.styles);
    const { model, embeddings } = await this.ensureModel(request.checkpoint, request.vae);
    const { generate } = await import('../pipeline/generate.js');
    const { encodePngWithInfotext } = await import('../pipeline/outputs.js');
    const { fixSeed } = await import('../params/generation.js');
    // The seeds are fixed here so the job reports them even when it is interrupted before any image.
    const params = { ...p, seed: fixSeed(p.seed), subseed: fixSeed(p.subseed) };
    const result = await generate(
      model,
      params,
      request.mode,
      { initImages, mask },
      {
        stop: hooks.stop,
        styles,
        embeddings: embeddings.loaded,
        grid: request.grid,
        warn: (m) => this.opts.log?.(`warning: ${m}`),
        onProgress: (pr) =>
          hooks.onProgress({ job: pr.job, jobCount: pr.jobCount, step: pr.step, steps: pr.steps }),
        ...(hooks.previewEvery > 0 && {
          onPreview: hooks.onPreview,
          previewEvery: hooks.previewEvery,
          previewMode: 'cheap' as const,
        }),
      },
    );
    const images = [];
    for (const img of result.images) {
      images.push({
        png: await encodePngWithInfotext(img.image, img.infotext),
        seed: img.seed,
        subseed: img.subseed,
        infotext: img.infotext,
        prompt: img.prompt,
        negativePrompt: img.negativePrompt,
      });
    }
    const grid = result.grid
      ? {
          png: await encodePngWithInfotext(result.grid.image, result.grid.infotext),
          infotext: result.grid.infotext,
        }
      : null;
    return {
      images,
      grid,
      interrupted: result.interrupted,
      seed: params.seed,
      subseed: params.subseed,
      model: {
        name: model.name,
        hash: model.hash,
        vaeName: model.vae?.name ?? null,
        vaeHash: model.vae?.hash ?? null,
      },
    };
  }
}

export const STYLES_FILE = (dataDir: string) => join(dataDir, 'styles.csv');
