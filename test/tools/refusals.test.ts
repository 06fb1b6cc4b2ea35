/**
 * Inputs that used to be accepted silently: a --discard that leaves nothing, numbers in a notation
 * no user means (0x10, Infinity), and temporary files of killed writers left next to their output.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withDefaults } from '../../src/params/generation.js';
import { convertModel } from '../../src/tools/convert.js';
import { mergeModels } from '../../src/tools/merge.js';
import { removeStaleTemps, writeFileAtomic } from '../../src/util/atomic-write.js';
import { UserError } from '../../src/util/errors.js';
import { parseDecimal } from '../../src/util/numbers.js';
import { goldenPath } from '../helpers/golden.js';
import { runCli } from '../pipeline/cli-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-refusals-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  expect(r.pid).toBeGreaterThan(0);
  return r.pid!;
}

describe('refusals', () => {
  it('merge --discard matching every tensor is refused: the model would be empty; nothing written', async () => {
    const out = join(dir, 'empty.safetensors');
    for (const discard of ['.', '.*', '^']) {
      const r = mergeModels({ a: tiny }, out, {
        mode: 'no-interp',
        alpha: 0,
        discard: discard || '.*',
        cacheDir: dir,
      });
      await expect(r, discard).rejects.toThrow(UserError);
      await expect(r, discard).rejects.toThrow(/would be empty/);
    }
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('empty'))).toEqual([]);
  });

  it('numbers are plain decimals: hex, binary, octal, Infinity and blanks are not numbers', () => {
    for (const [text, want] of [
      ['16', 16],
      [' -0.5 ', -0.5],
      ['+3', 3],
      ['.5', 0.5],
      ['7.', 7],
      ['1e3', 1000],
      ['2.5E-1', 0.25],
    ] as const)
      expect(parseDecimal(text), text).toBe(want);
    for (const text of [
      '0x10',
      '0b1',
      '0o7',
      'Infinity',
      '-Infinity',
      'NaN',
      '',
      ' ',
      '1_000',
      '1,5',
      '--5',
      '1e',
      'e3',
      '0x',
    ])
      expect(parseDecimal(text), text).toBeNaN();
    expect(() => withDefaults({ cfg_scale: '0x10' as unknown as number })).toThrow(UserError);
    expect(withDefaults({ cfg_scale: '6.5' as unknown as number }).cfg_scale).toBe(6.5);
  });

  it('sdstudio: --cfg 0x10 and merge --alpha 0x1 / Infinity are one-line errors (exit 2)', async () => {
    const out = join(dir, 'never.safetensors');
    const cases: [string[], RegExp][] = [
      [['txt2img', 'a cube', '--model', tiny, '--cfg', '0x10'], /--cfg needs a number \(got "0x10"\)/],
      [['txt2img', 'a cube', '--model', tiny, '--steps', '0b11'], /--steps needs a number/],
      [['merge', tiny, tiny, '--alpha', '0x1', '--out', out], /--alpha needs a number \(got "0x1"\)/],
      [['merge', tiny, tiny, '--alpha', 'Infinity', '--out', out], /--alpha needs a number/],
    ];
    const runs = await Promise.all(cases.map(([args]) => runCli(args, dir)));
    runs.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(message);
    });
    expect(existsSync(out)).toBe(false);
  });

  it("a killed writer's <out>.tmp-<pid> is removed by the next write of <out>; a live writer's is kept", async () => {
    const out = join(dir, 'converted.safetensors');
    const stale = `${out}.tmp-${deadPid()}`;
    const live = `${out}.tmp-${process.ppid}`;
    const other = `${out}.tmp-notapid`;
    for (const f of [stale, live, other]) writeFileSync(f, 'partial');
    await convertModel(tiny, out, { dtype: 'fp16' });
    expect(existsSync(out)).toBe(true);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(other)).toBe(true);

    const file = join(dir, 'styles.csv');
    const staleText = `${file}.tmp-${deadPid()}`;
    writeFileSync(staleText, 'partial');
    await writeFileAtomic(file, 'name,prompt\n');
    expect(existsSync(staleText)).toBe(false);
    expect(removeStaleTemps(join(dir, 'no-such-folder', 'x'))).toEqual([]);
  });
});
