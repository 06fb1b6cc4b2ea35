/**
 * Hostile and broken requests: each answered 4xx naming the field (422 for validation, as FastAPI),
 * never a 500, and the server keeps answering. None of these reaches the queue or loads a model.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, makeDataDir, pngBase64, startServer, type TestServer } from './helpers.js';

let server: TestServer;
let empty: TestServer;
let dataDir: string;
let png: string;
const BODY_LIMIT = 4 * 1024 * 1024;

beforeAll(async () => {
  dataDir = makeDataDir();
  server = await startServer(dataDir, { bodyLimit: BODY_LIMIT });
  empty = await startServer(makeDataDir(false));
  png = await pngBase64(16, 16);
});
afterAll(async () => {
  await server?.close();
  await empty?.close();
});

type Case = [name: string, path: string, body: unknown, status: number, field: string];
const notImage = Buffer.from('hello, this is not an image').toString('base64');

const CASES: Case[] = [
  ['steps not a number', 'txt2img', { steps: 'abc' }, 422, 'steps'],
  ['steps zero', 'txt2img', { steps: 0 }, 422, 'steps'],
  ['steps negative', 'txt2img', { steps: -5 }, 422, 'steps'],
  ['steps absurd', 'txt2img', { steps: 1_000_000 }, 422, 'steps'],
  ['width zero', 'txt2img', { width: 0 }, 422, 'width'],
  ['width negative', 'txt2img', { width: -64 }, 422, 'width'],
  ['width below 8', 'txt2img', { width: 4 }, 422, 'width'],
  ['width huge', 'txt2img', { width: 100_000 }, 422, 'width'],
  ['height fractional', 'txt2img', { height: 12.5 }, 422, 'height'],
  ['batch_size over the limit', 'txt2img', { batch_size: 10_000 }, 422, 'batch_size'],
  ['n_iter zero', 'txt2img', { n_iter: 0 }, 422, 'n_iter'],
  ['cfg_scale text', 'txt2img', { cfg_scale: 'NaN' }, 422, 'cfg_scale'],
  ['cfg_scale overflowing to Infinity', 'txt2img', '{"cfg_scale": 1e400}', 422, 'cfg_scale'],
  ['NaN literal', 'txt2img', '{"cfg_scale": NaN}', 422, 'body'],
  ['broken JSON', 'txt2img', '{"steps": ', 422, 'body'],
  ['body is a list', 'txt2img', [1, 2], 422, 'body'],
  ['prompt an object', 'txt2img', { prompt: { a: 1 } }, 422, 'prompt'],
  ['megabyte prompt', 'txt2img', { prompt: 'x'.repeat(1_100_000) }, 422, 'prompt'],
  ['unknown sampler', 'txt2img', { sampler_name: 'Nonexistent Sampler' }, 422, 'sampler_name'],
  ['unknown scheduler', 'txt2img', { scheduler: 'bogus' }, 422, 'scheduler'],
  ['denoising_strength above 1', 'txt2img', { denoising_strength: 2 }, 422, 'denoising_strength'],
  ['unknown hr_upscaler', 'txt2img', { enable_hr: true, hr_upscaler: 'Bogus' }, 422, 'hr_upscaler'],
  ['hr_scale absurd', 'txt2img', { enable_hr: true, hr_scale: 100 }, 422, 'hr_scale'],
  ['override_settings not an object', 'txt2img', { override_settings: 'x' }, 422, 'override_settings'],
  [
    'model name with ../',
    'txt2img',
    { override_settings: { sd_model_checkpoint: '../../../etc/passwd' } },
    422,
    'sd_model_checkpoint',
  ],
  [
    'absolute model path',
    'txt2img',
    { override_settings: { sd_model_checkpoint: '/etc/passwd' } },
    422,
    'sd_model_checkpoint',
  ],
  ['absolute VAE path', 'txt2img', { override_settings: { sd_vae: '/etc/passwd' } }, 422, 'sd_vae'],
  ['unknown VAE', 'txt2img', { override_settings: { sd_vae: 'nope.safetensors' } }, 422, 'sd_vae'],
  [
    'clip skip out of range',
    'txt2img',
    { override_settings: { CLIP_stop_at_last_layers: 99 } },
    422,
    'CLIP_stop_at_last_layers',
  ],
  ['unknown script', 'txt2img', { script_name: 'x/y/z plot' }, 422, 'Script'],
  ['restore_faces (not available yet)', 'txt2img', { restore_faces: true }, 422, 'restore_faces'],
  ['broken base64 init image', 'img2img', { init_images: ['!!!not base64!!!'] }, 422, 'init_images[0]'],
  ['init image that is not an image', 'img2img', { init_images: [notImage] }, 422, 'init_images[0]'],
  ['init image URL', 'img2img', { init_images: ['http://127.0.0.1:1/x.png'] }, 422, 'init_images[0]'],
  ['empty init image', 'img2img', { init_images: [''] }, 422, 'init_images[0]'],
  ['broken mask', 'img2img', { init_images: ['PNG'], mask: 'zzz' }, 422, 'mask'],
  ['resize_mode out of range', 'img2img', { init_images: ['PNG'], resize_mode: 7 }, 422, 'resize_mode'],
  [
    'inpainting_fill out of range',
    'img2img',
    { init_images: ['PNG'], inpainting_fill: 9 },
    422,
    'inpainting_fill',
  ],
  ['mask_blur negative', 'img2img', { init_images: ['PNG'], mask_blur: -3 }, 422, 'mask_blur'],
  ['mask not an image', 'img2img', { init_images: ['PNG'], mask: notImage }, 422, 'mask'],
  ['options: model path', 'options', { sd_model_checkpoint: '../x.safetensors' }, 422, 'sd_model_checkpoint'],
  ['options: bad value', 'options', { samples_format: 'exe' }, 422, 'samples_format'],
  ['options: NaN-like', 'options', '{"jpeg_quality": Infinity}', 422, 'body'],
  ['png-info: broken base64', 'png-info', { image: '%%%' }, 422, 'image'],
  ['png-info: not an image', 'png-info', { image: notImage }, 422, 'image'],
  [
    'extras: zero scale',
    'extra-single-image',
    { image: 'PNG', upscaler_1: 'Lanczos', upscaling_resize: 0 },
    422,
    'upscaling_resize',
  ],
  [
    'extras: huge result',
    'extra-single-image',
    { image: 'PNG', upscaler_1: 'Lanczos', upscaling_resize: 8, upscaling_resize_w: 9000 },
    422,
    'upscaling_resize',
  ],
  [
    'extras: face restoration',
    'extra-single-image',
    { image: 'PNG', gfpgan_visibility: 0.5 },
    422,
    'gfpgan_visibility',
  ],
  ['extras: not an image', 'extra-single-image', { image: notImage }, 422, 'image'],
  ['extras: empty image', 'extra-single-image', {}, 422, 'image'],
];

describe('bad input', () => {
  const table = CASES.map(([name, path, body, status, field]) => ({ name, path, body, status, field }));
  it.each(table)('$name → $status naming $field', async ({ path, body, status, field }) => {
    const fill = (b: unknown): unknown =>
      typeof b === 'string' ? b : JSON.parse(JSON.stringify(b).replaceAll('"PNG"', JSON.stringify(png)));
    const payload = fill(body);
    const r = await call(
      server.url,
      `/sdapi/v1/${path}`,
      typeof payload === 'string' ? { raw: payload } : { body: payload },
    );
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(JSON.stringify(r.body)).toContain(field === 'body' ? '"body"' : field);
    expect(r.status).toBeLessThan(500);
  });

  it('a body over the limit is 413; the server keeps answering; nothing was queued or written', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', { body: { prompt: 'x'.repeat(BODY_LIMIT + 10) } });
    expect(r.status).toBe(413);
    expect((await call(server.url, '/sdapi/v1/options')).status).toBe(200);
    expect((await call(server.url, '/api/v1/jobs')).body.total).toBe(0);
    expect(server.ctx.executor.currentSpec()).toBeNull();
    expect(existsSync(join(dataDir, 'outputs'))).toBe(false);
    expect(readdirSync(dataDir).sort()).toEqual(
      ['config.json', 'jobs.sqlite', 'jobs.sqlite-shm', 'jobs.sqlite-wal', 'models'].filter((f) =>
        existsSync(join(dataDir, f)),
      ),
    );
  });

  it('job API: unknown ids, bad filters, bad modes', async () => {
    expect((await call(server.url, '/api/v1/jobs/no-such-job')).status).toBe(404);
    expect((await call(server.url, '/api/v1/jobs/..%2F..%2Fetc%2Fpasswd')).status).toBe(404);
    expect((await call(server.url, '/api/v1/jobs/x/images/0')).status).toBe(404);
    expect((await call(server.url, '/api/v1/jobs?state=bogus')).status).toBe(422);
    expect((await call(server.url, '/api/v1/jobs?limit=0')).status).toBe(422);
    const m = await call(server.url, '/api/v1/jobs', { body: { mode: 'paint' } });
    expect(m.status).toBe(422);
    expect(JSON.stringify(m.body)).toContain('mode');
    const p = await call(server.url, '/api/v1/jobs', { body: { mode: 'txt2img', params: { steps: -1 } } });
    expect(p.status).toBe(422);
    expect(JSON.stringify(p.body)).toContain('steps');
  });

  it('without a checkpoint: the API answers, sd-models is empty, generation says how to add a model', async () => {
    expect((await call(empty.url, '/sdapi/v1/sd-models')).body).toEqual([]);
    expect((await call(empty.url, '/sdapi/v1/options')).body.sd_model_checkpoint).toBeNull();
    const r = await call(empty.url, '/sdapi/v1/txt2img', { body: { prompt: 'x' } });
    expect(r.status).toBe(409);
    expect(r.body.detail).toContain(join('models', 'Stable-diffusion'));
    expect(r.body.detail).toContain('sdstudio download');
    expect((await call(empty.url, '/sdapi/v1/reload-checkpoint', { method: 'POST' })).status).toBe(200);
  });
});
