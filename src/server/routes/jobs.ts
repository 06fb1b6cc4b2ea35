/**
 * SD Studio's own job API beside the A1111 adapter: submit (returns at once), get, list (paged,
 * by state), cancel, delete, images from the store, and per-job progress as Server-Sent Events
 * (step, total, ETA, a preview every N steps).
 */
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { ServerContext } from '../context.js';
import { isFinished } from '../queue.js';
import {
  isToolRequest,
  JOB_STATES,
  type JobEvent,
  type JobProgress,
  type JobRecord,
  type JobState,
} from '../jobs.js';
import { toolTaskView } from '../tool-jobs.js';
import { buildJobRequest } from '../requests.js';
import { previewPng } from './progress.js';
import { UserError } from '../../util/errors.js';

const SubmitBody = Type.Object(
  {
    mode: Type.Union([Type.Literal('txt2img'), Type.Literal('img2img')]),
    /** Generation parameters with A1111's field names (the txt2img/img2img bodies). */
    params: Type.Optional(
      Type.Object(
        {},
        { additionalProperties: true, description: 'fields of GenerationRequestSchema (A1111 names)' },
      ),
    ),
    /** Save the images in outputs/ (default true). */
    save: Type.Optional(Type.Boolean()),
    /** Live preview every N steps in the event stream (0 = none; default: the setting). */
    preview_every: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

function progressView(p: JobProgress) {
  return {
    phase: p.phase,
    step: p.step,
    steps: p.steps,
    job_no: p.jobNo,
    job_count: p.jobCount,
    fraction: p.fraction,
    eta_seconds: p.etaSeconds,
  };
}

export function jobView(job: JobRecord, prefix: string, progress: JobProgress | null) {
  const r = job.request;
  // Tool jobs (merge, convert, …) carry their task and answer instead of generation params.
  if (isToolRequest(r)) {
    return {
      ...generationView(job, prefix, progress, null),
      tool: { ...toolTaskView(r.task), result: job.result?.tool ?? null },
      result: null,
    };
  }
  const { init_images, mask, ...params } = r.params;
  return generationView(job, prefix, progress, {
    ...params,
    init_images: init_images ? init_images.length : 0,
    mask: mask ? 1 : 0,
  });
}

function generationView(
  job: JobRecord,
  prefix: string,
  progress: JobProgress | null,
  params: Record<string, unknown> | null,
) {
  return {
    id: job.id,
    mode: job.mode,
    state: job.state,
    created_at: new Date(job.createdAt).toISOString(),
    started_at: job.startedAt ? new Date(job.startedAt).toISOString() : null,
    finished_at: job.finishedAt ? new Date(job.finishedAt).toISOString() : null,
    error: job.error,
    params,
    progress: progress && progress.jobId === job.id ? progressView(progress) : null,
    result: job.result && {
      images: job.result.images.map((img, i) => ({
        url: `${prefix}/api/v1/jobs/${job.id}/images/${i}`,
        seed: img.seed,
        subseed: img.subseed,
        infotext: img.infotext,
      })),
      grid: job.result.grid ? { url: `${prefix}/api/v1/jobs/${job.id}/images/grid` } : null,
      interrupted: job.result.interrupted,
      info: job.result.info,
    },
  };
}

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const tags = ['jobs'];
  const prefix = ctx.config.subpath.replace(/\/+$/, '');
  const must = async (id: string) => {
    const job = await ctx.queue.get(id);
    if (!job) throw new UserError(`job ${id.slice(0, 64)} not found`, 2, 404);
    return job;
  };

  app.post(
    '/api/v1/jobs',
    { schema: { tags, summary: 'Queue a generation; answers at once with the job', body: SubmitBody } },
    async (req, reply) => {
      const body = req.body as {
        mode: 'txt2img' | 'img2img';
        params?: Record<string, unknown>;
        save?: boolean;
        preview_every?: number;
      };
      const { request } = await buildJobRequest(ctx, body.mode, body.params ?? {}, {
        source: 'api',
        save: body.save ?? true,
        previewEvery: body.preview_every,
      });
      const job = await ctx.queue.submit(request);
      return reply.code(202).send(jobView(job, prefix, null));
    },
  );

  app.get(
    '/api/v1/jobs',
    {
      schema: {
        tags,
        summary: 'Jobs, newest first',
        querystring: Type.Object({
          state: Type.Optional(Type.Union(JOB_STATES.map((s) => Type.Literal(s)))),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
          offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
        }),
      },
    },
    async (req) => {
      const q = req.query as { state?: JobState; limit?: number; offset?: number };
      const limit = q.limit ?? 50;
      const offset = q.offset ?? 0;
      const { jobs, total } = await ctx.queue.list({ state: q.state, limit, offset });
      const cur = ctx.queue.current();
      return { jobs: jobs.map((j) => jobView(j, prefix, cur)), total, limit, offset };
    },
  );

  app.get('/api/v1/jobs/:id', { schema: { tags, summary: 'One job', params: IdParams } }, async (req) => {
    const job = await must((req.params as { id: string }).id);
    return jobView(job, prefix, ctx.queue.current());
  });

  app.post(
    '/api/v1/jobs/:id/cancel',
    { schema: { tags, summary: 'Cancel a queued job or stop a running one', params: IdParams } },
    async (req) => {
      const { id } = req.params as { id: string };
      await must(id);
      const job = (await ctx.queue.cancel(id))!;
      return jobView(job, prefix, ctx.queue.current());
    },
  );

  app.delete(
    '/api/v1/jobs/:id',
    { schema: { tags, summary: 'Delete a job (saved images in outputs/ stay)', params: IdParams } },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      await must(id);
      await ctx.queue.remove(id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/jobs/:id/images/:n',
    {
      schema: {
        tags,
        summary: 'A result image (PNG), by index or "grid"',
        params: Type.Object({ id: Type.String({ maxLength: 64 }), n: Type.String({ maxLength: 8 }) }),
      },
    },
    async (req, reply) => {
      const { id, n } = req.params as { id: string; n: string };
      const job = await must(id);
      const r = job.result;
      const file = n === 'grid' ? r?.grid : /^\d+$/.test(n) ? r?.images[Number(n)] : undefined;
      if (!file) throw new UserError(`job ${id} has no image ${n.slice(0, 8)}`, 2, 404);
      const bytes = await readFile(file.path).catch(() => {
        throw new UserError(`the image file of job ${id} is gone (${file.path})`, 2, 410);
      });
      return reply.type('image/png').send(bytes);
    },
  );

  app.get(
    '/api/v1/jobs/:id/events',
    { schema: { tags, summary: 'Server-Sent Events: state, progress, preview', params: IdParams } },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const job = await must(id);
      await streamEvents(reply, ctx, job, prefix);
    },
  );
};

async function streamEvents(
  reply: FastifyReply,
  ctx: ServerContext,
  job: JobRecord,
  prefix: string,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = String(v);
  raw.writeHead(200, {
    ...headers,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  let closed = false;
  const send = (event: string, data: unknown) => {
    if (!closed) raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const end = () => {
    if (closed) return;
    closed = true;
    unsubscribe();
    clearInterval(keepAlive);
    raw.end();
  };
  let pending = Promise.resolve();
  const unsubscribe = ctx.queue.subscribe(job.id, (e: JobEvent) => {
    // The queue updates one progress object in place: take each event's values now, then send in
    // order (previews after their PNG is encoded), so a late send never shows a later state.
    if (e.type === 'state') {
      const view = jobView(e.job, prefix, ctx.queue.current());
      const finished = isFinished(e.job);
      pending = pending.then(() => {
        send('state', view);
        if (finished) end();
      });
    } else if (e.type === 'progress') {
      const view = progressView(e.progress);
      pending = pending.then(() => send('progress', view));
    } else {
      const snapshot: JobProgress = {
        ...e.progress,
        preview: e.progress.preview && { ...e.progress.preview, images: [...e.progress.preview.images] },
      };
      pending = pending.then(async () => {
        const png = await previewPng(snapshot);
        if (png)
          send('preview', {
            step: snapshot.preview?.step ?? snapshot.step,
            image: png.toString('base64'),
          });
      });
    }
  });
  const keepAlive = setInterval(() => !closed && raw.write(': keep-alive\n\n'), 15_000);
  raw.on('close', end);
  // Read again after subscribing, so a job finishing in between is not missed.
  const now = (await ctx.queue.get(job.id)) ?? job;
  send('state', jobView(now, prefix, ctx.queue.current()));
  if (isFinished(now)) end();
}

export default plugin;
