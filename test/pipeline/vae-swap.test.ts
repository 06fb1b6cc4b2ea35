import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { generate } from '../../src/pipeline/generate.js';
import { findCheckpoint, findVae } from '../../src/pipeline/model-library.js';
import { loadModel, type LoadedModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import { UserError } from '../../src/util/errors.js';
import { tinySdGoldenFile } from '../helpers/golden-cases.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';

const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');
const models: LoadedModel[] = [];
afterAll(async () => {
  for (const m of models) await m.release();
});

describe('VAE swap and model lookup', () => {
  it('a VAE file replaces the checkpoint VAE and is named in the infotext', async () => {
    const plain = await loadModel({ checkpoint: tiny, clipVocab: clipVocabPath() });
    // A full checkpoint holds an ldm VAE under first_stage_model.*: swapping in the same one changes no pixel.
    const swapped = await loadModel({ checkpoint: tiny, vaePath: tiny, clipVocab: clipVocabPath() });
    models.push(plain, swapped);
    const p = withDefaults({ prompt: 'x', seed: 3, steps: 2, width: 64, height: 64 });
    const a = (await generate(plain, p, 'txt2img')).images[0]!;
    const b = (await generate(swapped, p, 'txt2img')).images[0]!;
    expect(Buffer.from(a.image.data).equals(Buffer.from(b.image.data))).toBe(true);
    expect(parseInfotext(b.infotext)).toMatchObject({ VAE: 'tiny-sd.safetensors', 'VAE hash': swapped.hash });
    expect(parseInfotext(a.infotext).VAE).toBeUndefined();
  });

  it('refuses a file that is not a VAE, saying so', async () => {
    await expect(
      loadModel({
        checkpoint: tiny,
        vaePath: tinySdGoldenFile('unet'),
        clipVocab: clipVocabPath(),
      }),
    ).rejects.toThrow(/not an SD VAE/);
  });

  it('finds checkpoints by name, stem or title and VAEs in models/VAE or beside the checkpoint', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sd-data-'));
    await mkdir(join(dir, 'models', 'Stable-diffusion', 'sub'), { recursive: true });
    await mkdir(join(dir, 'models', 'VAE'), { recursive: true });
    const ck = join(dir, 'models', 'Stable-diffusion', 'sub', 'my-model.safetensors');
    await symlink(tiny, ck);
    await copyFile(tiny, join(dir, 'models', 'VAE', 'nice.vae.safetensors'));
    // Symlinks are resolved, the golden folder's own included (../shared may be a symlink).
    const real = realpathSync(tiny);
    const title = `my-model.safetensors [${createHash('sha256').update(readFileSync(tiny)).digest('hex').slice(0, 10)}]`;
    expect(findCheckpoint('my-model', dir)).toBe(real);
    expect(findCheckpoint(title, dir)).toBe(real);
    expect(findCheckpoint(undefined, dir)).toBe(real);
    expect(() => findCheckpoint('other', dir)).toThrow(UserError);
    expect(() => findCheckpoint('other', dir)).toThrow(/my-model\.safetensors/);
    expect(findVae('nice.vae.safetensors', tiny, dir)).toMatch(/nice\.vae\.safetensors$/);
    expect(findVae('None', tiny, dir)).toBeNull();
    expect(() => findVae('missing.pt', tiny, dir)).toThrow(/models\/VAE/);
    // "Automatic": <checkpoint stem>.vae.safetensors beside the checkpoint
    const own = join(dir, 'solo.safetensors');
    await copyFile(tiny, own);
    expect(findVae('Automatic', own, dir)).toBeNull();
    await copyFile(tiny, join(dir, 'solo.vae.safetensors'));
    expect(findVae('Automatic', own, dir)).toMatch(/solo\.vae\.safetensors$/);
  });
});
