/**
 * A1111's list and housekeeping routes: samplers, schedulers, upscalers, models, VAEs, LoRAs,
 * hypernetworks, embeddings, styles, refresh-*, (un)load checkpoint, memory, scripts, extensions.
 */
import { existsSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import type { FastifyPluginAsync } from 'fastify';
import { IMAGE_UPSCALERS, LATENT_UPSCALE_MODES } from '../../params/generation.js';
import { samplersForApi, schedulersForApi } from '../../sampling/registry.js';
import type { ServerContext } from '../context.js';
import { currentCheckpoint } from './options.js';

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const tags = ['A1111'];
  const get = (path: string, summary: string, fn: () => unknown) =>
    app.get(path, { schema: { tags, summary } }, async () => fn());
  const post = (path: string, summary: string, fn: () => unknown) =>
    app.post(path, { schema: { tags, summary } }, async () => fn());

  get('/sdapi/v1/samplers', 'Samplers', samplersForApi);
  get('/sdapi/v1/schedulers', 'Schedulers', schedulersForApi);
  get('/sdapi/v1/upscalers', 'Upscalers (built-in ones; model upscalers arrive later)', () =>
    IMAGE_UPSCALERS.map((name) => ({
      name,
      model_name: null,
      model_path: null,
      model_url: null,
      scale: 4,
    })),
  );
  get('/sdapi/v1/latent-upscale-modes', 'Latent upscale modes of the hires fix', () =>
    LATENT_UPSCALE_MODES.map((name) => ({ name })),
  );
  get('/sdapi/v1/sd-models', 'Checkpoints', () => ctx.catalog.checkpoints.map((c) => ({ ...c })));
  get('/sdapi/v1/sd-vae', 'VAEs', () => ctx.catalog.vaes.map((v) => ({ ...v })));
  get('/sdapi/v1/hypernetworks', 'Hypernetworks', () => ctx.catalog.hypernetworks.map((h) => ({ ...h })));
  get('/sdapi/v1/loras', 'LoRA / LyCORIS files', () => ctx.catalog.loras.map((l) => ({ ...l })));
  get('/sdapi/v1/face-restorers', 'Face restorers (none yet)', () => []);
  get('/sdapi/v1/realesrgan-models', 'Real-ESRGAN models (none yet)', () => []);
  get('/sdapi/v1/prompt-styles', 'Styles from styles.csv', async () => {
    if (!existsSync(ctx.stylesFile)) return [];
    const { loadStyles } = await import('../../prompt/styles.js');
    return (await loadStyles(ctx.stylesFile)).map((s) => ({
      name: s.name,
      prompt: s.prompt,
      negative_prompt: s.negativePrompt,
    }));
  });
  get('/sdapi/v1/embeddings', 'Textual-inversion embeddings (checked against the loaded model)', async () => {
    const { EmbeddingDatabase } = await import('../../prompt/embeddings.js');
    const dir = ctx.config.dirs.embeddings;
    const db =
      (await ctx.executor.withCurrent((m) =>
        // As the job runner: SDXL embeddings are clip_l ‖ clip_g rows, the towers' widths summed.
        EmbeddingDatabase.loadDir(dir, {
          expectedWidth: m.engine.towers.reduce((w, t) => w + t.config.width, 0),
        }),
      )) ?? (await EmbeddingDatabase.loadDir(dir, {}));
    return db.list();
  });

  post('/sdapi/v1/refresh-checkpoints', 'Rescan the checkpoint folder', async () => {
    await ctx.queue.exclusive(() => ctx.catalog.refreshCheckpoints());
    return null;
  });
  post('/sdapi/v1/refresh-vae', 'Rescan the VAE folder', async () => {
    await ctx.catalog.refreshVae();
    return null;
  });
  post('/sdapi/v1/refresh-loras', 'Rescan the LoRA folder', async () => {
    await ctx.catalog.refreshLoras();
    return null;
  });
  // Every job reads the embeddings folder afresh, so there is nothing to reload.
  post('/sdapi/v1/refresh-embeddings', 'Reload the embeddings', () => null);
  post('/sdapi/v1/unload-checkpoint', 'Release the loaded model', async () => {
    await ctx.queue.exclusive(() => ctx.executor.unload());
    return {};
  });
  post('/sdapi/v1/reload-checkpoint', 'Load the selected model', async () => {
    const c = currentCheckpoint(ctx);
    if (c) {
      const sdVae = String(ctx.options.get('sd_vae') ?? 'Automatic');
      const vae = ctx.catalog.findVae(sdVae)?.filename ?? (sdVae === 'None' ? 'None' : 'Automatic');
      await ctx.queue.exclusive(() => ctx.executor.load(c.filename, vae));
    }
    return {};
  });
  get('/sdapi/v1/memory', 'Memory use', () => {
    const total = totalmem();
    const free = freemem();
    return {
      ram: { free, used: total - free, total },
      cuda: { error: 'no CUDA device in use (onnxruntime CPU provider)' },
    };
  });
  get('/sdapi/v1/scripts', 'Scripts (none yet)', () => ({ txt2img: [], img2img: [] }));
  get('/sdapi/v1/script-info', 'Script arguments (none yet)', () => []);
  get('/sdapi/v1/extensions', 'Extensions (none)', () => []);
};

export default plugin;
