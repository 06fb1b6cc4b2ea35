/**
 * A1111's "Token merging ratio" settings through the pipeline's front doors: which ratio each
 * sampling pass uses, validation, the infotext keys (written as A1111 writes them, read back into
 * override_settings), and `sdstudio txt2img --token-merging` end to end on the tiny checkpoint.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paramsFromInfotext, paramsToInfotextFields } from '../../src/infotext/infotext-fields.js';
import { tokenMergingRatioOf, validateParams, withDefaults } from '../../src/params/generation.js';
import { formatInfotext, parseInfotext } from '../../src/infotext/infotext.js';
import { UserError } from '../../src/util/errors.js';
import { infotextOf, runCli, tiny, txt2imgOne } from './cli-helpers.js';

const base = { prompt: 'a cube', seed: 5, steps: 3, width: 64, height: 64 };
const extras = { mode: 'txt2img' as const, modelHash: '0123456789', modelName: 'tiny', version: 'v' };

describe('token merging ratio of a pass', () => {
  it('follows A1111: hires falls back to the base ratio, img2img takes the base one over its own', () => {
    const p = (o: Record<string, number>) => withDefaults({ ...base, override_settings: o });
    expect(tokenMergingRatioOf(p({}), 'txt2img')).toBe(0);
    expect(tokenMergingRatioOf(p({ token_merging_ratio: 0.5 }), 'txt2img')).toBe(0.5);
    expect(tokenMergingRatioOf(p({ token_merging_ratio: 0.5 }), 'hires')).toBe(0.5);
    expect(tokenMergingRatioOf(p({ token_merging_ratio: 0.5, token_merging_ratio_hr: 0.3 }), 'hires')).toBe(
      0.3,
    );
    expect(tokenMergingRatioOf(p({ token_merging_ratio_hr: 0.3 }), 'txt2img')).toBe(0);
    expect(tokenMergingRatioOf(p({ token_merging_ratio_img2img: 0.4 }), 'img2img')).toBe(0.4);
    expect(
      tokenMergingRatioOf(p({ token_merging_ratio_img2img: 0.4, token_merging_ratio: 0.2 }), 'img2img'),
    ).toBe(0.2);
    expect(tokenMergingRatioOf(p({ token_merging_ratio_img2img: 0.4 }), 'txt2img')).toBe(0);
  });

  it('refuses a ratio outside 0 … 0.9 naming the setting', () => {
    for (const key of ['token_merging_ratio', 'token_merging_ratio_img2img', 'token_merging_ratio_hr']) {
      for (const bad of [-0.1, 0.95, Number.NaN, 'half']) {
        // withDefaults validates what it returns.
        const make = () => withDefaults({ ...base, override_settings: { [key]: bad } });
        expect(make).toThrow(UserError);
        expect(make).toThrow(new RegExp(`${key} \\(token merging\\) must be 0 to 0.9`));
      }
      expect(() =>
        validateParams(withDefaults({ ...base, override_settings: { [key]: 0.9 } })),
      ).not.toThrow();
    }
  });
});

describe('"Token merging ratio" infotext keys', () => {
  const text = (fields: Record<string, string | number | boolean>) =>
    formatInfotext({ prompt: base.prompt, negativePrompt: '', params: fields });

  it('are absent at 0, so the infotext stays as before', () => {
    const fields = paramsToInfotextFields(withDefaults(base), extras);
    expect(Object.keys(fields).some((k) => k.startsWith('Token merging'))).toBe(false);
  });

  it('sit after ENSD and before RNG/Tiling as A1111 orders them, "hr" only with the hires fix', () => {
    const o = { token_merging_ratio: 0.5, eta_noise_seed_delta: 31337, randn_source: 'CPU' };
    const plain = paramsToInfotextFields(
      withDefaults({ ...base, sampler_name: 'Euler a', override_settings: o }),
      extras,
    );
    const keys = Object.keys(plain);
    expect(plain['Token merging ratio']).toBe(0.5);
    expect(plain['Token merging ratio hr']).toBeUndefined();
    expect(keys.indexOf('Token merging ratio')).toBe(keys.indexOf('ENSD') + 1);
    expect(keys.indexOf('RNG')).toBe(keys.indexOf('Token merging ratio') + 1);

    const hires = paramsToInfotextFields(
      withDefaults({ ...base, enable_hr: true, override_settings: { token_merging_ratio: 0.5 } }),
      extras,
    );
    expect(hires['Token merging ratio hr']).toBe(0.5);
    const img2img = paramsToInfotextFields(
      withDefaults({ ...base, override_settings: { token_merging_ratio_img2img: 0.3 } }),
      { ...extras, mode: 'img2img' },
    );
    expect(img2img['Token merging ratio']).toBe(0.3);
  });

  it('are read back into override_settings; a malformed value is skipped', () => {
    const fields = paramsToInfotextFields(
      withDefaults({
        ...base,
        enable_hr: true,
        override_settings: { token_merging_ratio: 0.5, token_merging_ratio_hr: 0.3 },
      }),
      extras,
    );
    const back = paramsFromInfotext(parseInfotext(text(fields)));
    expect(back.override_settings).toMatchObject({ token_merging_ratio: 0.5, token_merging_ratio_hr: 0.3 });
    const hostile = paramsFromInfotext(
      parseInfotext(text({ Steps: 3, Sampler: 'Euler', Seed: 1, 'Token merging ratio': 'lots' })),
    );
    expect(hostile.override_settings?.token_merging_ratio).toBeUndefined();
  });
});

describe('sdstudio txt2img --token-merging', () => {
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sdcli-tome-'));
    env = { SDSTUDIO_CACHE: join(dir, 'cache') };
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const small = [
    '--steps',
    '3',
    '--width',
    '64',
    '--height',
    '64',
    '--model',
    tiny,
    '--no-grid',
    '--seed',
    '9',
  ];
  const generateOne = (args: string[]) => txt2imgOne(args, dir, env);

  it('changes the image, records the ratio, and --params reproduces it', async () => {
    const [plain, merged] = await Promise.all([
      generateOne(['a red cube', ...small]),
      generateOne(['a red cube', ...small, '--token-merging', '0.5']),
    ]);
    expect((await readFile(merged)).equals(await readFile(plain))).toBe(false);
    expect((await infotextOf(merged))['Token merging ratio']).toBe('0.5');
    expect((await infotextOf(plain))['Token merging ratio']).toBeUndefined();
    const again = await generateOne(['--params', merged, '--model', tiny, '--no-grid']);
    expect((await readFile(again)).equals(await readFile(merged))).toBe(true);
  });

  it('a bad ratio: one line, exit code 2', async () => {
    for (const bad of ['2', 'half']) {
      const r = await runCli(['txt2img', 'x', ...small, '--token-merging', bad], dir, env);
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/token.merging/);
    }
  });
});
