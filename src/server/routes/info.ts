/**
 * A1111's list and housekeeping routes: samplers, schedulers, upscalers, models, VAEs, LoRAs,
 * hypernetworks, embeddings, styles, refresh-*, (un)load checkpoint, memory, scripts, extensions.
 */
import { existsSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import type { FastifyPluginAsync } from 'fastify';
import { IMAGE_UPSCALERS, LATENT_UPSCALE_MODES } from '../../params/generation.js';
import { SAMPLERS } from '../../sampling/index.js';
import { SCHEDULERS } from '../../sampling/schedules.js';
import type { ServerContext } from '../app.js';
import { currentCheckpoint } from './options.js';

/** Schedulers A1111 computes from the model's own discrete timesteps (`need_inner_model`). */
const NEED_INNER_MODEL = new Set(['uniform', 'sgm_uniform', 'simple', 'normal', 'ddim', 'beta']);

export function samplerList() {
  return SAMPLERS.map((s) => {
    const options: Record<string, string> = {};
    if (s.scheduler) options.scheduler = s.scheduler;
    if (s.secondOrder) options.second_order = 'True';
    if (s.usesEnsd) options.uses_ensd = 'True';
    if (s.discardNextToLastSigma) options.discard_next_to_last_sigma = 'True';
    if (s.brownianNoise) options.brownian_noise = 'True';
    if (s.solverType) options.solver_type = s.solverType;
    return { name: s.label, aliases: [...s.aliases], options };
  });
}

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const tags = ['A1111'];
  const get = (path: string, summary: string, fn: () => unknown) =>
    app.get(path, { schema: { tags, summary } }, async () => fn());
  const post = (path: string, summary: string, fn: () => unknown) =>
    app.post(path, { schema: { tags, summary } }, async () => fn());

  get('/sdapi/v1/samplers', 'Samplers', samplerList);
  get('/sdapi/v1/schedulers', 'Schedulers', () =>
    SCHEDULERS.map((s) => ({
      name: s.name,
      label: s.label,
      aliases: s.aliases.length ? [...s.aliases] : null,
      default_rho: s.defaultRho,
      need_inner_model: NEED_INNER_MODEL.has(s.name),
    })),
  );
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
  get('/sdapi/v1/embeddings', 'Textual-inversion embeddings of the loaded model', async () => {
    const db = ctx.executor.embeddings();
    if (db) return db.list();
    // No model loaded: every embedding file, none checked against a model yet.
    const { EmbeddingDatabase } = await import('../../prompt/embeddings.js');
    return (await EmbeddingDatabase.loadDir(ctx.config.dirs.embeddings, {})).list();
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
  post('/sdapi/v1/refresh-embeddings', 'Reload the embeddings', async () => {
    const current = ctx.executor.current();
    if (current) {
      await ctx.queue.exclusive(async () => {
        const { EmbeddingDatabase } = await import('../../prompt/embeddings.js');
        const db = await EmbeddingDatabase.loadDir(ctx.config.dirs.embeddings, {
          expectedWidth: current.engine.config.text.width,
        });
        ctx.executor.setEmbeddings(db);
      });
    }
    return null;
  });
  post('/sdapi/v1/unload-checkpoint', 'Release the loaded model', async () => {
    await ctx.queue.exclusive(() => ctx.executor.unload());
    return {};
  });
  post('/sdapi/v1/reload-checkpoint', 'Load the selected model', async () => {
    const c = currentCheckpoint(ctx);
    if (c) {
      const sdVae = String(ctx.options.get('sd_vae') ?? 'Automatic');
      const vae = ctx.catalog.findVae(sdVae)?.filename ?? (sdVae === 'None' ? 'None' : 'Automatic');
      await ctx.queue.exclusive(() => ctx.executor.ensureModel(c.filename, vae));
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
