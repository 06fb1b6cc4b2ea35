/**
 * SD 2.x and SDXL through the pipeline: the end-to-end txt2img goldens of tiny-sd2 and tiny-sdxl
 * (every `txt2img` case of their cases.json) run through `loadModel` (family, prediction from the
 * sidecar, latent scale, schedule), the pipeline's CFG denoiser (v-prediction, SDXL's vector) and
 * its VAE decode; the Conditioner's multi-tower encoding against the engine's; and `sdstudio
 * txt2img` / `inspect` on the same checkpoints as a user runs them.
 */
import { mkdir, mkdtemp, readFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Conditioner, type TextEmbedding } from '../../src/pipeline/conditioning.js';
import { loadModel, type LoadedModel } from '../../src/pipeline/model.js';
import { padAfterFirstEos } from '../../src/prompt/chunking.js';
import { checkE2e, GoldenSet, runTxt2img, type Tol } from '../engine/family-goldens.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';
import { imageSize, infotextOf, runCli } from './cli-helpers.js';

const SETS = ['tiny-sd2', 'tiny-sdxl'];
const loaded: LoadedModel[] = [];
const sets = SETS.map((s) => new GoldenSet(s));
afterAll(async () => {
  for (const m of loaded) await m.release();
  for (const s of sets) await s.close();
});

const models = new Map<string, Promise<LoadedModel>>();

/** A golden checkpoint through the pipeline's loader, once per file. */
function load(set: string, checkpoint: string): Promise<LoadedModel> {
  const key = `${set}/${checkpoint}`;
  let m = models.get(key);
  if (!m) {
    m = loadModel({ checkpoint: goldenPath(set, checkpoint), hash: false, clipVocab: clipVocabPath() });
    m.then(
      (x) => loaded.push(x),
      () => undefined,
    );
    models.set(key, m);
  }
  return m;
}

for (const gs of sets) {
  const e2e = gs.cases.filter((c) => c.kind === 'txt2img');
  describe(`${gs.set}: txt2img through the pipeline`, () => {
    it('has txt2img cases', () => expect(e2e.length).toBeGreaterThan(0));

    for (const c of e2e) {
      it(`${c.file}: conditioning, sigmas, every step, decoded image`, async () => {
        const m = await load(gs.set, c.checkpoint);
        expect(m.scaleFactor).toBe((c.params as { scale_factor: number }).scale_factor);
        const r = await runTxt2img(gs, c, m.engine, c.file, m);
        const tol = c.tolerance as Record<string, Tol>;
        await checkE2e(gs, c, c.file, r, (_k, group) => tol[group]!);
      });
    }

    it('the Conditioner encodes a prompt as the engine does (every tower, its padding, pooled, vector)', async () => {
      const c = e2e[0]!;
      const m = await load(gs.set, c.checkpoint);
      const cond = new Conditioner({
        model: m.engine,
        tokenizer: m.tokenizer,
        clipSkip: 1,
        sdxl: { size: [64, 96] },
      });
      const [entry] = await cond.schedule('a photo of a cat', 1);
      const towers = m.engine.towers;
      const ids = towers.map((t) => {
        const base = [m.tokenizer.bos, ...m.tokenizer.encode('a photo of a cat'), m.tokenizer.eos];
        const row = [...base, ...new Array<number>(77 - base.length).fill(m.tokenizer.eos)];
        return Int32Array.from(padAfterFirstEos(row, m.tokenizer.eos, t.padId));
      });
      const direct = await m.engine.encodeIdsAll(ids, 1);
      expect([...entry!.cond.data]).toEqual([...direct.context.data]);
      expect(entry!.y !== undefined).toBe(m.engine.config.vector !== undefined);
      if (entry!.y)
        expect([...entry!.y.data.subarray(0, direct.pooled!.data.length)]).toEqual([...direct.pooled!.data]);
      // SDXL zeroes an empty negative prompt's text parts; SD 2.x encodes it like any prompt.
      const [neg] = await cond.schedule('', 1, undefined, true);
      const zeros = neg!.cond.data.every((v) => v === 0);
      expect(zeros).toBe(m.engine.config.vector !== undefined);
    });

    it("textual inversion: vectors of the model's widths are spliced into every tower; other widths are skipped", async () => {
      const c = e2e[0]!;
      const m = await load(gs.set, c.checkpoint);
      const towers = m.engine.towers;
      const rows = (width: number, seed: number) =>
        Float32Array.from({ length: 2 * width }, (_, i) => Math.sin(i * 0.37 + seed));
      const fits: TextEmbedding =
        towers.length === 2
          ? {
              name: 'fitting',
              vectors: 2,
              vec: new Float32Array(0),
              parts: {
                clip_l: { vectors: 2, vec: rows(towers[0]!.config.width, 1) },
                clip_g: { vectors: 2, vec: rows(towers[1]!.config.width, 2) },
              },
            }
          : { name: 'fitting', vectors: 2, vec: rows(towers[0]!.config.width, 1) };
      const other: TextEmbedding = { name: 'otherfamily', vectors: 1, vec: rows(7, 3).subarray(0, 7) };
      const embeddings = new Map([
        ['fitting', fits],
        ['otherfamily', other],
      ]);
      const cond = new Conditioner({
        model: m.engine,
        tokenizer: m.tokenizer,
        clipSkip: 1,
        embeddings,
        sdxl: { size: [64, 96] },
      });
      expect(cond.skippedEmbeddings).toEqual(['otherfamily']);
      const [entry] = await cond.schedule('a fitting cat', 1);
      expect([...cond.usedEmbeddings]).toEqual(['fitting']);
      // The same by hand: ids with two placeholder slots, the vectors written into each tower's embeddings.
      const words = m.tokenizer.encode('a');
      const cat = m.tokenizer.encode('cat');
      const base = [m.tokenizer.bos, ...words, 0, 0, ...cat, m.tokenizer.eos];
      const row = [...base, ...new Array<number>(77 - base.length).fill(m.tokenizer.eos)];
      const at = 1 + words.length;
      const embeds = [];
      const idsAll = [];
      for (let i = 0; i < towers.length; i++) {
        const ids = Int32Array.from(padAfterFirstEos(row, m.tokenizer.eos, towers[i]!.padId));
        const e = await m.engine.tokenEmbeddings(ids, 1, i);
        const w = towers[i]!.config.width;
        const v =
          towers.length === 2 ? (i === 0 ? fits.parts!.clip_l.vec : fits.parts!.clip_g.vec) : fits.vec;
        e.data.set(v, at * w);
        embeds.push(e);
        idsAll.push(ids);
      }
      const direct = await m.engine.encodeConditioning(embeds, idsAll);
      expect([...entry!.cond.data]).toEqual([...direct.context.data]);
    });

    it('sdstudio txt2img: the image, its infotext, and --params re-running to the same bytes; inspect names the family', async () => {
      const c = e2e[0]!;
      const ckpt = goldenPath(gs.set, c.checkpoint);
      const dir = await mkdtemp(join(tmpdir(), 'sdcli-family-'));
      const args = ['--steps', '2', '--width', '96', '--height', '64', '--model', ckpt, '--no-grid'];
      const r = await runCli(['txt2img', 'a red cube', ...args, '--seed', '7'], dir);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const [path] = r.stdout.trim().split('\n');
      expect(await imageSize(path!)).toEqual([96, 64]);
      const info = await infotextOf(path!);
      expect(info).toMatchObject({
        Prompt: 'a red cube',
        Seed: '7',
        Steps: '2',
        'Size-1': '96',
        'Size-2': '64',
      });
      expect(info['Model hash']).toMatch(/^[0-9a-f]{10}$/);
      const again = await runCli(['txt2img', '--params', path!, '--model', ckpt, '--no-grid'], dir);
      expect(again.code, again.stderr).toBe(0);
      const [copy] = again.stdout.trim().split('\n');
      expect((await readFile(copy!)).equals(await readFile(path!))).toBe(true);
      const inspect = await runCli(['inspect', ckpt, '--json'], dir);
      expect(inspect.code, inspect.stderr).toBe(0);
      const report = JSON.parse(inspect.stdout) as { architecture: string; prediction: string };
      const m = await load(gs.set, c.checkpoint);
      expect(report.architecture).toBe(m.engine.family);
      expect(report.prediction).toBe(m.prediction);
    });

    const refinerCase = gs.cases.find((c) => c.kind.startsWith('refiner_'));
    if (refinerCase) {
      it('sdstudio txt2img --refiner: A1111 infotext keys, and --params finds both models again', async () => {
        const base = e2e[0]!;
        const dir = await mkdtemp(join(tmpdir(), 'sdcli-refiner-'));
        // A1111's layout, with each checkpoint's yaml beside it.
        const models = join(dir, 'models', 'Stable-diffusion');
        await mkdir(models, { recursive: true });
        for (const c of [base, refinerCase]) {
          await symlink(goldenPath(gs.set, c.checkpoint), join(models, c.checkpoint));
          await symlink(goldenPath(gs.set, c.config), join(models, c.config));
        }
        const stem = (f: string) => f.replace(/\.safetensors$/, '');
        const args = ['--steps', '3', '--width', '64', '--height', '64', '--no-grid', '--seed', '5'];
        const r = await runCli(
          [
            'txt2img',
            'a red cube',
            '--model',
            stem(base.checkpoint),
            '--refiner',
            stem(refinerCase.checkpoint),
            '--refiner-switch-at',
            '0.5',
            ...args,
          ],
          dir,
        );
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        const [path] = r.stdout.trim().split('\n');
        const info = await infotextOf(path!);
        expect(info.Refiner).toMatch(new RegExp(`^${stem(refinerCase.checkpoint)} \\[[0-9a-f]{10}\\]$`));
        expect(info['Refiner switch at']).toBe('0.5');
        const again = await runCli(['txt2img', '--params', path!, '--no-grid'], dir);
        expect(again.code, again.stderr).toBe(0);
        const [copy] = again.stdout.trim().split('\n');
        expect((await readFile(copy!)).equals(await readFile(path!))).toBe(true);
      });
    }
  });
}
