/**
 * SDXL through the A1111 API on a real server (the tiny-sdxl base and refiner of its cases.json in
 * models/Stable-diffusion): the API keeps A1111's 512 default size for every family; the refiner
 * (`refiner_checkpoint`, `refiner_switch_at`) in img2img and in the hires fix, with its infotext
 * keys; and the `sdxl_clip_l_skip` setting from /sdapi/v1/options reaching the image.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GoldenSet } from '../engine/family-goldens.js';
import { goldenPath } from '../helpers/golden.js';
import { call, makeDataDir, pngBase64, pngInfo, startServer, type TestServer } from './helpers.js';

const gs = new GoldenSet('tiny-sdxl');
const base = gs.cases.find((c) => c.kind === 'txt2img')!;
const ref = gs.cases.find((c) => c.kind.startsWith('refiner_') && !c.checkpoint.includes('fp16'))!;
const stem = (f: string) => f.replace(/\.safetensors$/, '');

let server: TestServer;
beforeAll(async () => {
  const dataDir = makeDataDir(false);
  const models = join(dataDir, 'models', 'Stable-diffusion');
  mkdirSync(models, { recursive: true });
  for (const c of [base, ref]) {
    symlinkSync(goldenPath(gs.set, c.checkpoint), join(models, c.checkpoint));
    symlinkSync(goldenPath(gs.set, c.config), join(models, c.config));
  }
  server = await startServer(dataDir);
});
afterAll(async () => {
  await server?.close();
});

const model = { sd_model_checkpoint: stem(base.checkpoint) };
const small = { prompt: 'a red cube', seed: 5, steps: 3, width: 64, height: 64, override_settings: model };

interface Result {
  images: string[];
  info: {
    width: number;
    height: number;
    infotexts: string[];
    extra_generation_params: Record<string, unknown>;
  };
}

async function post(path: string, body: unknown): Promise<Result> {
  const r = await call(server.url, path, { body });
  expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(200);
  const b = r.body as { images: string[]; info: string };
  return { images: b.images, info: JSON.parse(b.info) as Result['info'] };
}

describe('SDXL through the A1111 API', () => {
  it('no width/height: 512x512 as A1111 for every family (the CLI takes the family default instead)', async () => {
    const r = await post('/sdapi/v1/txt2img', { prompt: 'a cube', steps: 1, override_settings: model });
    expect([r.info.width, r.info.height]).toEqual([512, 512]);
    const png = await pngInfo(r.images[0]!);
    expect([png.width, png.height]).toEqual([512, 512]);
    expect(png.parameters).toMatch(/Size: 512x512/);
  });

  it('img2img with refiner_checkpoint / refiner_switch_at: the refiner changes the image, infotext and info say so', async () => {
    const init = { ...small, init_images: [await pngBase64(64, 64)], denoising_strength: 0.75 };
    const plain = await post('/sdapi/v1/img2img', init);
    const r = await post('/sdapi/v1/img2img', {
      ...init,
      refiner_checkpoint: stem(ref.checkpoint),
      refiner_switch_at: 0.5,
    });
    expect(r.info.infotexts[0]).toMatch(
      new RegExp(`Refiner: ${stem(ref.checkpoint)} \\[[0-9a-f]{10}\\], Refiner switch at: 0.5`),
    );
    expect(r.info.extra_generation_params['Refiner switch at']).toBe(0.5);
    expect(r.images[0]).not.toBe(plain.images[0]);
  });

  it('txt2img hires fix with the refiner: the second pass is refined; the options choose the pass', async () => {
    const hires = {
      ...small,
      enable_hr: true,
      hr_scale: 1.5,
      refiner_checkpoint: stem(ref.checkpoint),
      refiner_switch_at: 0.5,
    };
    const r = await post('/sdapi/v1/txt2img', hires);
    expect(r.info.infotexts[0]).toMatch(/Refiner switch at: 0.5/);
    expect(r.info.infotexts[0]).not.toMatch(/Hires refiner/);
    const first = await post('/sdapi/v1/txt2img', {
      ...hires,
      override_settings: { ...model, hires_fix_refiner_pass: 'first pass' },
    });
    expect(first.info.infotexts[0]).toMatch(/Hires refiner: first pass/);
    const bad = await call(server.url, '/sdapi/v1/txt2img', {
      body: { ...hires, override_settings: { hires_fix_refiner_pass: 'third pass' } },
    });
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body)).toMatch(/hires_fix_refiner_pass/);
    const missing = await call(server.url, '/sdapi/v1/txt2img', {
      body: { ...hires, refiner_checkpoint: 'no-such-refiner' },
    });
    expect(missing.status).toBe(422);
    expect(JSON.stringify(missing.body)).toMatch(/refiner_checkpoint: model \\"no-such-refiner\\" not found/);
  });

  it('sdxl_clip_l_skip from /sdapi/v1/options reaches the image (clip skip 1 = CLIP-L last layer)', async () => {
    const body = { ...small, override_settings: { ...model, CLIP_stop_at_last_layers: 1 } };
    const before = await post('/sdapi/v1/txt2img', body);
    const set = await call(server.url, '/sdapi/v1/options', { body: { sdxl_clip_l_skip: true } });
    expect(set.status).toBe(200);
    expect((await call(server.url, '/sdapi/v1/options')).body.sdxl_clip_l_skip).toBe(true);
    const after = await post('/sdapi/v1/txt2img', body);
    expect(after.images[0]).not.toBe(before.images[0]);
    // Per request, override_settings turns it off again.
    const off = await post('/sdapi/v1/txt2img', {
      ...body,
      override_settings: { ...body.override_settings, sdxl_clip_l_skip: false },
    });
    expect(off.images[0]).toBe(before.images[0]);
  });
});
