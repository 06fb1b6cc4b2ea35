/**
 * Running `bin/sdstudio.js` as a user does (a subprocess) and reading back what it wrote; shared by
 * the CLI tests in this folder.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import sharp from 'sharp';
import { expect } from 'vitest';
import { readGenerationInfo } from '../../src/infotext/image-metadata.js';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { clipVocabPath, goldenPath, repoRoot } from '../helpers/golden.js';

const bin = join(repoRoot, 'bin', 'sdstudio.js');
export const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `sdstudio ARGS` in `cwd`, with the test CLIP vocabulary and any extra environment. The plain
 * progress lines printed when stderr is not a terminal are off (a slow machine would print them
 * into tests that expect a quiet run); tests of those lines set SDSTUDIO_PROGRESS_LOG.
 */
export function runCli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      {
        cwd,
        env: {
          ...process.env,
          SDSTUDIO_SOURCE: '1',
          SDSTUDIO_CLIP_VOCAB: clipVocabPath(),
          SDSTUDIO_PROGRESS_LOG: '0',
          ...env,
        },
        timeout: 110_000,
      },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
      },
    );
  });
}

/** `sdstudio txt2img ARGS` that must succeed quietly with one image; returns its path. */
export async function txt2imgOne(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<string> {
  const r = await runCli(['txt2img', ...args], cwd, env);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  const paths = r.stdout.trim().split('\n');
  expect(paths).toHaveLength(1);
  return paths[0]!;
}

export async function imageSize(path: string): Promise<[number, number]> {
  const m = await sharp(path).metadata();
  return [m.width!, m.height!];
}

/** The parsed A1111 infotext of a written PNG. */
export async function infotextOf(path: string): Promise<Record<string, unknown>> {
  const { geninfo } = await readGenerationInfo(path);
  expect(geninfo).toBeTruthy();
  return parseInfotext(geninfo!);
}
