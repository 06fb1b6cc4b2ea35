/**
 * The SDXL refiner in img2img and in the hires fix through `sdstudio` (the tiny-sdxl base and the
 * refiner of its `refiner_*` cases, in A1111's folder layout): the refiner changes the image, the
 * infotext carries `Refiner` / `Refiner switch at` only when the switch happened (A1111 writes them
 * in apply_refiner), `--hires-refiner-pass` (A1111 hires_fix_refiner_pass) adds `Hires refiner`,
 * and `--params` re-runs each to the same bytes.
 */
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GoldenSet } from '../engine/family-goldens.js';
import { goldenPath } from '../helpers/golden.js';
import { infotextOf, runCli } from './cli-helpers.js';

const gs = new GoldenSet('tiny-sdxl');
const base = gs.cases.find((c) => c.kind === 'txt2img')!;
const ref = gs.cases.find((c) => c.kind.startsWith('refiner_') && !c.checkpoint.includes('fp16'))!;
const stem = (f: string) => f.replace(/\.safetensors$/, '');

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sd-refiner-passes-'));
  const models = join(dir, 'models', 'Stable-diffusion');
  await mkdir(models, { recursive: true });
  for (const c of [base, ref]) {
    await symlink(goldenPath(gs.set, c.checkpoint), join(models, c.checkpoint));
    await symlink(goldenPath(gs.set, c.config), join(models, c.config));
  }
  const S = 64;
  const init = Buffer.alloc(S * S * 3);
  for (let i = 0; i < S * S; i++) init.set([(i % S) * 4, Math.floor(i / S) * 4, 90], i * 3);
  await sharp(init, { raw: { width: S, height: S, channels: 3 } })
    .png()
    .toFile(join(dir, 'init.png'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs sdstudio in the data dir; returns the image path. */
async function one(args: string[]): Promise<string> {
  const r = await runCli([...args, '--no-grid'], dir);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.trim().split('\n')[0]!;
}

const pixels = async (path: string) => (await sharp(path).raw().toBuffer()).toString('base64');

/** `--params` of `path` (plus `extra`) gives the same file bytes. */
async function roundTrip(mode: string, path: string, extra: string[] = []): Promise<void> {
  const copy = await one([mode, ...extra, '--params', path]);
  expect((await readFile(copy)).equals(await readFile(path))).toBe(true);
}

const refiner = ['--model', stem(base.checkpoint), '--refiner', stem(ref.checkpoint)];
const common = ['--steps', '3', '--seed', '9'];

describe('the SDXL refiner in img2img and the hires fix', () => {
  it('has a base and a refiner case', () => {
    expect(base).toBeDefined();
    expect(ref).toBeDefined();
  });

  it('img2img: the refiner takes over at the switch; never switching writes no Refiner keys', async () => {
    const img2img = ['img2img', join(dir, 'init.png'), '--prompt', 'a red cube', ...common];
    const plain = await one([...img2img, '--model', stem(base.checkpoint)]);
    const path = await one([...img2img, ...refiner, '--refiner-switch-at', '0.5']);
    const info = await infotextOf(path);
    expect(info.Refiner).toMatch(new RegExp(`^${stem(ref.checkpoint)} \\[[0-9a-f]{10}\\]$`));
    expect(info['Refiner switch at']).toBe('0.5');
    expect(await pixels(path)).not.toBe(await pixels(plain));
    await roundTrip('img2img', path, [join(dir, 'init.png')]);
    // (999 − t) / 1000 < 1 for every timestep: switch at 1 never hands over (A1111 alike).
    const never = await one([...img2img, ...refiner, '--refiner-switch-at', '1']);
    expect((await infotextOf(never)).Refiner).toBeUndefined();
    expect(await pixels(never)).toBe(await pixels(plain));
  }, 400_000);

  const txt2img = ['txt2img', 'a red cube', ...common, '--width', '64', '--height', '64'];
  const hires = [...txt2img, '--hires', '--hires-scale', '1.5', '--refiner-switch-at', '0.5'];
  let second = '';

  it('hires fix: the refiner takes the second pass by default; --params keeps it', async () => {
    second = await one([...hires, ...refiner]);
    const info = await infotextOf(second);
    expect(info['Refiner switch at']).toBe('0.5');
    expect(info['Hires refiner']).toBeUndefined();
    await roundTrip('txt2img', second);
    const plain = await one([...hires, '--model', stem(base.checkpoint)]);
    expect(await pixels(second)).not.toBe(await pixels(plain));
  }, 400_000);

  it('hires fix: --hires-refiner-pass first / both as A1111 (Hires refiner key; --params keeps it)', async () => {
    const first = await one([...hires, ...refiner, '--hires-refiner-pass', 'first']);
    expect(await infotextOf(first)).toMatchObject({
      'Hires refiner': 'first pass',
      'Refiner switch at': '0.5',
    });
    if (second) expect(await pixels(first)).not.toBe(await pixels(second));
    await roundTrip('txt2img', first);
    // Switched in the first pass, the refiner keeps the second: "both passes" is the same image.
    const both = await one([...hires, ...refiner, '--hires-refiner-pass', 'both']);
    expect((await infotextOf(both))['Hires refiner']).toBe('both passes');
    expect(await pixels(both)).toBe(await pixels(first));
  }, 400_000);

  it('--refiner-switch-by-steps: progress by steps, recorded as A1111 does, kept by --params', async () => {
    // Steps 8 at denoising 0.5: A1111 runs t_enc + 1 = 5 model calls.
    const img2img = ['img2img', join(dir, 'init.png'), '--prompt', 'a red cube', '--seed', '9'];
    const args = [...img2img, '--steps', '8', '--denoise', '0.5', ...refiner, '--refiner-switch-at', '0.3'];
    const bySigma = await one(args);
    const bySteps = await one([...args, '--refiner-switch-by-steps']);
    const info = await infotextOf(bySteps);
    expect(info).toMatchObject({ 'Refiner switch by sampling steps': 'True', 'Refiner switch at': '0.3' });
    expect((await infotextOf(bySigma))['Refiner switch by sampling steps']).not.toBe('True');
    // Half-way down the noise schedule the sigma rule switches at the first call; by steps at the third.
    expect(await pixels(bySteps)).not.toBe(await pixels(bySigma));
    await roundTrip('img2img', bySteps, [join(dir, 'init.png')]);
  }, 400_000);
});
