/**
 * Textual inversion on SD 2.x and SDXL through `sdstudio txt2img`, with an `embeddings/` folder as
 * A1111 users keep it: an embedding of the model's width (SD 2.x: `emb_params` as wide as its
 * OpenCLIP tower; SDXL: `clip_l` + `clip_g`) is applied (the image changes, `TI hashes` names it),
 * and an SD 1.x one (768 wide) is skipped with A1111's "Textual inversion embeddings skipped" line.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { loadModel } from '../../src/pipeline/model.js';
import { GoldenSet } from '../engine/family-goldens.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';
import { infotextOf, runCli } from './cli-helpers.js';

const SETS = ['tiny-sd2', 'tiny-sdxl'];
const SD1_WIDTH = 768;

let root = '';
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sd-family-ti-'));
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

function rows(n: number, width: number, seed: number): Tensor {
  const v = Float32Array.from({ length: n * width }, (_, i) => Math.sin(i * 0.71 + seed) * 0.8);
  return { dtype: 'F32', shape: [n, width], data: new Uint8Array(v.buffer) };
}

const pixels = async (path: string) => (await sharp(path).raw().toBuffer()).toString('base64');

for (const set of SETS) {
  const gs = new GoldenSet(set);
  const c = gs.cases.find((x) => x.kind === 'txt2img')!;
  const ckpt = goldenPath(set, c.checkpoint);

  describe(`${set}: textual inversion from the embeddings folder`, () => {
    it("an embedding of the model's widths applies; an SD 1.x one is skipped with A1111's line", async () => {
      const m = await loadModel({ checkpoint: ckpt, hash: false, clipVocab: clipVocabPath() });
      const widths = m.engine.towers.map((t) => t.config.width);
      await m.release();
      const dir = join(root, set);
      await mkdir(join(dir, 'embeddings'), { recursive: true });
      const fit: [string, Tensor][] =
        widths.length === 2
          ? [
              ['clip_l', rows(2, widths[0]!, 1)],
              ['clip_g', rows(2, widths[1]!, 2)],
            ]
          : [['emb_params', rows(2, widths[0]!, 1)]];
      await writeSafetensors(join(dir, 'embeddings', 'xlfit.safetensors'), fit);
      await writeSafetensors(join(dir, 'embeddings', 'oldsd.safetensors'), [
        ['emb_params', rows(1, SD1_WIDTH, 3)],
      ]);
      const args = ['a xlfit cube', '--steps', '2', '--width', '64', '--height', '64', '--seed', '4'];
      const r = await runCli(['txt2img', ...args, '--model', ckpt, '--no-grid'], dir);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.trim().split('\n')).toEqual([
        expect.stringMatching(
          /^warning: Textual inversion embeddings skipped\(1\): oldsd \(oldsd\.safetensors, 768 wide\); not compatible/,
        ),
      ]);
      const path = r.stdout.trim().split('\n')[0]!;
      expect(String((await infotextOf(path))['TI hashes'])).toMatch(/^xlfit: [0-9a-f]{12}$/);
      // The same job without the folder: "xlfit" is an ordinary word, so the image differs.
      const bare = join(root, `${set}-bare`);
      await mkdir(bare, { recursive: true });
      const plain = await runCli(['txt2img', ...args, '--model', ckpt, '--no-grid'], bare);
      expect(plain.code, plain.stderr).toBe(0);
      expect(await pixels(plain.stdout.trim().split('\n')[0]!)).not.toBe(await pixels(path));
    });
  });
}
