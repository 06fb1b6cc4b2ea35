/**
 * POST /api/v1/tools: a model tool (merge, convert, extract parts, inspect, hash) queued as a job of
 * kind "tool"; its state, progress and result come from the job API (GET /api/v1/jobs/:id, /events).
 * A1111 has no merger route (its merger is UI-only), so this is the route; the body uses the A1111
 * merger's argument names.
 */
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { ServerContext } from '../context.js';
import { buildToolTask, DTYPE_NAMES, PART_NAMES, TOOLS, type ToolBody } from '../tool-jobs.js';
import { jobView } from './jobs.js';

const ToolBodySchema = Type.Object(
  {
    tool: Type.Union(TOOLS.map((t) => Type.Literal(t))),
    primary_model_name: Type.Optional(Type.String({ maxLength: 512 })),
    secondary_model_name: Type.Optional(Type.String({ maxLength: 512 })),
    tertiary_model_name: Type.Optional(Type.String({ maxLength: 512 })),
    interp_method: Type.Optional(
      Type.String({ description: 'Weighted sum, Add difference or No interpolation', maxLength: 64 }),
    ),
    multiplier: Type.Optional(Type.Number({ description: 'M' })),
    save_as_half: Type.Optional(Type.Boolean()),
    bake_in_vae: Type.Optional(Type.String({ maxLength: 512, description: 'a VAE name, or None' })),
    discard_weights: Type.Optional(Type.String({ maxLength: 1024, description: 'regex of keys to drop' })),
    custom_name: Type.Optional(Type.String({ maxLength: 255, description: 'output file name' })),
    model: Type.Optional(Type.String({ maxLength: 512 })),
    dtype: Type.Optional(Type.Union(DTYPE_NAMES.map((d) => Type.Literal(d)))),
    prune: Type.Optional(Type.Boolean()),
    no_vae: Type.Optional(Type.Boolean()),
    part: Type.Optional(Type.Union(PART_NAMES.map((p) => Type.Literal(p)))),
  },
  { additionalProperties: false },
);

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const prefix = ctx.config.subpath.replace(/\/+$/, '');
  const models = join(ctx.config.dataDir, 'models');
  app.post(
    '/api/v1/tools',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Queue a model tool (merge, convert, extract, inspect, hash); answers at once with the job',
        body: ToolBodySchema,
      },
    },
    async (req, reply) => {
      const task = buildToolTask(
        ctx.catalog,
        {
          checkpoints: ctx.config.dirs.checkpoints,
          vae: ctx.config.dirs.vae,
          unet: join(models, 'unet'),
          textEncoders: join(models, 'text_encoder'),
        },
        req.body as ToolBody,
      );
      const job = await ctx.queue.submit({ mode: 'tool', task, source: 'api' });
      return reply.code(202).send(jobView(job, prefix, null));
    },
  );
};

export default plugin;
