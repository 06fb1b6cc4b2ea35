/**
 * POST /sdapi/v1/txt2img and /img2img: A1111's bodies in, a job through the queue (the HTTP request
 * stays open while it waits, as A1111's queue lock does), A1111's response out.
 */
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync } from 'fastify';
import { VERSION } from '../../pipeline/generate.js';
import { clipSkipOf } from '../../params/generation.js';
import { pythonJson } from '../../tools/python-json.js';
import { UserError } from '../../util/errors.js';
import type { ServerContext } from '../app.js';
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
  const p = job.request.params;
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
  const first = r.images[0];
  const info = {
    prompt: first?.prompt ?? p.prompt,
    all_prompts: r.images.map((i) => i.prompt),
    negative_prompt: first?.negativePrompt ?? p.negative_prompt,
    all_negative_prompts: r.images.map((i) => i.negativePrompt),
    seed: r.seed,
    all_seeds: r.images.map((i) => i.seed),
    subseed: r.subseed,
    all_subseeds: r.images.map((i) => i.subseed),
    subseed_strength: p.subseed_strength,
    width: p.width,
    height: p.height,
    sampler_name: p.sampler_name,
    cfg_scale: p.cfg_scale,
    steps: p.steps,
    batch_size: p.batch_size,
    restore_faces: p.restore_faces,
    face_restoration_model: null,
    sd_model_name: r.model.name,
    sd_model_hash: r.model.hash,
    sd_vae_name: r.model.vaeName,
    sd_vae_hash: r.model.vaeHash,
    seed_resize_from_w: p.seed_resize_from_w,
    seed_resize_from_h: p.seed_resize_from_h,
    denoising_strength:
      mode === 'img2img' || p.enable_hr ? p.denoising_strength : (body.denoising_strength ?? null),
    extra_generation_params: {},
    index_of_first_image: r.grid ? 1 : 0,
    infotexts: files.map((f) => f.infotext),
    styles: p.styles,
    job_timestamp: r.jobTimestamp,
    clip_skip: clipSkipOf(p),
    is_using_inpainting_conditioning: false,
    version: VERSION,
  };
  return { images, parameters, info: pythonJson(info) };
}

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const handle = async (mode: JobMode, input: A1111Body | undefined): Promise<A1111GenerationResponse> => {
    const { request, body, restoreOverrides } = await buildJobRequest(ctx, mode, input, { source: 'a1111' });
    const submitted = await ctx.queue.submit(request);
    const job = await ctx.queue.wait(submitted.id);
    try {
      if (job.state === 'failed' || !job.result) {
        throw new UserError(job.error ?? `job ${job.state}`, 2, job.errorStatus ?? 500);
      }
      if (restoreOverrides) await ctx.options.update(restoreOverrides);
      return await a1111Response(mode, job, body);
    } finally {
      if (!request.save) await ctx.queue.remove(job.id).catch(() => undefined);
    }
  };
  const common = { tags: ['A1111'], response: { 200: GenerationResponse } };
  app.post(
    '/sdapi/v1/txt2img',
    { schema: { ...common, summary: 'Text to image', body: Txt2ImgBody } },
    async (req) => handle('txt2img', req.body as A1111Body | undefined),
  );
  app.post(
    '/sdapi/v1/img2img',
    { schema: { ...common, summary: 'Image to image (inpainting with mask)', body: Img2ImgBody } },
    async (req) => handle('img2img', req.body as A1111Body | undefined),
  );
};

export default plugin;
