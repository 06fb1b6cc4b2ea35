/**
 * The UNet precision choice below the CLI: parsing a user's value, the provider rules (int8 on the
 * CPU only, fp16 on GPU providers only and their default), the infotext key (written for int8 and
 * fp16, read back tolerantly), and loadModel passing it on and refusing what a provider cannot run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  paramsFromInfotext,
  paramsToInfotextFields,
  unetPrecisionFromInfotext,
  UNET_PRECISION_KEY,
} from '../../src/infotext/infotext-fields.js';
import { loadModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import {
  checkPrecisionProvider,
  defaultPrecision,
  precisionRunsOn,
  unetPrecisionOf,
  UNET_PRECISIONS,
} from '../../src/params/unet-precision.js';
import { formatInfotext, parseInfotext } from '../../src/infotext/infotext.js';
import { UserError } from '../../src/util/errors.js';
import { clipVocabPath } from '../helpers/golden.js';
import { loadTinyModel } from '../helpers/tiny-model.js';

let cacheDir: string;

beforeAll(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'sd-precision-'));
});

afterAll(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

const params = withDefaults({ prompt: 'a cube', seed: 5, steps: 3, width: 64, height: 64 });
const extras = { mode: 'txt2img' as const, modelHash: '0123456789', modelName: 'tiny', version: 'v' };

function textOf(fields: Record<string, string | number | boolean>): string {
  return formatInfotext({ prompt: params.prompt, negativePrompt: '', params: fields });
}

describe('unetPrecisionOf', () => {
  it('takes every allowed value (any case), and names them when refusing another', () => {
    for (const p of UNET_PRECISIONS) {
      expect(unetPrecisionOf(p)).toBe(p);
      expect(unetPrecisionOf(` ${p.toUpperCase()} `)).toBe(p);
    }
    expect(UNET_PRECISIONS).toEqual(['fp32', 'fp16', 'int8']);
    for (const bad of ['int4', 'nhwc', 'bf16', '']) {
      expect(() => unetPrecisionOf(bad)).toThrow(UserError);
      expect(() => unetPrecisionOf(bad)).toThrow(
        new RegExp(`--precision must be ${UNET_PRECISIONS.join(', ')}`),
      );
    }
  });
});

describe('precision and provider', () => {
  it('defaults to fp32 on the CPU and fp16 on GPU providers, as A1111 does', () => {
    expect(defaultPrecision(undefined)).toBe('fp32');
    expect(defaultPrecision('cpu')).toBe('fp32');
    for (const gpu of ['cuda', 'webgpu', 'dml', 'coreml']) expect(defaultPrecision(gpu)).toBe('fp16');
  });

  it('runs int8 on the CPU only, fp16 off it only, fp32 everywhere; refuses the rest with a way out', () => {
    for (const provider of [undefined, 'cpu', 'cuda', 'webgpu']) {
      const cpu = provider === undefined || provider === 'cpu';
      expect(precisionRunsOn('fp32', provider)).toBe(true);
      expect(precisionRunsOn('int8', provider)).toBe(cpu);
      expect(precisionRunsOn('fp16', provider)).toBe(!cpu);
      for (const p of UNET_PRECISIONS) {
        if (precisionRunsOn(p, provider)) expect(() => checkPrecisionProvider(p, provider)).not.toThrow();
        else expect(() => checkPrecisionProvider(p, provider)).toThrow(UserError);
      }
    }
    expect(() => checkPrecisionProvider('fp16', 'cpu')).toThrow(
      /needs a GPU provider.*--precision fp32 or int8/,
    );
    expect(() => checkPrecisionProvider('int8', 'cuda')).toThrow(
      /--precision fp16 or fp32 with --provider cuda/,
    );
  });
});

describe('"UNet precision" infotext key', () => {
  it('is absent for fp32, so the infotext is the same as without it', () => {
    const plain = paramsToInfotextFields(params, extras);
    const fp32 = paramsToInfotextFields(params, { ...extras, unetPrecision: 'fp32' });
    expect(fp32).toEqual(plain);
    expect(textOf(fp32)).toBe(textOf(plain));
    expect(textOf(fp32)).not.toContain(UNET_PRECISION_KEY);
  });

  for (const precision of ['int8', 'fp16'] as const) {
    it(`is written for ${precision} just before Version, and read back; other parameters are unchanged`, () => {
      const plain = paramsToInfotextFields(params, extras);
      const fields = paramsToInfotextFields(params, { ...extras, unetPrecision: precision });
      const keys = Object.keys(fields);
      expect(fields[UNET_PRECISION_KEY]).toBe(precision);
      expect(keys.indexOf(UNET_PRECISION_KEY)).toBe(keys.indexOf('Version') - 1);
      const { [UNET_PRECISION_KEY]: _, ...rest } = fields;
      expect(rest).toEqual(plain);

      const parsed = parseInfotext(textOf(fields));
      expect(unetPrecisionFromInfotext(parsed)).toBe(precision);
      expect(paramsFromInfotext(parsed)).toEqual(paramsFromInfotext(parseInfotext(textOf(plain))));
      expect(unetPrecisionFromInfotext(parseInfotext(textOf(plain)))).toBeUndefined();
    });
  }

  it('ignores a value it does not know (hostile infotext) instead of failing', () => {
    // A1111 reads the last line as parameters only when it has at least 3 of them.
    const base = { Steps: 3, Sampler: 'Euler', Seed: 1 };
    for (const v of ['int4', '', 'nhwc', '"int8']) {
      const parsed = parseInfotext(textOf({ ...base, [UNET_PRECISION_KEY]: v }));
      expect(unetPrecisionFromInfotext(parsed)).toBeUndefined();
    }
    expect(unetPrecisionFromInfotext({ [UNET_PRECISION_KEY]: 8 })).toBeUndefined();
    expect(unetPrecisionFromInfotext(parseInfotext(textOf({ ...base, [UNET_PRECISION_KEY]: 'INT8' })))).toBe(
      'int8',
    );
  });
});

describe('loadModel unetPrecision', () => {
  it('refuses int8 off the CPU and fp16 on it before opening anything', async () => {
    const missing = join(cacheDir, 'no-such-model.safetensors');
    const int8OnGpu = loadModel({ checkpoint: missing, provider: 'webgpu', unetPrecision: 'int8', cacheDir });
    await expect(int8OnGpu).rejects.toBeInstanceOf(UserError);
    await expect(int8OnGpu).rejects.toThrow(/int8 UNet runs on the CPU provider only/);
    await expect(
      loadModel({ checkpoint: missing, clipVocab: clipVocabPath(), unetPrecision: 'nhwc' as 'int8' }),
    ).rejects.toThrow(/unetPrecision must be fp32, fp16, int8/);
    const fp16OnCpu = loadModel({ checkpoint: missing, unetPrecision: 'fp16', cacheDir });
    await expect(fp16OnCpu).rejects.toThrow(/fp16 needs a GPU provider/);
  });

  it('records the precision on the loaded model (fp32 by default)', async () => {
    const [plain, int8] = await Promise.all([
      loadTinyModel({ cacheDir, hash: false }),
      loadTinyModel({ cacheDir, hash: false, unetPrecision: 'int8' }),
    ]);
    try {
      expect(plain.precision).toBe('fp32');
      expect(int8.precision).toBe('int8');
    } finally {
      await Promise.all([plain.release(), int8.release()]);
    }
  });
});
