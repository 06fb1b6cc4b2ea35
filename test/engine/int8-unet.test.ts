/**
 * The opt-in int8 UNet: the weight quantizer's layout, the channels-last graph it needs (checked
 * in float32 against the reference NCHW graph), the int8 graph's accuracy against float32 on the
 * tiny checkpoint, and its weights-cache entry.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { buildUNetGraph, type UNetPrecision } from '../../src/models/unet.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { Int8WeightSource, int8WeightLimit, quantizeWeight } from '../../src/runtime/quantize.js';
import { existsSync, readFileSync } from 'node:fs';
import { loadSd1, type Sd1LoadOptions, type Sd1Model, type TensorF32 } from '../../src/runtime/sd1.js';
import { prepareModel, WeightsCache } from '../../src/runtime/weights.js';
import { goldenPath } from '../helpers/golden.js';
import { psnr } from '../helpers/psnr.js';
import { sharedModels } from '../helpers/shared-models.js';
import { errors, TINY } from './golden.js';

const ckpt = goldenPath(TINY, 'tiny-sd.safetensors');
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-int8-test-'));
let src: TensorSource;

beforeAll(async () => {
  src = await openSafetensors(ckpt);
});

afterAll(async () => {
  await src.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));

// One loaded model per precision for the whole file (its sessions, tiled ones too, are reused).
const models = sharedModels<Sd1Model>();
afterAll(() => models.releaseAll());

async function unetEps(
  precision: UNetPrecision,
  h: number,
  w: number,
  opts: Partial<Sd1LoadOptions> & { tiling?: boolean } = {},
): Promise<TensorF32> {
  const { tiling, ...load } = opts;
  const m0 = await models.get([precision, load], () =>
    loadSd1(ckpt, { unetPrecision: precision, cacheDir, threads: 2, ...load }),
  );
  const m = m0.withTiling(!!tiling);
  const cd = m.config.unet.contextDim;
  return await m.unet({
    x: { data: wave(2 * 4 * h * w, 1), dims: [2, 4, h, w] },
    t: { data: new Float32Array([10, 900]), dims: [2] },
    context: { data: wave(2 * 77 * cd, 0.7), dims: [2, 77, cd] },
  });
}

describe('int8 weight quantizer', () => {
  it('lays a conv weight out as im2col rows (dy, dx, ci) × output channels, within half a step', () => {
    const [O, I, k] = [3, 2, 3];
    const w = wave(O * I * k * k, 0.9);
    const { q, scale } = quantizeWeight(w, [O, I, k, k]);
    expect(q.length).toBe(O * I * k * k);
    for (let o = 0; o < O; o++) {
      let max = 0;
      for (let i = 0; i < I * k * k; i++) max = Math.max(max, Math.abs(w[o * I * k * k + i]!));
      expect(scale[o]).toBeCloseTo(max / 127, 7);
      for (let ci = 0; ci < I; ci++) {
        for (let dy = 0; dy < k; dy++) {
          for (let dx = 0; dx < k; dx++) {
            const orig = w[((o * I + ci) * k + dy) * k + dx]!;
            const row = (dy * k + dx) * I + ci;
            expect(Math.abs(q[row * O + o]! * scale[o]! - orig)).toBeLessThanOrEqual(scale[o]! / 2 + 1e-7);
          }
        }
      }
    }
  });

  it('transposes a Linear weight to [in, out] and gives an all-zero channel scale 1', () => {
    const w = new Float32Array([0, 0, 0, 1, -2, 0.5]); // [out 2, in 3]
    const { q, scale } = quantizeWeight(w, [2, 3]);
    expect(scale[0]).toBe(1);
    expect(scale[1]).toBeCloseTo(2 / 127, 7);
    expect(Array.from(q)).toEqual([0, 64, 0, -127, 0, 32]);
  });

  it('keeps weights within ±63 where the CPU lacks VNNI (int16 pair sums would saturate)', () => {
    const w = wave(4 * 50, 0.37);
    const { q, scale } = quantizeWeight(w, [4, 50], 63);
    expect(Math.max(...Array.from(q, Math.abs))).toBe(63);
    for (let o = 0; o < 4; o++) {
      for (let i = 0; i < 50; i++) {
        expect(Math.abs(q[i * 4 + o]! * scale[o]! - w[o * 50 + i]!)).toBeLessThanOrEqual(
          scale[o]! / 2 + 1e-7,
        );
      }
    }
    const limit = int8WeightLimit();
    if (process.arch === 'x64' && existsSync('/proc/cpuinfo')) {
      const vnni = /\b(avx512_vnni|avx_vnni|amx_int8)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
      expect(limit).toBe(vnni ? 127 : 63);
    } else expect([63, 127]).toContain(limit);
  });

  it('exposes #q8 / #q8scale views of the checkpoint, derived from its file', () => {
    const s = new Int8WeightSource(src);
    const key = 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight';
    const base = src.info(key)!;
    expect(s.info(`${key}#q8`)).toEqual({
      name: `${key}#q8`,
      dtype: 'I8',
      shape: [base.shape[1]! * 9, base.shape[0]!],
    });
    expect(s.info(`${key}#q8scale`)?.shape).toEqual([base.shape[0]]);
    expect(s.location(`${key}#q8`)).toBeUndefined();
    expect(s.derivedFrom(`${key}#q8`)?.path).toBe(src.location(key)!.path);
    expect(s.info('model.diffusion_model.out.0.weight#q8')).toBeUndefined(); // 1-D: not quantizable
  });

  it('takes row ranges (@rows=a:b) of a layer: the same values as the whole layer’s rows', async () => {
    const s = new Int8WeightSource(src);
    const key = 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.0.proj';
    const [out, inF] = src.info(`${key}.weight`)!.shape as [number, number];
    const half = out / 2;
    const whole = await s.read(`${key}.weight#q8`); // [in, out]
    const part = await s.read(`${key}.weight@rows=${half}:${out}#q8`); // [in, out/2]
    expect(part.shape).toEqual([inF, half]);
    for (let k = 0; k < inF; k++) {
      for (let o = 0; o < half; o++) expect(part.data[k * half + o]).toBe(whole.data[k * out + half + o]);
    }
    const bias = await s.readFloat32(`${key}.bias@rows=0:${half}`);
    expect(Array.from(bias)).toEqual(Array.from((await src.readFloat32(`${key}.bias`)).subarray(0, half)));
    expect(s.info(`${key}.bias@rows=0:${out + 1}`)).toBeUndefined(); // past the end
  });
});

describe('channels-last UNet graph (float32)', () => {
  it('equals the NCHW graph on a 16×16 latent', async () => {
    const ref = await unetEps('fp32', 16, 16);
    const nhwc = await unetEps('nhwc', 16, 16);
    expect(nhwc.dims).toEqual(ref.dims);
    expect(errors(nhwc.data, ref.data).maxAbs).toBeLessThan(1e-4);
  });

  it('equals it on a size that does not halve evenly (skip resizes) and with seamless tiling', async () => {
    const ref = await unetEps('fp32', 12, 20);
    const nhwc = await unetEps('nhwc', 12, 20);
    expect(errors(nhwc.data, ref.data).maxAbs).toBeLessThan(1e-4);
    const refTiled = await unetEps('fp32', 16, 16, { tiling: true });
    const nhwcTiled = await unetEps('nhwc', 16, 16, { tiling: true });
    expect(errors(nhwcTiled.data, refTiled.data).maxAbs).toBeLessThan(1e-4);
    // Tiling changes the result, so the comparison above is not of two untiled graphs.
    expect(errors(refTiled.data, (await unetEps('fp32', 16, 16)).data).maxAbs).toBeGreaterThan(1e-3);
  });

  it('gives the same block outputs (debug) in NCHW', async () => {
    const cfg = sd1ConfigFromTensors(src);
    const names = ['model.diffusion_model.input_blocks.3', 'model.diffusion_model.middle_block'];
    const run = async (precision: UNetPrecision) => {
      const m = await loadSd1(ckpt, { unetPrecision: precision, cacheDir, debug: true, threads: 2 });
      try {
        const cd = cfg.unet.contextDim;
        return await m.unetOutputs(
          {
            x: { data: wave(2 * 4 * 16 * 16, 1), dims: [2, 4, 16, 16] },
            t: { data: new Float32Array([10, 900]), dims: [2] },
            context: { data: wave(2 * 77 * cd, 0.7), dims: [2, 77, cd] },
          },
          names,
        );
      } finally {
        await m.release();
      }
    };
    const ref = await run('fp32');
    const nhwc = await run('nhwc');
    for (const n of names) {
      expect(nhwc[n]!.dims).toEqual(ref[n]!.dims);
      expect(errors(nhwc[n]!.data, ref[n]!.data).maxAbs).toBeLessThan(1e-4);
    }
  });
});

describe('int8 UNet', () => {
  it('stays within 30 dB PSNR of float32 on the tiny checkpoint, and is really int8', async () => {
    for (const [h, w] of [
      [16, 16],
      [12, 20],
    ] as const) {
      const ref = await unetEps('fp32', h, w);
      const q = await unetEps('int8', h, w);
      const p = psnr(q.data, ref.data);
      expect(p).toBeGreaterThan(30);
      expect(p).toBeLessThan(80); // float32-exact would be ~130 dB: the int8 kernels did run
    }
  });

  it('wraps its quantized convolutions around the edges for seamless tiling', async () => {
    const ref = await unetEps('fp32', 16, 16, { tiling: true });
    const q = await unetEps('int8', 16, 16, { tiling: true });
    expect(psnr(q.data, ref.data)).toBeGreaterThan(30);
    // …and it is really the tiled graph: far from the untiled fp32 result.
    expect(psnr(q.data, (await unetEps('fp32', 16, 16)).data)).toBeLessThan(psnr(q.data, ref.data) - 3);
  });

  it('quantizes a checkpoint once: the int8 weights cache entry is found again, keyed by the file', async () => {
    const cfg = sd1ConfigFromTensors(src);
    const g = buildUNetGraph(new Int8WeightSource(src), cfg.unet, { precision: 'int8' });
    const params = [...g.params.values()];
    expect(params.some((p) => p.dtype === 'I8')).toBe(true);
    // The tiny UNet's int8 weights are small enough to travel inside the model bytes…
    expect((await prepareModel(g, 'test-int8', { cacheDir })).placement).toBe('in-place+overlay');
    // …a full-size one's (0.86 GB) go to the weights cache: written once, then found by identity.
    const notices: string[] = [];
    const cache = new WeightsCache({ cacheDir, onNotice: (m) => notices.push(m) });
    const first = await cache.ensure(g.source, params, 'test-int8');
    const second = await cache.ensure(new Int8WeightSource(src), params, 'test-int8');
    // The one-time conversion is announced once (a CLI prints it), the cache hit silently.
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/tiny-sd\.safetensors.*once per checkpoint/);
    expect(first.ephemeral).toBe(false);
    expect(second.hit).toBe(true);
    expect(second.entry).toBe(first.entry);
    const key = params.find((p) => p.dtype === 'I8')!.key;
    const [, length] = second.index[key]!;
    expect(length).toBe((await g.source.read(key)).data.byteLength); // stored as int8, not float32
  });

  it('is refused on a GPU provider with a message that says what to use', async () => {
    const m = await loadSd1(ckpt, { unetPrecision: 'int8', cacheDir, provider: 'webgpu' });
    try {
      await expect(
        m.unet({
          x: { data: new Float32Array(2 * 4 * 8 * 8), dims: [2, 4, 8, 8] },
          t: { data: new Float32Array([1, 1]), dims: [2] },
          context: {
            data: new Float32Array(2 * 77 * m.config.unet.contextDim),
            dims: [2, 77, m.config.unet.contextDim],
          },
        }),
      ).rejects.toThrow(/int8 UNet runs on the CPU provider only/);
    } finally {
      await m.release();
    }
  });
});
