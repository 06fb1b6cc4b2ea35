/** GET/POST /sdapi/v1/options (A1111 settings, persisted) and GET /sdapi/v1/cmd-flags. */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { ServerContext } from '../context.js';
import { ValidationError } from '../requests.js';
import { checkOption } from '../options.js';

/** The checkpoint the settings point at: the loaded one, else the saved one if present, else the first. */
export function currentCheckpoint(ctx: ServerContext) {
  const loaded = ctx.executor.currentSpec();
  if (loaded) {
    const c = ctx.catalog.byRealpath(loaded.checkpoint);
    if (c) return c;
  }
  const saved = ctx.options.get('sd_model_checkpoint');
  return (
    (typeof saved === 'string' && ctx.catalog.lookupCheckpoint(saved)) || ctx.catalog.checkpoints[0] || null
  );
}

/** GET /options as A1111 answers it: every setting, the checkpoint as its title. */
export function currentOptions(ctx: ServerContext): Record<string, unknown> {
  const all = ctx.options.all() as Record<string, unknown>;
  const c = currentCheckpoint(ctx);
  all.sd_model_checkpoint = c?.title ?? null;
  all.sd_checkpoint_hash = c?.sha256 ?? '';
  return all;
}

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  app.get(
    '/sdapi/v1/options',
    { schema: { tags: ['A1111'], summary: 'Every setting with its value' } },
    async () => currentOptions(ctx),
  );

  app.post(
    '/sdapi/v1/options',
    {
      schema: {
        tags: ['A1111'],
        summary: 'Change settings (sd_model_checkpoint loads that model before answering)',
        body: Type.Record(Type.String(), Type.Unknown()),
      },
    },
    async (req) => {
      const body = req.body as Record<string, unknown> | undefined;
      if (!body || typeof body !== 'object' || Array.isArray(body))
        throw new ValidationError('body', 'body must be an object of settings');
      const now = currentOptions(ctx);
      const changes: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(body)) {
        // Posting back what GET answered is a no-op (Open WebUI posts the whole object).
        if (JSON.stringify(now[k]) === JSON.stringify(v)) continue;
        if (k === 'sd_checkpoint_hash') continue;
        const why = checkOption(k, v);
        if (why) throw new ValidationError(k, why);
        changes[k] = v;
      }
      let checkpoint = currentCheckpoint(ctx);
      if (typeof changes.sd_model_checkpoint === 'string') {
        checkpoint = ctx.catalog.findCheckpoint(changes.sd_model_checkpoint);
        changes.sd_model_checkpoint = checkpoint.title;
      }
      if (typeof changes.sd_vae === 'string') ctx.catalog.findVae(changes.sd_vae);
      await ctx.options.update(changes);
      const wantsLoad =
        'sd_model_checkpoint' in changes || ('sd_vae' in changes && ctx.executor.currentSpec());
      if (wantsLoad && checkpoint) {
        const sdVae = String(ctx.options.get('sd_vae') ?? 'Automatic');
        const vae = ctx.catalog.findVae(sdVae)?.filename ?? (sdVae === 'None' ? 'None' : 'Automatic');
        await ctx.queue.exclusive(() => ctx.executor.load(checkpoint.filename, vae));
      }
      return null;
    },
  );

  app.get(
    '/sdapi/v1/cmd-flags',
    { schema: { tags: ['A1111'], summary: 'The command-line flags' } },
    async () => ctx.config.flags,
  );
};

export default plugin;
