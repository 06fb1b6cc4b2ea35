/**
 * `sdstudio txt2img` / `sdstudio img2img` as a user runs them: a subprocess on the tiny checkpoint,
 * files in A1111's layout with their parameters inside.
 */
import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { imageSize as size, infotextOf, runCli as run, tiny } from './cli-helpers.js';

const small = ['--steps', '2', '--width', '64', '--height', '64', '--model', tiny];

describe('sdstudio txt2img / img2img', () => {
  it('txt2img writes each image and a grid in the A1111 layout; --params re-runs to the same bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdcli-'));
    const r = await run(
      ['txt2img', 'a red cube', ...small, '--batch-size', '2', '--seed', '40', '--negative', 'blurry'],
      dir,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const paths = r.stdout.trim().split('\n');
    expect(paths).toHaveLength(3);
    expect(paths[0]).toMatch(/outputs\/txt2img-images\/\d{4}-\d{2}-\d{2}\/00000-40\.png$/);
    expect(paths[1]).toMatch(/outputs\/txt2img-images\/\d{4}-\d{2}-\d{2}\/00001-41\.png$/);
    expect(paths[2]).toMatch(/outputs\/txt2img-grids\/\d{4}-\d{2}-\d{2}\/grid-0000\.png$/);
    expect(paths[0]!.startsWith(dir)).toBe(true);
    expect(await size(paths[0]!)).toEqual([64, 64]);
    const info = await infotextOf(paths[1]!);
    expect(info).toMatchObject({
      Prompt: 'a red cube',
      'Negative prompt': 'blurry',
      Seed: '41',
      Steps: '2',
      'Size-1': '64',
    });

    const again = await run(['txt2img', '--params', paths[0]!, '--model', tiny, '--no-grid'], dir);
    expect(again.code).toBe(0);
    const [copy] = again.stdout.trim().split('\n');
    expect(copy).toMatch(/00002-40\.png$/);
    expect((await readFile(copy!)).equals(await readFile(paths[0]!))).toBe(true);
  });

  it('hires fix and inpainting runs (concurrently): upscaled size; only the masked part redrawn', async () => {
    await Promise.all([hiresRun(), inpaintRun()]);
  });

  it('a missing model and bad arguments: one line each, with their exit codes', async () => {
    await Promise.all([missingModel(), badArguments()]);
  });
});

async function hiresRun(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sdcli-'));
  const r = await run(
    ['txt2img', 'x', ...small, '--seed', '1', '--hires', '--hires-scale', '2', '--hires-steps', '1'],
    dir,
  );
  expect(r.code, r.stderr).toBe(0);
  const [p] = r.stdout.trim().split('\n');
  expect(await size(p!)).toEqual([128, 128]);
  expect(await infotextOf(p!)).toMatchObject({ 'Hires upscale': '2', 'Denoising strength': '0.7' });
}

async function inpaintRun(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sdcli-'));
  const initPath = join(dir, 'init.png');
  const maskPath = join(dir, 'mask.png');
  const px = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < 64 * 64; i++) px.set([(i % 64) * 4, Math.floor(i / 64) * 4, 90], i * 3);
  await sharp(px, { raw: { width: 64, height: 64, channels: 3 } })
    .png()
    .toFile(initPath);
  const m = Buffer.alloc(64 * 64);
  for (let y = 20; y < 40; y++) for (let x = 20; x < 40; x++) m[y * 64 + x] = 255;
  await sharp(m, { raw: { width: 64, height: 64, channels: 1 } })
    .png()
    .toFile(maskPath);
  const r = await run(
    [
      'img2img',
      initPath,
      '--prompt',
      'x',
      ...small,
      '--seed',
      '3',
      '--mask',
      maskPath,
      '--mask-blur',
      '0',
      '--only-masked',
      '--padding',
      '8',
      '--masked-content',
      'latent-noise',
      '--denoise',
      '0.8',
    ],
    dir,
  );
  expect(r.code, r.stderr).toBe(0);
  const [p] = r.stdout.trim().split('\n');
  expect(p).toMatch(/outputs\/img2img-images\/.*\/00000-3\.png$/);
  const out = await sharp(p!).raw().toBuffer();
  for (let y = 0; y < 64; y++)
    for (let x = 0; x < 64; x++) {
      if (x >= 20 && x < 40 && y >= 20 && y < 40) continue;
      expect(out[(y * 64 + x) * 3]).toBe(px[(y * 64 + x) * 3]);
    }
  expect(await infotextOf(p!)).toMatchObject({
    'Inpaint area': 'Only masked',
    'Masked area padding': '8',
    'Masked content': 'latent noise',
    'Denoising strength': '0.8',
  });
}

async function missingModel(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sdcli-'));
  const r = await run(['txt2img', 'x'], dir);
  expect(r.code).toBe(4);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toContain(join('models', 'Stable-diffusion'));
}

async function badArguments(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sdcli-'));
  const cases = [
    ['txt2img', 'x', '--steps', 'abc'],
    ['txt2img', 'x', '--width', '65', '--model', tiny],
    ['txt2img', 'x', '--sampler', 'Eulerr', '--model', tiny],
    ['txt2img', 'x', '--mask', 'm.png'],
    ['img2img', '--prompt', 'x'],
    ['txt2img', 'x', '--bogus'],
  ];
  const results = await Promise.all(cases.map((args) => run(args, dir)));
  results.forEach((r, i) => {
    const what = cases[i]!.join(' ');
    expect(r.code, what).toBe(2);
    expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
  });
}
