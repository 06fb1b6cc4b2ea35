/**
 * `sdstudio txt2img` with `<lora:…>` tags on the tiny checkpoint, end to end (a subprocess): the
 * tag gives the image of a checkpoint with the same LoRA merged in; a zero multiplier gives exactly
 * the image without the tag; the infotext carries `Lora hashes`, and `--params` finds the file again.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseLoraTag } from '../../src/adapters/lora-tags.js';
import { parseExtraNetworks } from '../../src/prompt/extra-networks.js';
import { infotextOf, runCli, tiny } from '../pipeline/cli-helpers.js';
import { adapterPath, casesOf } from './helpers.js';
import { txt2imgOne as one, pixels, maxDiff } from './cli-images.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('sdstudio txt2img with <lora:…>', () => {
  // A LoRA case that patches both the text encoder and the UNet without errors.
  const c = casesOf('lora_apply').find(
    (x) =>
      (x.patched_tensors as string[]).some((k) => k.includes('cond_stage_model')) &&
      (x.patched_tensors as string[]).some((k) => k.includes('diffusion_model')) &&
      Object.keys(x.apply_errors as object).length === 0,
  )!;

  it('equals the merged checkpoint; <lora:x:0> equals no tag; infotext hashes; --params', async () => {
    expect(c).toBeDefined();
    const dir = await mkdtemp(join(tmpdir(), 'sdcli-lora-'));
    dirs.push(dir);
    await mkdir(join(dir, 'models', 'Lora'), { recursive: true });
    await copyFile(adapterPath(c.adapter as string), join(dir, 'models', 'Lora', c.adapter as string));
    const tagText = c.prompt_tag as string;
    const tag = parseLoraTag(parseExtraNetworks(tagText).networks[0]!);
    const common = [
      '--steps',
      '2',
      '--width',
      '64',
      '--height',
      '64',
      '--seed',
      '7',
      '--no-grid',
      '--data-dir',
      dir,
    ];

    // The checkpoint with the LoRA baked in at the tag's multipliers, by `sdstudio merge --lora`.
    const merged = join(dir, 'merged.safetensors');
    const m = await runCli(
      ['merge', tiny, '--lora', `${tag.name}:${tag.te}:${tag.unet}`, '--out', merged, '--data-dir', dir],
      dir,
    );
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toMatch(/patched by 1 LoRA/);

    const withTag = await one(['a red cube ' + tagText, '--model', tiny, ...common], dir);
    expect(withTag.stderr).toBe('');
    const onMerged = await one(['a red cube', '--model', merged, ...common], dir);
    const noTag = await one(['a red cube', '--model', tiny, ...common], dir);
    expect(maxDiff(await pixels(withTag.path), await pixels(onMerged.path))).toBeLessThanOrEqual(1);
    expect(maxDiff(await pixels(withTag.path), await pixels(noTag.path))).toBeGreaterThan(0);

    const info = await infotextOf(withTag.path);
    expect(info['Lora hashes']).toBe(c.infotext_lora_hashes);
    expect(info.Prompt).toBe('a red cube ' + tagText);

    const zero = await one([`a red cube <lora:${tag.name}:0>`, '--model', tiny, ...common], dir);
    expect((await pixels(zero.path)).equals(await pixels(noTag.path))).toBe(true);

    const again = await one(['--params', withTag.path, '--model', tiny, '--no-grid', '--data-dir', dir], dir);
    expect((await pixels(again.path)).equals(await pixels(withTag.path))).toBe(true);

    // The int8 UNet quantizes the patched weights (runtime/quantize.ts reads the overlay source).
    const int8 = ['--precision', 'int8', ...common];
    const int8Tag = await one(['a red cube ' + tagText, '--model', tiny, ...int8], dir);
    const int8Merged = await one(['a red cube', '--model', merged, ...int8], dir);
    expect((await pixels(int8Tag.path)).equals(await pixels(int8Merged.path))).toBe(true);

    const missing = await runCli(
      ['txt2img', 'a red cube <lora:no_such_lora:1>', '--model', tiny, ...common],
      dir,
    );
    expect(missing.code).toBe(0);
    expect(missing.stderr).toMatch(/Failed to find networks: no_such_lora/);
  }, 300_000);
});
