/**
 * The suite as a newcomer runs it (README): it keeps out of the user's own cache, and the folders
 * the README has them create in the repository root are ignored by git, prettier and eslint.
 */
import { execFileSync } from 'node:child_process';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ESLint } from 'eslint';
import prettier from 'prettier';
import { describe, expect, it } from 'vitest';
import { defaultClipCacheDir } from '../src/prompt/vocab.js';
import { hashCachePath } from '../src/tools/hash.js';
import { repoRoot } from './helpers/golden.js';

const realCache = join(homedir(), '.cache', 'sdstudio');

describe('a newcomer runs the tests', () => {
  it("the caches are a temporary folder, not the user's ~/.cache/sdstudio", async () => {
    const cache = process.env.SDSTUDIO_CACHE;
    expect(cache).toBeTruthy();
    expect(resolve(cache!).startsWith(realCache)).toBe(false);
    const { defaultCacheDir } = await import('../src/runtime/weights.js');
    for (const dir of [defaultCacheDir(), defaultClipCacheDir(process.env), hashCachePath()])
      expect(resolve(dir).startsWith(realCache), dir).toBe(false);
  });

  it('models/ and outputs/ in the repository root are ignored by git, prettier and eslint', async () => {
    const paths = ['models/Stable-diffusion/model.json', 'outputs/txt2img-images/a.ts'];
    const ignored = execFileSync('git', ['check-ignore', ...paths], { cwd: repoRoot, encoding: 'utf8' });
    expect(ignored.trim().split('\n')).toEqual(paths);
    for (const p of paths) {
      const info = await prettier.getFileInfo(join(repoRoot, p), {
        ignorePath: join(repoRoot, '.prettierignore'),
      });
      expect(info.ignored, p).toBe(true);
    }
    const eslint = new ESLint({ cwd: repoRoot });
    for (const p of paths) expect(await eslint.isPathIgnored(join(repoRoot, p)), p).toBe(true);
    // …and only those: the source folders of the same names are not.
    expect(await eslint.isPathIgnored(join(repoRoot, 'src/models/unet.ts'))).toBe(false);
    expect(
      (
        await prettier.getFileInfo(join(repoRoot, 'src/models/unet.ts'), {
          ignorePath: join(repoRoot, '.prettierignore'),
        })
      ).ignored,
    ).toBe(false);
  });
});
