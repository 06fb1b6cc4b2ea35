/**
 * A1111's `sdxl_clip_l_skip` ("Clip skip SDXL", sd_hijack_clip.py): off, SDXL's CLIP-L gives its
 * penultimate hidden states whatever the clip skip; on, clip skip N gives hidden_states[-N] (no
 * final norm). Checked against the tiny-sdxl text-encoder golden's CLIP-L hidden states, and
 * through `sdstudio txt2img --sdxl-clip-l-skip` (the setting reaches the image; with clip skip 2 it
 * is the default's image).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectClose, GoldenSet, type Tol } from '../engine/family-goldens.js';
import { goldenPath } from '../helpers/golden.js';
import { runCli } from './cli-helpers.js';

const gs = new GoldenSet('tiny-sdxl');
const c = gs.cases.find((x) => x.kind === 'sdxl_text_encoders')!;
let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sd-clip-l-skip-'));
});
afterAll(async () => {
  await gs.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('sdxl_clip_l_skip', () => {
  it("the engine's CLIP-L output with the setting off and on, against the golden hidden states", async () => {
    const m = await gs.model(c.checkpoint);
    const { ids, dims } = await gs.ids(c.file, c.inputs!.input_ids_l as string);
    const batch = dims[0]!;
    const emb = await m.tokenEmbeddings(ids, batch, 0);
    const hidden = c.outputs['clip_l.hidden_states'] as string[];
    const L = hidden.length - 1;
    const tol = c.tolerance as Tol;
    const golden = (name: string) => gs.tensor(c.file, name);
    const ctx = async (clipSkip: number, on: boolean) =>
      (await m.encodeTower(emb, ids, clipSkip, 0, { sdxlClipLSkip: on })).context.data;
    const penultimate = await golden(c.outputs['clip_l.hidden'] as string);
    // Off: the penultimate layer whatever the clip skip.
    for (const skip of [1, L])
      expectClose(`off, clip skip ${skip}`, await ctx(skip, false), penultimate.data, tol);
    // On: hidden_states[-N].
    for (let skip = 1; skip <= L; skip++) {
      const want = await golden(hidden[L + 1 - skip]!);
      expectClose(`on, clip skip ${skip}`, await ctx(skip, true), want.data, tol);
    }
    // The last layer's output is not the penultimate: the setting changes something.
    const last = await golden(hidden[L]!);
    expect(last.data.some((v, i) => Math.abs(v - penultimate.data[i]!) > 1e-3)).toBe(true);
  });

  it('sdstudio txt2img --sdxl-clip-l-skip: clip skip 1 changes the image, clip skip 2 is the default image', async () => {
    const e2e = gs.cases.find((x) => x.kind === 'txt2img')!;
    const ckpt = goldenPath(gs.set, e2e.checkpoint);
    const args = ['a red cube', '--steps', '2', '--width', '64', '--height', '64', '--seed', '3'];
    const run = async (...extra: string[]) => {
      const r = await runCli(['txt2img', ...args, '--model', ckpt, '--no-grid', ...extra], dir);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      const path = r.stdout.trim().split('\n')[0]!;
      return (await sharp(path).raw().toBuffer()).toString('base64');
    };
    const plain = await run();
    expect(await run('--clip-skip', '1', '--sdxl-clip-l-skip')).not.toBe(plain);
    expect(await run('--clip-skip', '2', '--sdxl-clip-l-skip')).toBe(plain);
    expect(await run('--clip-skip', '2')).toBe(plain);
  });
});
