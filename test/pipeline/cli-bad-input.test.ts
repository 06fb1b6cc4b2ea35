/**
 * Bad command lines as a table (argv, exit code, message fragment), run as a user runs them: a
 * subprocess of `bin/sdstudio.js`. Every one must answer with one line naming what was typed, never
 * a stack trace. And option values that start with `-` are values (`--seed -1`, `--negative
 * "-blurry"`, `merge --alpha -0.5`).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { repoRoot } from '../helpers/golden.js';
import { infotextOf, runCli, tiny } from './cli-helpers.js';

const small = ['--steps', '1', '--width', '64', '--height', '64', '--model', tiny];

/** An init image for the img2img cases (img2img reads it before checking the flags it sizes). */
const initPng = join(tmpdir(), `sdbad-init-${process.pid}.png`);
beforeAll(async () => {
  await sharp(Buffer.alloc(64 * 64 * 3, 128), { raw: { width: 64, height: 64, channels: 3 } })
    .png()
    .toFile(initPng);
});

/** [argv, exit code, fragment of the one stderr line]. */
const BAD: [string[], number, string | RegExp][] = [
  [['txt2img', 'x', '--batch-count', '100000'], 2, '--batch-count must be a whole number from 1 to 10000'],
  [['txt2img', 'x', '--clip-skip', '50'], 2, '--clip-skip must be a whole number from 1 to 12 (got 50)'],
  [['txt2img', 'x', '--steps', '-1'], 2, '--steps must be a whole number from 1 to 1000 (got -1)'],
  [['txt2img', 'x', '--seed', '-2'], 2, '--seed must be a whole number from -1'],
  [['txt2img', 'x', '--subseed', '-7'], 2, '--subseed must be'],
  [['txt2img', 'x', '--cfg', '0x10'], 2, '--cfg needs a number (got "0x10")'],
  [['txt2img', 'x', '--cfg', 'Infinity'], 2, '--cfg needs a number'],
  [['txt2img', 'x', '--steps', '1e'], 2, '--steps needs a number'],
  [['txt2img', 'x', '--width', '65'], 2, '--width must be a multiple of 8 (got 65); try 64'],
  [['txt2img', 'x', '--stpes', '5'], 2, 'unknown option --stpes (did you mean --steps?)'],
  [['txt2img', 'x', '--bogus'], 2, 'unknown option --bogus;'],
  [['txt2img', 'x', '--sampler', 'Eulr a'], 2, '--sampler "Eulr a" is unknown (did you mean "Euler a"?)'],
  [['txt2img', 'x', '--scheduler', 'karas'], 2, '--scheduler "karas" is unknown (did you mean "Karras"?)'],
  [
    ['txt2img', 'x', '--hires-sampler', 'DDIMM'],
    2,
    '--hires-sampler "DDIMM" is unknown (did you mean "DDIM"?)',
  ],
  [['txt2img', 'x', '--rng', 'tpu'], 2, '--rng must be one of GPU, CPU, NV'],
  [
    ['txt2img', 'x', '--emphasis', 'strong'],
    2,
    '--emphasis must be one of Original, "No norm", Ignore, None',
  ],
  [['txt2img', 'x', '--s-min-uncond', '-1'], 2, '--s-min-uncond must be 0 to'],
  [['txt2img', 'x', '--token-merging', '2'], 2, '--token-merging must be 0 to 0.9'],
  [['txt2img', 'x', '--hires-scale', '99'], 2, '--hires-scale must be 0.05 to 8'],
  [['txt2img', 'x', '--seed'], 2, '--seed needs a value'],
  [['txt2img', 'x', '--negative', '--steps', '3'], 2, '--negative needs a value (got the option --steps)'],
  [['txt2img', 'x', '--tiling=yes'], 2, '--tiling takes no value'],
  [['txt2img', 'x', '--denoise', '0.5'], 2, '--denoise is an img2img option'],
  [['img2img', initPng, '--prompt', 'x', '--hires'], 2, 'the hires fix is a txt2img option'],
  [['img2img', initPng, '--prompt', 'x', '--resize-mode', 'crop'], 2, '--resize-mode must be one of'],
  [['img2img', initPng, '--prompt', 'x', '--mask-blur', '-3'], 2, '--mask-blur must be a whole number'],
  [['merge', 'a', 'b', '--alpha', '0x1', '--out', 'o.safetensors'], 2, '--alpha needs a number (got "0x1")'],
  [['merge', 'a', 'b', '--alpha', '--out', 'o.safetensors'], 2, '--alpha needs a value'],
  [['hash', '--jsn', 'f'], 2, 'unknown option --jsn (did you mean --json?)'],
  [['txt2im', 'x'], 2, 'unknown command "txt2im" (did you mean "txt2img"?)'],
];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `main(argv)` in this process with stdout/stderr captured: the same dispatch, parsing and error
 * line as the bin, without a process start per case (a few cases below also run as processes).
 */
async function runMain(argv: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const { write: outWrite } = process.stdout;
  const { write: errWrite } = process.stderr;
  process.stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof outWrite;
  process.stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof errWrite;
  let code: number;
  try {
    code = await main(argv);
  } catch (e) {
    err.push(`sdstudio: internal error: ${(e as Error).stack ?? String(e)}\n`);
    code = 70;
  } finally {
    process.stdout.write = outWrite;
    process.stderr.write = errWrite;
  }
  return { code, stdout: out.join(''), stderr: err.join('') };
}

function expectBad(r: Run, code: number, msg: string | RegExp): void {
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.code, r.stderr).toBe(code);
  if (typeof msg === 'string') expect(lines[0]).toContain(msg);
  else expect(lines[0]).toMatch(msg);
  expect(r.stderr).not.toMatch(/internal error|at .*\.ts:\d+/);
}

describe('bad command lines: one line naming what was typed, and the exit code', () => {
  it.each(
    BAD.map(([argv, code, msg]) => [argv.join(' ').replace(initPng, 'INIT.png'), argv, code, msg] as const),
  )('%s', async (_name, argv, code, msg) => {
    expectBad(await runMain(argv), code, msg);
  });

  it('the same from a real process (bin/sdstudio.js)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdbad-'));
    const picked = [BAD[0]!, BAD[5]!, BAD[9]!, BAD[26]!];
    const runs = await Promise.all(picked.map(([argv]) => runCli(argv, dir)));
    runs.forEach((r, i) => expectBad(r, picked[i]![1], picked[i]![2]));
  });
});

describe('option values that start with "-"', () => {
  it('txt2img --seed -1 --subseed -1 --negative "-blurry" runs and records them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sddash-'));
    const r = await runCli(
      ['txt2img', 'x', ...small, '--seed', '-1', '--subseed', '-1', '--negative', '-blurry', '--no-grid'],
      dir,
    );
    expect(r.code, r.stderr).toBe(0);
    const [path] = r.stdout.trim().split('\n');
    const info = await infotextOf(path!);
    expect(info['Negative prompt']).toBe('-blurry');
    expect(Number(info.Seed)).toBeGreaterThanOrEqual(0);
  });

  it('merge --alpha -0.5 extrapolates', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sddash-'));
    const out = join(dir, 'm.safetensors');
    const r = await runCli(['merge', tiny, tiny, '--alpha', '-0.5', '--out', out], dir);
    expect(r.code, r.stderr).toBe(0);
    const header = (await readFile(out)).subarray(8, 8 + 4096).toString('latin1');
    expect(header).toMatch(/multiplier\\?": -0\.5/);
  });

  it("sdstudio --version and -v print package.json's version", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdver-'));
    const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-v']) {
      const r = await runCli([flag], dir);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`sdstudio ${pkg.version}\n`);
    }
  });
});
