/**
 * POST /sdapi/v1/txt2img and /img2img: A1111's bodies in, a job through the queue (the HTTP request
 * stays open while it waits, as A1111's queue lock does), A1111's response out.
 */
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { pythonJson } from '../../tools/python-json.js';
import { UserError } from '../../util/errors.js';
import type { ServerContext } from '../context.js';
import type { JobMode, JobRecord } from '../jobs.js';
import { buildJobRequest } from '../requests.js';
import {
  echoParameters,
  GenerationResponse,
  IMG2IMG_FIELDS,
  Img2ImgBody,
  TXT2IMG_FIELDS,
  Txt2ImgBody,
  type A1111Body,
} from '../schemas/a1111.js';

export interface A1111GenerationResponse {
  images: string[];
  parameters: Record<string, unknown>;
  info: string;
}

/** A finished job as A1111 answers it. */
export async function a1111Response(
  mode: JobMode,
  job: JobRecord,
  body: Record<string, unknown>,
): Promise<A1111GenerationResponse> {
  const r = job.result!;
  const files = [...(r.grid ? [r.grid] : []), ...r.images];
  const images =
    body.send_images === false
      ? []
      : await Promise.all(files.map(async (f) => (await readFile(f.path)).toString('base64')));
  const parameters = echoParameters(mode === 'txt2img' ? TXT2IMG_FIELDS : IMG2IMG_FIELDS, body);
  if (mode === 'img2img' && body.include_init_images !== true) {
    parameters.init_images = null;
    parameters.mask = null;
  }
  // A grid sent first shifts the images (A1111 index_of_first_image) and has its own infotext.
  const info = { ...r.info!, index_of_first_image: r.grid ? 1 : 0, infotexts: files.map((f) => f.infotext) };
  return { images, parameters, info: pythonJson(info) };
}

/**
 * `Server-Timing` of a finished job (milliseconds, from its record): `queue` = waiting behind other
 * jobs, `gen` = running (model load if any, sampling, decoding, saving). The rest of the request's
 * time is the server's own (parsing, validation, the response).
 */
export function serverTiming(job: JobRecord): string | null {
  if (job.startedAt === null || job.finishedAt === null) return null;
  return `queue;dur=${job.startedAt - job.createdAt}, gen;dur=${job.finishedAt - job.startedAt}`;
}

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const handle = async (
    mode: JobMode,
    input: A1111Body | undefined,
    reply: FastifyReply,
  ): Promise<A1111GenerationResponse> => {
    const { request, body, restoreOverrides } = await buildJobRequest(ctx, mode, input, { source: 'a1111' });
    const submitted = await ctx.queue.submit(request);
    const job = await ctx.queue.wait(submitted.id);
    const timing = serverTiming(job);
    if (timing) reply.header('Server-Timing', timing);
    try {
      if (job.state === 'failed' || !job.result?.info) {
        throw new UserError(job.error ?? `job ${job.state}`, 2, job.errorStatus ?? 500);
      }
      if (restoreOverrides) await ctx.options.update(restoreOverrides);
      return await a1111Response(mode, job, body);
    } finally {
      if (!request.save) await ctx.queue.remove(job.id).catch(() => undefined);
    }
  };
  const common = { tags: ['A1111'], response: { 200: GenerationResponse } };
  // The body schema documents; validateGenerationRequest (params/) validates, naming every bad field.
  const documentOnly = { validatorCompiler: () => (value: unknown) => ({ value }) };
  app.post(
    '/sdapi/v1/txt2img',
    { ...documentOnly, schema: { ...common, summary: 'Text to image', body: Txt2ImgBody } },
    async (req, reply) => handle('txt2img', req.body as A1111Body | undefined, reply),
  );
  app.post(
    '/sdapi/v1/img2img',
    {
      ...documentOnly,
      schema: { ...common, summary: 'Image to image (inpainting with mask)', body: Img2ImgBody },
    },
    async (req, reply) => handle('img2img', req.body as A1111Body | undefined, reply),
  );
};

export default plugin;
