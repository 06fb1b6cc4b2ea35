/**
 * The A1111 API against a real server on 127.0.0.1 with the tiny checkpoint: the shapes clients
 * read, defaults, the queue (concurrent requests in order with their own seeds), interrupt, skip,
 * options (persisted, model switching), the list routes, extras, png-info, OpenAPI.
 */
import { existsSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  makeDataDir,
  pngBase64,
  pngInfo,
  startServer,
  tinyCheckpoint,
  type TestServer,
} from './helpers.js';
import { basename } from 'node:path';

let server: TestServer;
let dataDir: string;
const small = { steps: 2, width: 64, height: 64, cfg_scale: 5 };

beforeAll(async () => {
  dataDir = makeDataDir();
  server = await startServer(dataDir);
});
afterAll(async () => {
  await server?.close();
});

describe('txt2img', () => {
  it('answers images with infotext, parameters with A1111 defaults, info as a JSON string; ignores unknown fields', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: {
        prompt: 'a red cube',
        negative_prompt: 'blurry',
        seed: 1234,
        ...small,
        url: 'http://x',
        auth: 'y',
      },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-process-time')).toMatch(/^\d/);
    // Server-Timing: the job's wait and run (ms); together within the request's own time.
    const timing = /^queue;dur=(\d+), gen;dur=(\d+)$/.exec(r.headers.get('server-timing') ?? '');
    expect(timing, r.headers.get('server-timing') ?? 'no Server-Timing').not.toBeNull();
    const [queued, gen] = [Number(timing![1]), Number(timing![2])];
    expect(gen).toBeGreaterThan(0);
    expect(queued + gen).toBeLessThanOrEqual(Number(r.headers.get('x-process-time')) * 1000 + 1);
    expect(Object.keys(r.body).sort()).toEqual(['images', 'info', 'parameters']);
    expect(r.body.images).toHaveLength(1);
    const png = await pngInfo(r.body.images[0]);
    expect([png.width, png.height]).toEqual([64, 64]);
    expect(png.parameters).toMatch(
      /^a red cube\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, .*Seed: 1234, Size: 64x64/,
    );
    // parameters: the request echoed, every field with its default.
    expect(r.body.parameters).toMatchObject({
      prompt: 'a red cube',
      steps: 2,
      seed: 1234,
      sampler_index: 'Euler',
      sampler_name: null,
      batch_size: 1,
      n_iter: 1,
      enable_hr: false,
      hr_scale: 2,
      send_images: true,
      save_images: false,
      denoising_strength: null,
      override_settings_restore_afterwards: true,
    });
    expect(r.body.parameters.url).toBeUndefined();
    expect(typeof r.body.info).toBe('string');
    const info = JSON.parse(r.body.info);
    expect(info).toMatchObject({
      prompt: 'a red cube',
      negative_prompt: 'blurry',
      seed: 1234,
      all_seeds: [1234],
      width: 64,
      height: 64,
      steps: 2,
      sampler_name: 'Euler',
      sd_model_name: basename(tinyCheckpoint()).replace(/\.[^.]+$/, ''),
      index_of_first_image: 0,
      clip_skip: 1,
    });
    expect(info.sd_model_hash).toMatch(/^[0-9a-f]{10}$/);
    // Euler on the model's own schedule, no hires: A1111 keeps nothing extra.
    expect(info.extra_generation_params).toEqual({});
    expect(info.infotexts).toEqual([png.parameters]);
    expect(info.job_timestamp).toMatch(/^\d{14}$/);
    // save_images false: nothing in outputs/, and the job's files are gone once answered.
    expect(existsSync(join(dataDir, 'outputs'))).toBe(false);
    expect(readdirSync(join(dataDir, 'jobs')).length).toBe(0);
  });

  it('batch: seeds seed+i, grid first only with save_images, files saved in the A1111 layout', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: {
        prompt: 'x',
        seed: 10,
        batch_size: 2,
        n_iter: 1,
        save_images: true,
        sampler_name: 'Euler a',
        ...small,
      },
    });
    expect(r.status).toBe(200);
    const info = JSON.parse(r.body.info);
    expect(info.all_seeds).toEqual([10, 11]);
    expect(info.index_of_first_image).toBe(1);
    expect(r.body.images).toHaveLength(3);
    const grid = await pngInfo(r.body.images[0]);
    expect(grid.width).toBe(128);
    const day = readdirSync(join(dataDir, 'outputs', 'txt2img-images'))[0]!;
    const files = readdirSync(join(dataDir, 'outputs', 'txt2img-images', day)).sort();
    expect(files).toEqual(['00000-10.png', '00001-11.png']);
    expect(readdirSync(join(dataDir, 'outputs', 'txt2img-grids', day))).toHaveLength(1);
    // The images sent are the files saved.
    const saved = readFileSync(join(dataDir, 'outputs', 'txt2img-images', day, files[1]!)).toString('base64');
    expect(r.body.images[2]).toBe(saved);
  });

  it('info.extra_generation_params holds what A1111 keeps there (schedule, hires), each as in the infotext', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: {
        prompt: 'a (red:1.2) cube',
        seed: 5,
        ...small,
        sampler_name: 'DPM++ 2M',
        enable_hr: true,
        hr_scale: 2,
        hr_upscaler: 'Latent',
        hr_second_pass_steps: 1,
        denoising_strength: 0.6,
      },
    });
    expect(r.status).toBe(200);
    const info = JSON.parse(r.body.info);
    expect(info.extra_generation_params).toEqual({
      'Schedule type': 'Karras',
      'Denoising strength': 0.6,
      'Hires upscale': 2,
      'Hires steps': 1,
      'Hires upscaler': 'Latent',
      // A1111 holds these as functions (and a placeholder) that its JSON writes as null.
      'Hires prompt': null,
      'Hires negative prompt': null,
      'Hires schedule type': null,
    });
    // The same entries, with the same values, in the image's infotext; no grid for one image.
    for (const [k, v] of Object.entries(info.extra_generation_params))
      if (v === null) expect(info.infotexts[0]).not.toContain(`${k}:`);
      else expect(info.infotexts[0]).toContain(`${k}: ${v}`);
    expect(info.index_of_first_image).toBe(0);
  });

  it('send_images false answers no images; legacy sampler_index and "Sampler Scheduler" names work; sizes round down to 8', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: {
        prompt: 'x',
        seed: 3,
        send_images: false,
        sampler_index: 'DPM++ 2M Karras',
        ...small,
        width: 70,
      },
    });
    expect(r.status).toBe(200);
    expect(r.body.images).toEqual([]);
    const info = JSON.parse(r.body.info);
    expect(info.sampler_name).toBe('DPM++ 2M');
    expect(info.width).toBe(64);
    expect(info.infotexts[0]).toMatch(/Sampler: DPM\+\+ 2M, Schedule type: Karras/);
  });

  it('eight concurrent requests are answered each with its own seed, run one at a time in order', async () => {
    const seeds = [101, 102, 103, 104, 105, 106, 107, 108];
    const started: number[] = [];
    const results = await Promise.all(
      seeds.map(async (seed, i) => {
        await new Promise((r) => setTimeout(r, i * 30));
        started.push(seed);
        return call(server.url, '/sdapi/v1/txt2img', {
          body: { prompt: `p${seed}`, seed, ...small, save_images: true },
        });
      }),
    );
    for (let i = 0; i < seeds.length; i++) {
      expect(results[i]!.status).toBe(200);
      const info = JSON.parse(results[i]!.body.info);
      expect(info.seed).toBe(seeds[i]);
      expect(info.prompt).toBe(`p${seeds[i]}`);
    }
    // The store recorded them in submission order, none overlapping.
    const list = await call(server.url, `/api/v1/jobs?limit=8`);
    const jobs = [...list.body.jobs].reverse();
    expect(jobs.map((j: { params: { seed: number } }) => j.params.seed)).toEqual(started);
    for (let i = 1; i < jobs.length; i++) {
      expect(Date.parse(jobs[i].started_at)).toBeGreaterThanOrEqual(Date.parse(jobs[i - 1].finished_at));
    }
  });

  it('interrupt: the running txt2img returns 200 with what it finished; progress reports it meanwhile', async () => {
    await call(server.url, '/sdapi/v1/options', { body: { show_progress_every_n_steps: 1 } });
    const pending = call(server.url, '/sdapi/v1/txt2img', {
      body: { prompt: 'long', seed: 7, steps: 1000, width: 64, height: 64 },
    });
    let progress;
    for (let i = 0; i < 600; i++) {
      progress = await call(server.url, '/sdapi/v1/progress');
      if (progress.body.state.sampling_step >= 2 && progress.body.current_image) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(progress!.body.state.job_count).toBe(1);
    expect(progress!.body.state.sampling_steps).toBe(1000);
    expect(progress!.body.state.job_timestamp).toMatch(/^\d{14}$/);
    expect(progress!.body.progress).toBeGreaterThan(0);
    expect(progress!.body.eta_relative).toBeGreaterThan(0);
    expect(progress!.body.current_image).toMatch(/^iVBOR/);
    const skipped = await call(server.url, '/sdapi/v1/progress?skip_current_image=true');
    expect(skipped.body.current_image).toBeNull();
    const t0 = Date.now();
    expect((await call(server.url, '/sdapi/v1/interrupt', { method: 'POST' })).body).toEqual({});
    const r = await pending;
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.status).toBe(200);
    expect(r.body.images).toHaveLength(1);
    expect((await call(server.url, '/sdapi/v1/progress')).body).toMatchObject({
      progress: 0,
      current_image: null,
      state: { job_count: 0 },
    });
    await call(server.url, '/sdapi/v1/options', { body: { show_progress_every_n_steps: 10 } });
  });

  it('skip: the current image of a batch ends early, the batch continues', async () => {
    const pending = call(server.url, '/sdapi/v1/txt2img', {
      body: { prompt: 's', seed: 9, steps: 600, n_iter: 2, width: 64, height: 64 },
    });
    for (let i = 0; i < 600; i++) {
      const p = await call(server.url, '/sdapi/v1/progress');
      if (p.body.state.sampling_step >= 1 && p.body.state.job_no === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await call(server.url, '/sdapi/v1/skip', { method: 'POST' })).status).toBe(200);
    for (let i = 0; i < 600; i++) {
      const p = await call(server.url, '/sdapi/v1/progress');
      if (p.body.state.job_no === 1 && p.body.state.sampling_step >= 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await call(server.url, '/sdapi/v1/interrupt', { method: 'POST' });
    const r = await pending;
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.info).all_seeds).toEqual([9, 10]);
  });
});

describe('img2img', () => {
  it('inpaints with a mask sent as a data: URL; parameters drop the images unless include_init_images', async () => {
    const init = await pngBase64(64, 64);
    const mask = await pngBase64(64, 64, true);
    const r = await call(server.url, '/sdapi/v1/img2img', {
      body: {
        init_images: [`data:image/png;base64,${init}`],
        mask: `data:image/png;base64,${mask}`,
        mask_blur: 2,
        inpainting_fill: 1,
        inpaint_full_res: false,
        denoising_strength: 0.5,
        prompt: 'fill',
        seed: 42,
        ...small,
      },
    });
    expect(r.status).toBe(200);
    expect(r.body.images).toHaveLength(1);
    const png = await pngInfo(r.body.images[0]);
    expect([png.width, png.height]).toEqual([64, 64]);
    expect(png.parameters).toMatch(/Denoising strength: 0.5, .*Mask blur: 2/);
    expect(JSON.parse(r.body.info).extra_generation_params).toEqual({
      'Denoising strength': 0.5,
      'Mask blur': 2,
    });
    expect(r.body.parameters.init_images).toBeNull();
    expect(r.body.parameters.mask).toBeNull();
    expect(r.body.parameters.resize_mode).toBe(0);
    expect(r.body.parameters.inpaint_full_res).toBe(false);
    const kept = await call(server.url, '/sdapi/v1/img2img', {
      body: { init_images: [init], include_init_images: true, ...small, seed: 1 },
    });
    expect(kept.status).toBe(200);
    expect(kept.body.parameters.init_images).toEqual([init]);
    expect(JSON.parse(kept.body.info).denoising_strength).toBe(0.75);
    expect(JSON.parse(kept.body.info).extra_generation_params).toEqual({ 'Denoising strength': 0.75 });
  });

  it('answers 404 "Init image not found" without init_images, as A1111', async () => {
    const r = await call(server.url, '/sdapi/v1/img2img', { body: { prompt: 'x' } });
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: 'HTTPException', detail: 'Init image not found', body: '', errors: '' });
  });
});

describe("cases from A1111's own API tests (test/a1111-suite)", () => {
  it('hires fix with denoising_strength 0 answers 200: no second-pass step, the upscaled latent decoded', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: { ...small, steps: 3, seed: 7, enable_hr: true, denoising_strength: 0 },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const png = await pngInfo(r.body.images[0]);
    expect([png.width, png.height]).toEqual([128, 128]);
    expect(png.parameters).toMatch(/Denoising strength: 0, Hires upscale: 2, Hires upscaler: Latent/);
  });

  it('options has send_seed and send_size (default true), writable and read back (test_options_write)', async () => {
    const o = (await call(server.url, '/sdapi/v1/options')).body;
    expect([o.send_seed, o.send_size]).toEqual([true, true]);
    expect((await call(server.url, '/sdapi/v1/options', { body: { send_seed: false } })).status).toBe(200);
    expect((await call(server.url, '/sdapi/v1/options')).body.send_seed).toBe(false);
    await call(server.url, '/sdapi/v1/options', { body: { send_seed: true } });
    expect((await call(server.url, '/sdapi/v1/options')).body.send_seed).toBe(true);
  });
});

describe('options and models', () => {
  it('GET /options has A1111 keys; POST validates, persists config.json, and accepts the whole object back', async () => {
    const o = (await call(server.url, '/sdapi/v1/options')).body;
    const title = (await call(server.url, '/sdapi/v1/sd-models')).body[0].title;
    expect(o.sd_model_checkpoint).toBe(title);
    expect(o).toMatchObject({
      CLIP_stop_at_last_layers: 1,
      samples_format: 'png',
      sd_vae: 'Automatic',
      eta_noise_seed_delta: 0,
      randn_source: 'GPU',
    });
    expect(Object.keys(o).length).toBeGreaterThan(150);
    // Open WebUI posts everything back with one key changed.
    const r = await call(server.url, '/sdapi/v1/options', { body: { ...o, eta_noise_seed_delta: 31337 } });
    expect(r.status).toBe(200);
    expect(r.body).toBeNull();
    expect(JSON.parse(readFileSync(join(dataDir, 'config.json'), 'utf8')).eta_noise_seed_delta).toBe(31337);
    expect((await call(server.url, '/sdapi/v1/options')).body.eta_noise_seed_delta).toBe(31337);
    const bad = await call(server.url, '/sdapi/v1/options', { body: { CLIP_stop_at_last_layers: 'two' } });
    expect(bad.status).toBe(422);
    expect(bad.body.detail[0].loc).toEqual(['body', 'CLIP_stop_at_last_layers']);
    const unknown = await call(server.url, '/sdapi/v1/options', { body: { no_such_setting: 1 } });
    expect(unknown.status).toBe(422);
    expect(JSON.stringify(unknown.body)).toContain('no_such_setting');
    await call(server.url, '/sdapi/v1/options', { body: { eta_noise_seed_delta: 0 } });
  });

  it('switches the model by title, name or hash; a loaded model is not reloaded; unknown names are 422', async () => {
    const m = (await call(server.url, '/sdapi/v1/sd-models')).body[0];
    expect(m.model_name).toBe(basename(m.filename).replace(/\.[^.]+$/, ''));
    expect(m.title).toBe(`${basename(m.filename)} [${m.hash}]`);
    expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.sha256.slice(0, 10)).toBe(m.hash);
    const loaded = () => server.ctx.executor.withCurrent((model) => model);
    const before = await loaded();
    expect(before).not.toBeNull();
    for (const name of [m.title, m.model_name, m.hash, basename(m.filename)]) {
      expect(
        (await call(server.url, '/sdapi/v1/options', { body: { sd_model_checkpoint: name } })).status,
      ).toBe(200);
      expect(await loaded()).toBe(before);
    }
    for (const name of ['nope.safetensors', '../../etc/passwd', '/etc/passwd', tinyCheckpoint()]) {
      const r = await call(server.url, '/sdapi/v1/options', { body: { sd_model_checkpoint: name } });
      expect(r.status).toBe(422);
      expect(JSON.stringify(r.body)).toContain('sd_model_checkpoint');
    }
    const o = await call(server.url, '/sdapi/v1/txt2img', {
      body: { prompt: 'x', ...small, override_settings: { sd_model_checkpoint: 'missing-model' } },
    });
    expect(o.status).toBe(422);
    // unload then reload
    expect((await call(server.url, '/sdapi/v1/unload-checkpoint', { method: 'POST' })).body).toEqual({});
    expect(server.ctx.executor.currentSpec()).toBeNull();
    expect((await call(server.url, '/sdapi/v1/reload-checkpoint', { method: 'POST' })).body).toEqual({});
    expect(server.ctx.executor.currentSpec()?.checkpoint).toBe(realpathSync(m.filename));
  });

  it('override_settings applies to one job and is restored, unless override_settings_restore_afterwards is false', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: { prompt: 'x', seed: 5, ...small, override_settings: { CLIP_stop_at_last_layers: 2 } },
    });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.info).clip_skip).toBe(2);
    expect(JSON.parse(r.body.info).infotexts[0]).toContain('Clip skip: 2');
    expect((await call(server.url, '/sdapi/v1/options')).body.CLIP_stop_at_last_layers).toBe(1);
    const kept = await call(server.url, '/sdapi/v1/txt2img', {
      body: {
        prompt: 'x',
        seed: 5,
        ...small,
        override_settings: { CLIP_stop_at_last_layers: 2 },
        override_settings_restore_afterwards: false,
      },
    });
    expect(kept.status).toBe(200);
    expect((await call(server.url, '/sdapi/v1/options')).body.CLIP_stop_at_last_layers).toBe(2);
    await call(server.url, '/sdapi/v1/options', { body: { CLIP_stop_at_last_layers: 1 } });
  });

  it('script_name unknown → 422 as A1111; alwayson_scripts accepted', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: { prompt: 'x', ...small, script_name: 'ultimate sd upscale' },
    });
    expect(r.status).toBe(422);
    expect(r.body).toEqual({
      error: 'HTTPException',
      detail: "Script 'ultimate sd upscale' not found",
      body: '',
      errors: '',
    });
    const a = await call(server.url, '/sdapi/v1/txt2img', {
      body: {
        prompt: 'x',
        ...small,
        seed: 2,
        alwayson_scripts: { controlnet: { args: [] } },
        script_args: [],
      },
    });
    expect(a.status).toBe(200);
  });

  it('infotext fills the fields the request leaves out', async () => {
    const r = await call(server.url, '/sdapi/v1/txt2img', {
      body: {
        infotext: 'from infotext\nSteps: 2, Sampler: Euler a, CFG scale: 4, Seed: 77, Size: 64x64',
        seed: 78,
      },
    });
    expect(r.status).toBe(200);
    const info = JSON.parse(r.body.info);
    expect(info).toMatchObject({
      prompt: 'from infotext',
      steps: 2,
      sampler_name: 'Euler a',
      cfg_scale: 4,
      seed: 78,
      width: 64,
    });
  });
});

describe('list routes', () => {
  it('answer the shapes A1111 clients read', async () => {
    const samplers = (await call(server.url, '/sdapi/v1/samplers')).body;
    expect(samplers[0]).toEqual({
      name: 'DPM++ 2M',
      aliases: ['k_dpmpp_2m'],
      options: { scheduler: 'karras' },
    });
    expect(samplers.find((s: { name: string }) => s.name === 'DPM++ SDE').options).toMatchObject({
      second_order: 'True',
      brownian_noise: 'True',
    });
    const schedulers = (await call(server.url, '/sdapi/v1/schedulers')).body;
    expect(schedulers.find((s: { name: string }) => s.name === 'karras')).toEqual({
      name: 'karras',
      label: 'Karras',
      aliases: null,
      default_rho: 7,
      need_inner_model: false,
    });
    const up = (await call(server.url, '/sdapi/v1/upscalers')).body;
    expect(up.map((u: { name: string }) => u.name)).toEqual(['None', 'Lanczos', 'Nearest']);
    expect(Object.keys(up[0]).sort()).toEqual(['model_name', 'model_path', 'model_url', 'name', 'scale']);
    expect((await call(server.url, '/sdapi/v1/latent-upscale-modes')).body[0]).toEqual({ name: 'Latent' });
    for (const path of [
      'sd-vae',
      'hypernetworks',
      'loras',
      'face-restorers',
      'realesrgan-models',
      'prompt-styles',
      'script-info',
      'extensions',
    ]) {
      const r = await call(server.url, `/sdapi/v1/${path}`);
      expect(r.status, path).toBe(200);
      expect(r.body, path).toEqual([]);
    }
    expect((await call(server.url, '/sdapi/v1/scripts')).body).toEqual({ txt2img: [], img2img: [] });
    expect((await call(server.url, '/sdapi/v1/embeddings')).body).toEqual({ loaded: {}, skipped: {} });
    const mem = (await call(server.url, '/sdapi/v1/memory')).body;
    expect(mem.ram.total).toBeGreaterThan(0);
    expect(Object.keys(mem.ram).sort()).toEqual(['free', 'total', 'used']);
    expect((await call(server.url, '/sdapi/v1/cmd-flags')).body).toMatchObject({ listen: false });
    for (const path of ['refresh-checkpoints', 'refresh-vae', 'refresh-loras', 'refresh-embeddings']) {
      const r = await call(server.url, `/sdapi/v1/${path}`, { method: 'POST' });
      expect(r.status, path).toBe(200);
      expect(r.body, path).toBeNull();
    }
  });

  it('refresh-checkpoints and refresh-vae pick up new files', async () => {
    const { mkdirSync, symlinkSync } = await import('node:fs');
    symlinkSync(tinyCheckpoint(), join(dataDir, 'models', 'Stable-diffusion', 'second.safetensors'));
    mkdirSync(join(dataDir, 'models', 'VAE'), { recursive: true });
    symlinkSync(tinyCheckpoint(), join(dataDir, 'models', 'VAE', 'my.vae.safetensors'));
    await call(server.url, '/sdapi/v1/refresh-checkpoints', { method: 'POST' });
    await call(server.url, '/sdapi/v1/refresh-vae', { method: 'POST' });
    const models = (await call(server.url, '/sdapi/v1/sd-models')).body;
    expect(models.map((m: { model_name: string }) => m.model_name)).toContain('second');
    expect((await call(server.url, '/sdapi/v1/sd-vae')).body).toEqual([
      { model_name: 'my.vae.safetensors', filename: join(dataDir, 'models', 'VAE', 'my.vae.safetensors') },
    ]);
  });
});

describe('images', () => {
  it('png-info reads back the infotext of a generated image', async () => {
    const g = await call(server.url, '/sdapi/v1/txt2img', {
      body: { prompt: 'info me', seed: 11, ...small },
    });
    const r = await call(server.url, '/sdapi/v1/png-info', { body: { image: g.body.images[0] } });
    expect(r.status).toBe(200);
    expect(r.body.info).toBe(JSON.parse(g.body.info).infotexts[0]);
    expect(r.body.parameters).toMatchObject({
      Prompt: 'info me',
      Steps: '2',
      Seed: '11',
      'Size-1': '64',
      'Size-2': '64',
    });
    expect(r.body.items).toEqual({});
  });

  it('extra-single-image: Lanczos by 2 keeps the parameters chunk and adds postprocessing; None leaves the image', async () => {
    const g = await call(server.url, '/sdapi/v1/txt2img', { body: { prompt: 'up', seed: 12, ...small } });
    const r = await call(server.url, '/sdapi/v1/extra-single-image', {
      body: { image: g.body.images[0], upscaler_1: 'Lanczos', upscaling_resize: 2 },
    });
    expect(r.status).toBe(200);
    expect(r.body.html_info).toBe('<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>');
    const png = await pngInfo(r.body.image);
    expect([png.width, png.height]).toEqual([128, 128]);
    expect(png.parameters).toBe(JSON.parse(g.body.info).infotexts[0]);
    const to = await call(server.url, '/sdapi/v1/extra-single-image', {
      body: {
        image: g.body.images[0],
        upscaler_1: 'Nearest',
        resize_mode: 1,
        upscaling_resize_w: 96,
        upscaling_resize_h: 80,
      },
    });
    expect(to.status).toBe(200);
    expect((await pngInfo(to.body.image)).width).toBe(96);
    expect((await pngInfo(to.body.image)).height).toBe(80);
    const none = await call(server.url, '/sdapi/v1/extra-single-image', {
      body: { image: g.body.images[0] },
    });
    expect(none.status).toBe(200);
    expect((await pngInfo(none.body.image)).width).toBe(64);
    const batch = await call(server.url, '/sdapi/v1/extra-batch-images', {
      body: {
        imageList: [
          { data: g.body.images[0], name: 'a.png' },
          { data: await pngBase64(16, 8), name: 'b.png' },
        ],
        upscaler_1: 'Nearest',
        upscaling_resize: 3,
      },
    });
    expect(batch.status).toBe(200);
    expect(batch.body.images).toHaveLength(2);
    expect((await pngInfo(batch.body.images[1])).width).toBe(48);
    const esrgan = await call(server.url, '/sdapi/v1/extra-single-image', {
      body: { image: g.body.images[0], upscaler_1: 'R-ESRGAN 4x+' },
    });
    expect(esrgan.status).toBe(422);
    expect(JSON.stringify(esrgan.body)).toContain('upscaler_1');
  });

  it('interrogate answers 404 as A1111 does for a missing model or image', async () => {
    expect((await call(server.url, '/sdapi/v1/interrogate', { body: {} })).status).toBe(404);
    const r = await call(server.url, '/sdapi/v1/interrogate', {
      body: { image: await pngBase64(8, 8), model: 'clip' },
    });
    expect(r.status).toBe(404);
    expect(r.body.detail).toMatch(/^Model not found/);
  });
});

describe('docs', () => {
  it('serves /openapi.json from the route schemas and /docs', async () => {
    const spec = (await call(server.url, '/openapi.json')).body;
    expect(spec.openapi).toMatch(/^3\./);
    const t2i = spec.paths['/sdapi/v1/txt2img'].post;
    const schema = t2i.requestBody.content['application/json'].schema;
    expect(schema.properties.steps).toMatchObject({ default: 50 });
    expect(schema.properties.sampler_index).toMatchObject({ default: 'Euler' });
    expect(spec.paths['/api/v1/jobs']).toBeDefined();
    const docs = await fetch(server.url + '/docs/');
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain('<html');
  });

  it('wrong path and method answer like FastAPI', async () => {
    const r = await call(server.url, '/sdapi/v1/nope');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ detail: 'Not Found' });
  });
});

/** Reads Server-Sent Events until the stream ends. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function readEvents(url: string): Promise<{ event: string; data: any }[]> {
  const res = await fetch(url);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('event: '))
    .map((b) => {
      const [e, d] = b.split('\n');
      return { event: e!.slice(7), data: JSON.parse(d!.slice(6)) };
    });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type SseEvent = { event: string; data: any };

/**
 * Reads Server-Sent Events as they arrive: `until` resolves with the first event that matches, and
 * fails (listing what came) when the stream ends first.
 */
async function openEvents(url: string) {
  const res = await fetch(url);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  const seen: string[] = [];
  const next = async (): Promise<SseEvent | null> => {
    for (;;) {
      const cut = buffer.indexOf('\n\n');
      if (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!block.startsWith('event: ')) continue; // keep-alive comments
        const [e, d] = block.split('\n');
        return { event: e!.slice(7), data: JSON.parse(d!.slice(6)) };
      }
      const { value, done } = await reader.read();
      if (done) return null;
      buffer += value;
    }
  };
  return {
    async until(match: (e: SseEvent) => boolean): Promise<SseEvent> {
      for (let e = await next(); e; e = await next()) {
        seen.push(`${e.event} ${e.data.state ?? ''}${e.data.phase ?? ''} ${e.data.step ?? ''}`.trim());
        if (match(e)) return e;
      }
      throw new Error(
        `the event stream ended without the awaited event; it sent: ${seen.slice(-20).join('; ')}`,
      );
    },
    close: () => reader.cancel().catch(() => undefined),
  };
}

describe('job API', () => {
  it('submit answers at once; the event stream reports progress, ETA and previews; results come from the store', async () => {
    const r = await call(server.url, '/api/v1/jobs', {
      body: {
        mode: 'txt2img',
        params: { prompt: 'job', seed: 21, steps: 4, width: 64, height: 64 },
        preview_every: 2,
      },
    });
    expect(r.status).toBe(202);
    expect(r.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(['queued', 'running']).toContain(r.body.state);
    const events = await readEvents(`${server.url}/api/v1/jobs/${r.body.id}/events`);
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.filter((p) => p.phase === 'txt2img').at(-1)).toMatchObject({
      step: 4,
      steps: 4,
      job_count: 1,
    });
    expect(progress.every((p) => p.eta_seconds >= 0 && p.fraction <= 1)).toBe(true);
    const previews = events.filter((e) => e.event === 'preview');
    expect(previews.length).toBeGreaterThan(0);
    expect(previews[0]!.data.image).toMatch(/^iVBOR/);
    const last = events.at(-1)!;
    expect(last.event).toBe('state');
    expect(last.data.state).toBe('succeeded');
    const job = (await call(server.url, `/api/v1/jobs/${r.body.id}`)).body;
    expect(job).toMatchObject({ state: 'succeeded', mode: 'txt2img', error: null });
    expect(job.result.images).toHaveLength(1);
    expect(job.result.images[0].seed).toBe(21);
    const img = await fetch(server.url + job.result.images[0].url);
    expect(img.headers.get('content-type')).toBe('image/png');
    const png = await pngInfo(Buffer.from(await img.arrayBuffer()).toString('base64'));
    expect(png.parameters).toBe(job.result.images[0].infotext);
    // Saved in outputs/ (our API keeps its results by default).
    const day = readdirSync(join(dataDir, 'outputs', 'txt2img-images'))[0]!;
    expect(
      readdirSync(join(dataDir, 'outputs', 'txt2img-images', day)).some((f) => f.endsWith('-21.png')),
    ).toBe(true);
    const list = await call(server.url, '/api/v1/jobs?state=succeeded&limit=1&offset=0');
    expect(list.body.jobs).toHaveLength(1);
    expect(list.body.total).toBeGreaterThanOrEqual(1);
    expect(list.body.jobs[0].id).toBe(r.body.id);
  });

  it('cancel: a queued job at once, a running one after its step; delete removes it; a running job cannot be deleted', async () => {
    const a = (
      await call(server.url, '/api/v1/jobs', {
        body: { mode: 'txt2img', params: { prompt: 'a', seed: 1, steps: 1000, width: 64, height: 64 } },
      })
    ).body;
    // a's events from now on: its first finished sampling step is awaited, not polled for a while.
    const events = await openEvents(`${server.url}/api/v1/jobs/${a.id}/events`);
    try {
      const b = (
        await call(server.url, '/api/v1/jobs', {
          body: { mode: 'txt2img', params: { prompt: 'b', seed: 2, steps: 3, width: 64, height: 64 } },
        })
      ).body;
      // Cancel only once it is sampling (interrupted before its first step, it has no image, as A1111).
      const sampling = await events.until(
        (e) => e.event === 'progress' && e.data.phase === 'txt2img' && e.data.step >= 1,
      );
      expect(sampling.data.steps).toBe(1000);
      expect(
        (await call(server.url, `/api/v1/jobs?state=queued`)).body.jobs.map((j: { id: string }) => j.id),
      ).toEqual([b.id]);
      const cb = await call(server.url, `/api/v1/jobs/${b.id}/cancel`, { method: 'POST' });
      expect(cb.body.state).toBe('cancelled');
      expect((await call(server.url, `/api/v1/jobs/${a.id}`, { method: 'DELETE' })).status).toBe(409);
      const ca = await call(server.url, `/api/v1/jobs/${a.id}/cancel`, { method: 'POST' });
      expect(ca.status).toBe(200);
      let lastStep = sampling.data.step as number;
      const end = await events.until((e) => {
        if (e.event === 'progress' && e.data.phase === 'txt2img') lastStep = e.data.step;
        return e.event === 'state' && e.data.state !== 'running';
      });
      const ja = (await call(server.url, `/api/v1/jobs/${a.id}`)).body;
      const shown = JSON.stringify({ ...ja, params: undefined });
      expect(end.data.state, shown).toBe('cancelled');
      expect(ja.state, shown).toBe('cancelled');
      expect(ja.result.interrupted).toBe(true);
      expect(ja.result.images, shown).toHaveLength(1);
      // Stopped after the step that was running, long before its 1000 steps.
      expect(lastStep).toBeLessThan(1000);
      expect((await call(server.url, `/api/v1/jobs/${b.id}`, { method: 'DELETE' })).status).toBe(204);
      expect((await call(server.url, `/api/v1/jobs/${b.id}`)).status).toBe(404);
    } finally {
      await events.close();
    }
  });
});
