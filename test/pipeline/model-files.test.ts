/**
 * Checkpoint files that differ from the tiny golden one only in how they are stored (old key
 * names, bf16) load and generate like it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { castFloats } from '../../src/formats/dtype.js';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { generate } from '../../src/pipeline/generate.js';
import { loadModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import { convertModel } from '../../src/tools/convert.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';
import { psnr } from '../helpers/psnr.js';
import { withSource } from '../helpers/tensor-source.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-model-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');
const params = withDefaults({ prompt: 'a red cube', width: 64, height: 64, steps: 3, seed: 7, cfg_scale: 5 });

/** The first image `checkpoint` generates with `params`, as RGB bytes (the golden file's once). */
let reference: Promise<Uint8Array> | undefined;
function imageOf(checkpoint: string): Promise<Uint8Array> {
  if (checkpoint !== tiny) return generateWith(checkpoint);
  return (reference ??= generateWith(checkpoint));
}

async function generateWith(checkpoint: string): Promise<Uint8Array> {
  const m = await loadModel({ checkpoint, clipVocab: clipVocabPath(), cacheDir: join(dir, 'cache') });
  try {
    return (await generate(m, params, 'txt2img')).images[0]!.image.data;
  } finally {
    await m.release();
  }
}

describe('checkpoint files', () => {
  it("a .safetensors with old CLIP key names (A1111's checkpoint_dict_replacements) generates as the modern one", async () => {
    const old = join(dir, 'old-names.safetensors');
    let renamed = 0;
    await withSource(tiny, async (src) => {
      const entries: [string, Tensor][] = [];
      for (const k of src.keys()) {
        const o = k.replace('cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.');
        if (o !== k) renamed++;
        entries.push([o, await src.read(k)]);
      }
      await writeSafetensors(old, entries, { format: 'pt' });
    });
    expect(renamed).toBeGreaterThan(0);
    const [want, got] = [await imageOf(tiny), await imageOf(old)];
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
  });

  describe('bf16', () => {
    const bytes = (a: Uint8Array) => Float32Array.from(a);
    it('sdstudio convert --bf16 keeps the schedule buffers float32, and the file generates like the fp32 one', async () => {
      const out = join(dir, 'tiny-bf16.safetensors');
      await convertModel(tiny, out, { dtype: 'bf16' });
      const s = await openSafetensors(out);
      const dtypes = new Map(s.header.tensors.map((t) => [t.name, t.dtype]));
      await s.close();
      expect(dtypes.get('alphas_cumprod')).toBe('F32');
      expect(dtypes.get('model.diffusion_model.input_blocks.0.0.weight')).toBe('BF16');
      const [want, got] = [await imageOf(tiny), await imageOf(out)];
      expect(psnr(bytes(got), bytes(want))).toBeGreaterThan(25);
    });

    it('a file with every float in bf16 (schedule buffers too) generates like the fp32 one', async () => {
      const out = join(dir, 'all-bf16.safetensors');
      await withSource(tiny, async (src) => {
        const entries: [string, Tensor][] = [];
        for (const k of src.keys()) entries.push([k, castFloats(await src.read(k), 'BF16')]);
        await writeSafetensors(out, entries, { format: 'pt' });
      });
      const [want, got] = [await imageOf(tiny), await imageOf(out)];
      expect(psnr(bytes(got), bytes(want))).toBeGreaterThan(25);
    });
  });
});
