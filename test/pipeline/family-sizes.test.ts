/**
 * Per-family default sizes in `sdstudio txt2img`: a side the user does not give takes the model
 * family's default (the loader's `defaultSize`: 768 for SD 2.x v, 1024 for SDXL), with one notice
 * line; the infotext records the real size and `--params` keeps it. SD 1.x stays 512 silently.
 * Each run gives one side (64) so the images stay small.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GoldenSet } from '../engine/family-goldens.js';
import { loadModel } from '../../src/pipeline/model.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';
import { imageSize, infotextOf, runCli } from './cli-helpers.js';

const SETS = ['tiny-sd2', 'tiny-sdxl'];

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sd-family-size-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

for (const set of SETS) {
  const gs = new GoldenSet(set);
  const c = gs.cases.find((x) => x.kind === 'txt2img')!;
  const ckpt = goldenPath(set, c.checkpoint);

  describe(`${set}: txt2img without --width/--height`, () => {
    it("takes the family's default size for the side not given, says so, and records it", async () => {
      const m = await loadModel({ checkpoint: ckpt, hash: false, clipVocab: clipVocabPath() });
      const size = m.engine.config.defaultSize;
      await m.release();
      expect(size).toBeGreaterThan(512);
      const r = await runCli(['txt2img', 'a cube', '--steps', '1', '--height', '64', '--model', ckpt], dir);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.trim().split('\n')).toEqual([
        expect.stringMatching(
          new RegExp(`^size ${size}x64: the default of .* models \\(give --width to choose\\)$`),
        ),
      ]);
      const [path] = r.stdout.trim().split('\n');
      expect(await imageSize(path!)).toEqual([size, 64]);
      const info = await infotextOf(path!);
      expect([info['Size-1'], info['Size-2']]).toEqual([String(size), '64']);
      // --params brings the size with it: no notice, the same size.
      const again = await runCli(['txt2img', '--params', path!, '--model', ckpt, '--steps', '1'], dir);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toBe('');
      expect(await imageSize(again.stdout.trim().split('\n')[0]!)).toEqual([size, 64]);
    });
  });
}
