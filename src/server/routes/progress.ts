/** GET /sdapi/v1/progress, POST /interrupt and /skip: they answer at once, beside a running job. */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import { encodePng, imageGrid } from '../../image/images.js';
import type { ServerContext } from '../context.js';
import type { JobProgress } from '../jobs.js';

/** The latest live preview as PNG (one image, or the batch as a grid). */
export async function previewPng(p: JobProgress): Promise<Buffer | null> {
  const imgs = p.preview?.images.filter(Boolean) ?? [];
  if (!imgs.length) return null;
  return encodePng(imgs.length === 1 ? imgs[0]! : imageGrid(imgs));
}

/** A1111's job_timestamp: local time as YYYYMMDDhhmmss. */
function a1111Timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  app.get(
    '/sdapi/v1/progress',
    {
      schema: {
        tags: ['A1111'],
        summary: 'Progress of the running job, with its live preview',
        querystring: Type.Object({ skip_current_image: Type.Optional(Type.Boolean({ default: false })) }),
      },
    },
    async (req) => {
      const skip = (req.query as { skip_current_image?: boolean }).skip_current_image === true;
      const p = ctx.queue.current();
      const state = {
        skipped: p?.skipped ?? false,
        interrupted: p?.interrupted ?? false,
        stopping_generation: false,
        job: p ? `task(${p.jobId})` : '',
        job_count: p ? p.jobCount : 0,
        job_timestamp: p ? a1111Timestamp(new Date(p.startedAt)) : '0',
        job_no: p ? p.jobNo : 0,
        sampling_step: p ? p.step : 0,
        sampling_steps: p ? p.steps : 0,
      };
      if (!p) return { progress: 0, eta_relative: 0, state, current_image: null, textinfo: null };
      // A1111: 0.01 + job_no/job_count + step/steps/job_count.
      const progress = Math.min(1, 0.01 + p.fraction);
      const elapsed = (Date.now() - p.startedAt) / 1000;
      const png = skip ? null : await previewPng(p);
      return {
        progress,
        eta_relative: progress > 0 ? elapsed / progress - elapsed : 0,
        state,
        current_image: png ? png.toString('base64') : null,
        textinfo: `Step ${p.step}/${p.steps} of batch ${p.jobNo + 1}/${p.jobCount}; ${ctx.queue.queuedCount()} waiting`,
      };
    },
  );
  app.post(
    '/sdapi/v1/interrupt',
    { schema: { tags: ['A1111'], summary: 'Stop the running job (it returns what it finished)' } },
    async () => {
      ctx.queue.interrupt();
      return {};
    },
  );
  app.post(
    '/sdapi/v1/skip',
    { schema: { tags: ['A1111'], summary: 'Skip the current image of the running batch' } },
    async () => {
      ctx.queue.skip();
      return null;
    },
  );
};

export default plugin;
