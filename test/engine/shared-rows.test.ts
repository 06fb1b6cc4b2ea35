/**
 * CFG rows that share latent and timestep are computed once up to the first cross-attention
 * (UNetBuildOptions.sharedRows): the result must equal the plain graph's on every row.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { buildUNetGraph, UNET_IO, type UNetPrecision } from '../../src/models/unet.js';
import { Int8WeightSource } from '../../src/runtime/quantize.js';
import { loadSd1, sharedRows } from '../../src/runtime/sd1.js';
import { createSession, f32 } from '../../src/runtime/session.js';
import { prepareModel } from '../../src/runtime/weights.js';
import { goldenPath } from '../helpers/golden.js';
import { errors, TINY } from './golden.js';

const ckpt = goldenPath(TINY, 'tiny-sd.safetensors');
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-shared-rows-test-'));
let src: TensorSource;

beforeAll(async () => {
  src = await openSafetensors(ckpt);
});

afterAll(async () => {
  await src.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

const wave = (n: number, f: number, phase = 0) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + phase));

describe('sharedRows', () => {
  it('maps rows with bit-identical latent and timestep to their first occurrence', () => {
    const n = 3;
    const x = new Float32Array([...wave(n, 1), ...wave(n, 2), ...wave(n, 1), ...wave(n, 1)]);
    const t = new Float32Array([5, 5, 5, 7]);
    const r = sharedRows({ data: x, dims: [4, n] }, { data: t, dims: [4] });
    expect(r.distinct).toEqual([0, 1, 3]); // row 3 has the latent of row 0 but another timestep
    expect(r.rows).toEqual([0, 1, 0, 2]);
    const distinct = sharedRows(
      { data: wave(2 * n, 0.3), dims: [2, n] },
      { data: t.subarray(0, 2), dims: [2] },
    );
    expect(distinct.rows).toEqual([0, 1]);
    // 0 and -0 are different bits: not merged (the graph would see different inputs).
    const signed = sharedRows(
      { data: new Float32Array([0, -0]), dims: [2, 1] },
      { data: new Float32Array([1, 1]), dims: [2] },
    );
    expect(signed.distinct).toEqual([0, 1]);
  });
});

/** eps of the plain graph (every row computed) for `precision`. */
async function plainEps(
  precision: UNetPrecision,
  x: Float32Array,
  t: Float32Array,
  context: Float32Array,
  dims: number[],
) {
  const cfg = sd1ConfigFromTensors(src);
  const source = precision === 'int8' ? new Int8WeightSource(src) : src;
  const g = buildUNetGraph(source, cfg.unet, { precision });
  const session = await createSession(await prepareModel(g, `test-shared-${precision}`, { cacheDir }), {
    threads: 2,
  });
  try {
    const b = dims[0]!;
    const out = await session.run({
      [UNET_IO.x]: f32(x, dims),
      [UNET_IO.t]: f32(t, [b]),
      [UNET_IO.context]: f32(context, [b, 77, cfg.unet.contextDim]),
    });
    return out[UNET_IO.eps]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe('UNet with shared CFG rows', () => {
  for (const precision of ['fp32', 'int8'] as const) {
    it(`equals the plain graph on every row (${precision}, 4 rows of 2 latents, distinct contexts)`, async () => {
      const cfg = sd1ConfigFromTensors(src);
      const [h, w] = [16, 16];
      const n = 4 * h * w;
      const a = wave(n, 1);
      const b = wave(n, 1.3, 0.5);
      const x = new Float32Array([...a, ...b, ...a, ...b]);
      const t = new Float32Array([10, 900, 10, 900]);
      const cd = cfg.unet.contextDim;
      const context = wave(4 * 77 * cd, 0.7);
      const dims = [4, 4, h, w];
      const m = await loadSd1(ckpt, { cacheDir, threads: 2, unetPrecision: precision });
      try {
        const shared = await m.unet({
          x: { data: x, dims },
          t: { data: t, dims: [4] },
          context: { data: context, dims: [4, 77, cd] },
        });
        const plain = await plainEps(precision, x, t, context, dims);
        expect(shared.dims).toEqual(dims);
        expect(errors(shared.data, plain).maxAbs).toBeLessThan(1e-5);
        // The rows with the same latent still differ (their contexts do): nothing was copied over.
        const rowDiff = errors(shared.data.subarray(0, n), shared.data.subarray(2 * n, 3 * n)).maxAbs;
        expect(rowDiff).toBeGreaterThan(1e-4);
      } finally {
        await m.release();
      }
    });
  }
});
