/**
 * The History screen's routes: every generation in the job store (it survives restarts), newest
 * first, searched by prompt and paged by a cursor; small thumbnails of its images; re-run with the
 * same parameters (the seeds it actually used); delete with its image files.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import type { FastifyPluginAsync } from 'fastify';
import sharp from 'sharp';
import { Type } from 'typebox';
import { UserError } from '../../util/errors.js';
import type { ServerContext } from '../context.js';
import { isToolRequest, type JobRecord, type JobRequest } from '../jobs.js';
import { jobView } from './jobs.js';

const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const THUMB_PX = 256;

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const tags = ['history'];
  const prefix = ctx.config.subpath.replace(/\/+$/, '');
  /** A generation job (tool jobs are not history entries). */
  const must = async (id: string): Promise<JobRecord & { request: JobRequest }> => {
    const job = await ctx.queue.get(id);
    if (!job || isToolRequest(job.request)) throw new UserError(`job ${id.slice(0, 64)} not found`, 2, 404);
    return job as JobRecord & { request: JobRequest };
  };
  const view = (job: JobRecord) => ({
    ...jobView(job, prefix, ctx.queue.current()),
    seq: job.seq,
    thumbs: (job.result?.images ?? []).map((_, i) => `${prefix}/api/v1/history/${job.id}/thumbs/${i}`),
  });

  app.get(
    '/api/v1/history',
    {
      schema: {
        tags,
        summary: 'Generations, newest first; q searches the prompt, before pages (seq of the last one seen)',
        querystring: Type.Object({
          q: Type.Optional(Type.String({ maxLength: 500 })),
          before: Type.Optional(Type.Integer({ minimum: 1 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 30 })),
        }),
      },
    },
    async (req) => {
      const q = req.query as { q?: string; before?: number; limit?: number };
      const { jobs, more } = await ctx.queue.history({
        q: q.q?.trim() || undefined,
        before: q.before,
        limit: q.limit ?? 30,
      });
      return { jobs: jobs.map(view), next_before: more ? jobs[jobs.length - 1]!.seq : null };
    },
  );

  app.get(
    '/api/v1/history/:id/thumbs/:n',
    {
      schema: {
        tags,
        summary: `A result image scaled to fit ${THUMB_PX} px (WebP)`,
        params: Type.Object({ id: Type.String({ maxLength: 64 }), n: Type.Integer({ minimum: 0 }) }),
      },
    },
    async (req, reply) => {
      const { id, n } = req.params as { id: string; n: number };
      const img = (await must(id)).result?.images[n];
      if (!img) throw new UserError(`job ${id} has no image ${n}`, 2, 404);
      const bytes = await readFile(img.path).catch(() => {
        throw new UserError(`the image file of job ${id} is gone`, 2, 410);
      });
      const thumb = await sharp(bytes)
        .resize(THUMB_PX, THUMB_PX, { fit: 'inside', withoutEnlargement: true })
        .webp({ quality: 80 })
        .toBuffer();
      // A job's images never change: the browser may keep them.
      return reply.type('image/webp').header('cache-control', 'private, max-age=86400').send(thumb);
    },
  );

  app.post(
    '/api/v1/history/:id/rerun',
    {
      schema: {
        tags,
        summary: 'Queue the same generation again (same seeds); answers with the new job',
        params: IdParams,
      },
    },
    async (req, reply) => {
      const job = await must((req.params as { id: string }).id);
      const r = job.request;
      if (!existsSync(r.checkpoint)) {
        throw new UserError(`the checkpoint this job used is gone (${r.checkpoint})`, 2, 422);
      }
      // The seeds it used, not -1 again: the same parameters give the same images.
      const info = job.result?.info;
      const seed = info?.seed ?? job.result?.images[0]?.seed;
      const subseed = info?.subseed ?? job.result?.images[0]?.subseed;
      const params = {
        ...r.params,
        ...(typeof seed === 'number' && { seed }),
        ...(typeof subseed === 'number' && { subseed }),
      };
      const next = await ctx.queue.submit({ ...r, params, source: 'api', save: true });
      return reply.code(202).send(view(next));
    },
  );

  app.delete(
    '/api/v1/history/:id',
    { schema: { tags, summary: 'Delete a generation and its image files', params: IdParams } },
    async (req, reply) => {
      const job = await must((req.params as { id: string }).id);
      if (job.state === 'running')
        throw new UserError(`job ${job.id} is running; interrupt it first`, 2, 409);
      // Only the files the store recorded for this job: a request never names a path.
      const files = [...(job.result?.images ?? []), ...(job.result?.grid ? [job.result.grid] : [])];
      for (const f of files) await rm(f.path, { force: true });
      await ctx.queue.remove(job.id);
      return reply.code(204).send();
    },
  );
};

export default plugin;
