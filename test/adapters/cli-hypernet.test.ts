/**
 * `sdstudio txt2img` with `<hypernet:…>` tags on the tiny checkpoint, end to end (a subprocess): the
 * tag changes the image, a zero multiplier gives exactly the image without it, the prompt of the
 * infotext carries the tag (A1111 v1.10.1 writes no `Hypernet:` key) and `--params` re-runs it
 * identically; an old infotext's `Hypernet: name` / `Hypernet strength` keys become the tag.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { readGenerationInfo } from '../../src/infotext/image-metadata.js';
import { encodePngWithInfotext } from '../../src/pipeline/outputs.js';
import { infotextOf, runCli, tiny } from '../pipeline/cli-helpers.js';
import { adapterPath, casesOf } from './helpers.js';
import { txt2imgOne as one, pixels } from './cli-images.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('sdstudio txt2img with <hypernet:…>', () => {
  // The hypernetwork with the most widths: it reaches cross- and self-attention of the tiny UNet.
  const c = casesOf('hypernetwork')
    .filter((x) => x.file)
    .sort(
      (a, b) =>
        (b.loaded_fields as { sizes: number[] }).sizes.length -
        (a.loaded_fields as { sizes: number[] }).sizes.length,
    )[0]!;

  it('changes the image; :0 equals no tag; the prompt carries it; --params; old Hypernet keys', async () => {
    expect(c).toBeDefined();
    const dir = await mkdtemp(join(tmpdir(), 'sdcli-hn-'));
    dirs.push(dir);
    // A folder of its own, found through --hypernetwork-dir.
    const hnDir = join(dir, 'my-hypernets');
    await mkdir(join(hnDir, 'sub'), { recursive: true });
    const name = 'hn_under_test';
    await copyFile(adapterPath(c.file as string), join(hnDir, 'sub', `${name}.pt`));
    const common = ['--steps', '2', '--width', '64', '--height', '64', '--seed', '7', '--no-grid'];
    const where = ['--data-dir', dir, '--hypernetwork-dir', hnDir];
    const run = (prompt: string, more: string[] = []) =>
      one([prompt, '--model', tiny, ...common, ...where, ...more], dir);

    const withTag = await run(`a red cube <hypernet:${name}:1>`);
    expect(withTag.stderr).toBe('');
    const noTag = await run('a red cube');
    expect((await pixels(withTag.path)).equals(await pixels(noTag.path))).toBe(false);
    const half = await run(`a red cube <hypernet:${name}:0.5>`);
    expect((await pixels(half.path)).equals(await pixels(withTag.path))).toBe(false);

    const zero = await run(`a red cube <hypernet:${name}:0>`);
    expect((await pixels(zero.path)).equals(await pixels(noTag.path))).toBe(true);

    const info = await infotextOf(withTag.path);
    expect(info.Prompt).toBe(`a red cube <hypernet:${name}:1>`);
    expect(info.Hypernet).toBeUndefined();

    const again = await one(['--params', withTag.path, '--model', tiny, '--no-grid', ...where], dir);
    expect((await pixels(again.path)).equals(await pixels(withTag.path))).toBe(true);

    // An infotext of the A1111 versions that wrote the hypernetwork as keys: read back as the tag.
    const text = (await readGenerationInfo(withTag.path)).geninfo!;
    const oldText = `${text.replace(` <hypernet:${name}:1>`, '')}, Hypernet: ${name}, Hypernet strength: 1`;
    expect(oldText).not.toContain('<hypernet:');
    const raw = await sharp(withTag.path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const oldPng = join(dir, 'old.png');
    await writeFile(
      oldPng,
      await encodePngWithInfotext(
        { width: raw.info.width, height: raw.info.height, data: raw.data },
        oldText,
      ),
    );
    const old = await one(['--params', oldPng, '--model', tiny, '--no-grid', ...where], dir);
    expect((await infotextOf(old.path)).Prompt).toBe(`a red cube<hypernet:${name}:1>`);
    expect((await pixels(old.path)).equals(await pixels(withTag.path))).toBe(true);

    const missing = await runCli(
      ['txt2img', 'a red cube <hypernet:no_such_hn:1>', '--model', tiny, ...common, ...where],
      dir,
    );
    expect(missing.code).toBe(0);
    expect(missing.stderr).toMatch(/Failed to find hypernetworks: no_such_hn/);
  }, 300_000);
});
