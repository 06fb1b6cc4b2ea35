/**
 * The job runner on the tiny checkpoint, in process as the server will call it: each image saved
 * (with its infotext) before the next batch starts, A1111's info fields, saving off, a rescue folder
 * when the output folder fails mid-job, the output folder checked before anything loads, interrupt,
 * and one model library shared by jobs.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGenerationInfo } from '../../src/infotext/image-metadata.js';
import { runJob, type JobProgress } from '../../src/pipeline/job.js';
import { loadModel, type LoadModelOptions } from '../../src/pipeline/model.js';
import { ModelLibrary } from '../../src/pipeline/model-library.js';
import { withDefaults } from '../../src/params/generation.js';
import { UserError } from '../../src/util/errors.js';
import { clipVocabPath } from '../helpers/golden.js';
import { tiny } from './cli-helpers.js';

const loads: LoadModelOptions[] = [];
const library = new ModelLibrary({
  dataDir: tmpdir(),
  clipVocab: clipVocabPath(),
  loader: (o) => {
    loads.push(o);
    return loadModel(o);
  },
});
afterAll(() => library.release());

const params = (extra: Record<string, unknown> = {}) =>
  withDefaults({ prompt: 'a cube', width: 64, height: 64, steps: 2, seed: 7, ...extra });

describe('runJob', () => {
  it('saves each image with its infotext before the next batch samples; grid at the end; A1111 info', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sdjob-'));
    const events: string[] = [];
    const r = await runJob(
      { mode: 'txt2img', params: params({ n_iter: 3 }), model: tiny, output: { root } },
      library,
      {
        onProgress: (p: JobProgress) => {
          if (p.step === 0) events.push(`${p.phase} ${p.job}`);
        },
        onImageSaved: (s) => {
          // Written (and complete) when announced.
          expect(s.path && statSync(s.path).size).toBeGreaterThan(0);
          events.push(`saved ${s.index}`);
        },
      },
    );
    expect(events).toEqual([
      'txt2img 0',
      'vae decode 0',
      'saved 0',
      'txt2img 1',
      'vae decode 1',
      'saved 1',
      'txt2img 2',
      'vae decode 2',
      'saved 2',
    ]);
    expect(r.images.map((i) => i.path)).toEqual([
      expect.stringMatching(/txt2img-images\/\d{4}-\d\d-\d\d\/00000-7\.png$/),
      expect.stringMatching(/00001-8\.png$/),
      expect.stringMatching(/00002-9\.png$/),
    ]);
    expect(r.grid?.path).toMatch(/txt2img-grids\/\d{4}-\d\d-\d\d\/grid-0000\.png$/);
    const { geninfo } = await readGenerationInfo(r.images[1]!.path!);
    expect(geninfo).toBe(r.images[1]!.infotext);
    expect(r.info).toMatchObject({
      seed: 7,
      all_seeds: [7, 8, 9],
      all_prompts: ['a cube', 'a cube', 'a cube'],
      infotexts: r.images.map((i) => i.infotext),
      width: 64,
      steps: 2,
      sd_model_name: 'tiny-sd',
    });
    expect(r.info.job_timestamp).toMatch(/^\d{14}$/);
    expect(r.images[0]!.png).toBeNull();
    expect(r.rescueDir).toBeNull();
    expect(r.interrupted).toBe(false);
  });

  it('save off (A1111 save_images: false): nothing written, PNG bytes with their infotext returned', async () => {
    const root = join(await mkdtemp(join(tmpdir(), 'sdjob-')), 'outputs');
    const r = await runJob(
      { mode: 'txt2img', params: params({ batch_size: 2 }), model: tiny, output: { root, save: false } },
      library,
    );
    expect(existsSync(root)).toBe(false);
    expect(r.images).toHaveLength(2);
    for (const img of r.images) {
      expect(img.path).toBeNull();
      expect(img.png!.subarray(1, 4).toString()).toBe('PNG');
      expect(img.png!.includes(Buffer.from(img.infotext.split('\n')[0]!))).toBe(true);
    }
    expect(r.grid?.png).toBeTruthy();
  });

  it('when the output folder fails mid-job the images go to a rescue folder and it says where', async () => {
    const base = await mkdtemp(join(tmpdir(), 'sdjob-'));
    const root = join(base, 'outputs');
    const warnings: string[] = [];
    const r = await runJob(
      { mode: 'txt2img', params: params({ n_iter: 2 }), model: tiny, output: { root, grid: false } },
      library,
      {
        warn: (m) => warnings.push(m),
        onImageSaved: (s) => {
          if (s.index !== 0) return;
          // Passes the check before the job; from now on `outputs` is a file, so saving fails.
          rmSync(root, { recursive: true, force: true });
          writeFileSync(root, 'not a folder');
        },
      },
    );
    expect(r.images[0]!.rescued).toBe(false);
    expect(r.images[1]!.rescued).toBe(true);
    expect(r.rescueDir).toMatch(/sdstudio-rescued-/);
    expect(existsSync(r.images[1]!.path!)).toBe(true);
    const { geninfo } = await readGenerationInfo(r.images[1]!.path!);
    expect(geninfo).toBe(r.images[1]!.infotext);
    expect(warnings.some((w) => w.includes(root) && w.includes(r.images[1]!.path!))).toBe(true);
    await rm(r.rescueDir!, { recursive: true, force: true });
  });

  it('an output folder that cannot be written is a UserError naming it, before any model is looked up', async () => {
    const base = await mkdtemp(join(tmpdir(), 'sdjob-'));
    await writeFile(join(base, 'a-file'), 'x');
    const root = join(base, 'a-file', 'outputs');
    const before = loads.length;
    const err = await runJob(
      { mode: 'txt2img', params: params(), model: join(base, 'no-such-model.safetensors'), output: { root } },
      library,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toContain(join(base, 'a-file', 'outputs'));
    expect((err as UserError).exitCode).toBe(73);
    expect(loads.length).toBe(before);
  });

  it('stop.interrupted after the first image: the job ends with what was finished', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sdjob-'));
    const stop = { interrupted: false, skipped: false };
    const r = await runJob(
      { mode: 'txt2img', params: params({ n_iter: 4 }), model: tiny, output: { root } },
      library,
      {
        stop,
        onImageSaved: () => {
          stop.interrupted = true;
        },
      },
    );
    expect(r.interrupted).toBe(true);
    expect(r.images).toHaveLength(1);
    const files = await readdir(join(root, 'txt2img-images'), { recursive: true });
    expect(files.filter((f) => f.endsWith('.png'))).toHaveLength(1);
  });

  it('jobs share the loaded model: one load for the same checkpoint, VAE, precision and provider', () => {
    const forTiny = loads.filter((o) => o.checkpoint.endsWith('tiny-sd.safetensors'));
    expect(forTiny).toHaveLength(1);
    expect(library.loaded()).toHaveLength(1);
  });
});
