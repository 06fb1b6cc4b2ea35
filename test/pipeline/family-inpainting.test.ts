/**
 * SD 2.x and SDXL inpainting checkpoints (9-channel UNet), built from each set's txt2img checkpoint
 * by widening its first convolution, through `sdstudio img2img --mask` as a user runs them: inspect
 * and the loader agree it is an inpainting model, the unmasked area outside the mask blur's reach
 * keeps the init image's pixels, the infotext records A1111's "Conditional mask weight" (the
 * `inpainting_mask_weight` setting, which changes the image), and `--params` re-runs to the same
 * bytes. SD 2.0 depth (5 channels) and unCLIP files are refused with one line.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GoldenSet } from '../engine/family-goldens.js';
import { infotextOf, runCli } from './cli-helpers.js';
import { writeVariant } from './family-variants.js';

const SETS = ['tiny-sd2', 'tiny-sdxl'];
const S = 64;
// The mask square and how far A1111's mask blur 4 reaches (its Gaussian kernel is 21 wide).
const [M0, M1] = [24, 40];
const REACH = 11;

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sd-family-inpaint-'));
  const init = Buffer.alloc(S * S * 3);
  const mask = Buffer.alloc(S * S * 3);
  for (let i = 0; i < S * S; i++) {
    const x = i % S;
    const y = Math.floor(i / S);
    init.set([x * 4, y * 4, 60 + ((x * y) % 97)], i * 3);
    const v = x >= M0 && x < M1 && y >= M0 && y < M1 ? 255 : 0;
    mask.set([v, v, v], i * 3);
  }
  const raw = { raw: { width: S, height: S, channels: 3 as const } };
  await sharp(init, raw).png().toFile(join(dir, 'init.png'));
  await sharp(mask, raw).png().toFile(join(dir, 'mask.png'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function rgb(path: string): Promise<Buffer> {
  return (await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;
}

for (const set of SETS) {
  const gs = new GoldenSet(set);
  const base = gs.cases.find((c) => c.kind === 'txt2img')!;

  describe(`${set}: inpainting, depth and unCLIP checkpoints`, () => {
    it('has a txt2img case to build them from', () => expect(base).toBeDefined());

    it('a 9-channel checkpoint inpaints through the CLI: inspect agrees, unmasked pixels kept, infotext, --params', async () => {
      const ckpt = await writeVariant(set, base, dir, `${set}-inpainting`, { channels: 9 });
      const inspect = await runCli(['inspect', ckpt, '--json'], dir);
      expect(inspect.code, inspect.stderr).toBe(0);
      const report = JSON.parse(inspect.stdout) as { variant: string; architecture: string };
      expect(report.variant).toBe('inpaint');

      const out = join(dir, `${set}-out`);
      const args = [
        '--mask',
        join(dir, 'mask.png'),
        '--prompt',
        'a red cube',
        '--steps',
        '3',
        '--seed',
        '11',
      ];
      const common = [...args, '--model', ckpt, '--out', out, '--no-grid'];
      const r = await runCli(['img2img', join(dir, 'init.png'), ...common], dir);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const [path] = r.stdout.trim().split('\n');
      const info = await infotextOf(path!);
      expect(info).toMatchObject({ 'Mask blur': '4', 'Conditional mask weight': '1', 'Size-1': '64' });
      const got = await rgb(path!);
      const want = await rgb(join(dir, 'init.png'));
      let far = 0;
      let inside = 0;
      for (let i = 0; i < S * S; i++) {
        const x = i % S;
        const y = Math.floor(i / S);
        const near = x >= M0 - REACH && x < M1 + REACH && y >= M0 - REACH && y < M1 + REACH;
        const masked = x >= M0 && x < M1 && y >= M0 && y < M1;
        for (let c = 0; c < 3; c++) {
          if (!near) {
            far++;
            expect(got[i * 3 + c], `pixel ${x},${y}`).toBe(want[i * 3 + c]);
          }
          if (masked && got[i * 3 + c] !== want[i * 3 + c]) inside++;
        }
      }
      expect(far).toBeGreaterThan(0);
      expect(inside).toBeGreaterThan(0);

      // The setting reaches the model's image conditioning and the infotext; --params reads it back.
      const half = await runCli(
        ['img2img', join(dir, 'init.png'), ...common, '--inpainting-mask-weight', '0.5'],
        dir,
      );
      expect(half.code, half.stderr).toBe(0);
      const [halfPath] = half.stdout.trim().split('\n');
      expect((await infotextOf(halfPath!))['Conditional mask weight']).toBe('0.5');
      expect((await rgb(halfPath!)).equals(got)).toBe(false);
      // --params reads the weight back (the model is given: this folder has no model library).
      const again = await runCli(
        ['img2img', join(dir, 'init.png'), '--mask', join(dir, 'mask.png'), '--params', halfPath!].concat([
          '--model',
          ckpt,
          '--out',
          out,
          '--no-grid',
        ]),
        dir,
      );
      expect(again.code, again.stderr).toBe(0);
      const [copy] = again.stdout.trim().split('\n');
      expect((await readFile(copy!)).equals(await readFile(halfPath!))).toBe(true);
    });

    it('txt2img: no "Conditional mask weight"; the hires pass records and uses it (A1111 conditions it on the upscaled first pass)', async () => {
      const built = join(dir, `${set}-inpainting.safetensors`);
      const ckpt = existsSync(built)
        ? built
        : await writeVariant(set, base, dir, `${set}-inpainting`, { channels: 9 });
      const args = ['txt2img', 'a cube', '--steps', '2', '--width', '64', '--height', '64', '--model', ckpt];
      const run = async (...extra: string[]) => {
        const r = await runCli([...args, ...extra], dir);
        expect(r.code, r.stderr).toBe(0);
        return r.stdout.trim().split('\n')[0]!;
      };
      expect((await infotextOf(await run()))['Conditional mask weight']).toBeUndefined();
      const hires = ['--hires', '--hires-scale', '1.5', '--hires-steps', '2'];
      const full = await run(...hires);
      expect((await infotextOf(full))['Conditional mask weight']).toBe('1');
      const half = await run(...hires, '--inpainting-mask-weight', '0.5');
      expect((await infotextOf(half))['Conditional mask weight']).toBe('0.5');
      expect((await rgb(half)).equals(await rgb(full))).toBe(false);
    });

    // Depth and unCLIP models exist for SD 2.x only.
    it.runIf(set === 'tiny-sd2')(
      'SD 2.0 depth (5 channels) and unCLIP files: inspect names them, txt2img refuses with one line',
      async () => {
        const depth = await writeVariant(set, base, dir, `${set}-depth`, { channels: 5 });
        const unclip = await writeVariant(set, base, dir, `${set}-unclip`, {
          addTensors: { 'noise_augmentor.betas': [1000], 'embedder.model.ln_final.weight': [8] },
        });
        for (const [file, variant, words] of [
          [depth, 'depth', /depth \(depth2img\) model/],
          [unclip, 'unclip', /unCLIP model/],
        ] as const) {
          const inspect = await runCli(['inspect', file, '--json'], dir);
          expect(inspect.code, inspect.stderr).toBe(0);
          expect((JSON.parse(inspect.stdout) as { variant: string }).variant).toBe(variant);
          const r = await runCli(['txt2img', 'a cube', '--steps', '1', '--model', file], dir);
          expect(r.code).not.toBe(0);
          expect(r.stdout).toBe('');
          const lines = r.stderr.trim().split('\n');
          expect(lines).toHaveLength(1);
          expect(lines[0]).toMatch(words);
          expect(lines[0]).toMatch(/does not run/);
        }
      },
    );
  });
}
