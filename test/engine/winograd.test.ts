/**
 * ops.conv3x3Winograd — Winograd F(2×2, 3×3) spelled in ONNX ops — against the direct 3×3 Conv it
 * replaces, and the UNet with Winograd levels against the one without (the tiny goldens run with
 * the default levels in conformance.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { conv2d } from '../../src/onnx/ops.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { loadSd1 } from '../../src/runtime/sd1.js';
import { goldenPath } from '../helpers/golden.js';
import { errors, TINY } from './golden.js';

const wave = (n: number, f: number, phase = 0) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + phase));
const f32Tensor = (shape: number[], data: Float32Array) => ({
  dtype: 'F32' as const,
  shape,
  data: new Uint8Array(data.buffer),
});

async function runConv(winograd: boolean, c: number, o: number, h: number, w: number) {
  const src = new MemoryTensorSource(
    new Map([
      ['conv.weight', f32Tensor([o, c, 3, 3], wave(o * c * 9, 0.71, 0.3))],
      ['conv.bias', f32Tensor([o], wave(o, 1.7))],
    ]),
  );
  const g = new GraphBuilder('conv', src);
  const y = conv2d(g, g.input('x', 'float32', [2, c, 'h', 'w']), 'conv', c, o, 3, { winograd });
  g.output(y, 'y', 'float32', [2, o, 'h', 'w']);
  const params = new Map(
    await Promise.all(
      [...g.params.values()].map(async (p) => [p.name, await src.readFloat32(p.key)] as const),
    ),
  );
  const model = g.toModel((p) => ({
    name: p.name,
    dims: p.dims,
    dataType: 1,
    rawData: new Uint8Array(params.get(p.name)!.buffer),
  }));
  const session = await ort.InferenceSession.create(encodeModel(model), { graphOptimizationLevel: 'all' });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', wave(2 * c * h * w, 0.29), [2, c, h, w]) });
    expect(out.y!.dims).toEqual([2, o, h, w]);
    return { data: out.y!.data as Float32Array, ops: g.nodes.map((n) => n.opType) };
  } finally {
    await session.release();
  }
}

describe('conv3x3Winograd', () => {
  for (const [c, o, h, w] of [
    [16, 16, 8, 8],
    [32, 48, 6, 10], // other output channels, non-square
    [5, 7, 2, 2], // one tile, channel counts off the SIMD width
  ] as const) {
    it(`equals the direct 3×3 convolution (${c}→${o} channels, ${h}×${w})`, async () => {
      const direct = await runConv(false, c, o, h, w);
      const wino = await runConv(true, c, o, h, w);
      expect(direct.ops).toEqual(['Conv']);
      expect(wino.ops).toContain('DepthToSpace'); // it really took the Winograd form
      // float32 rounding of a different summation order: ~1e-7 relative per value.
      const e = errors(wino.data, direct.data);
      const peak = direct.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(e.relL2).toBeLessThan(5e-6);
      expect(e.maxAbs).toBeLessThan(1e-5 * peak);
      expect(Math.max(...direct.data) - Math.min(...direct.data)).toBeGreaterThan(1);
    });
  }

  it('is not used where it does not apply: circular padding, stride 2, float16 or GPU forms', () => {
    const src = new MemoryTensorSource(
      new Map([
        ['conv.weight', f32Tensor([4, 4, 3, 3], wave(144, 0.7))],
        ['conv.bias', f32Tensor([4], wave(4, 1.1))],
      ]),
    );
    const build = (opts: ConstructorParameters<typeof GraphBuilder>[2], stride = 1) => {
      const g = new GraphBuilder('conv', src, opts);
      conv2d(g, g.input('x', 'float32', [1, 4, 8, 8]), 'conv', 4, 4, 3, { winograd: true, stride });
      return g.nodes.some((n) => n.opType === 'DepthToSpace');
    };
    expect(build({})).toBe(true);
    expect(build({ circularPadding: true })).toBe(false);
    expect(build({}, 2)).toBe(false);
    expect(build({ float16: true })).toBe(false);
    expect(build({ cpuForms: false })).toBe(false);
  });
});

describe('UNet with Winograd levels (tiny checkpoint)', () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-winograd-test-'));
  afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

  it('gives the direct UNet’s eps within 5e-6 relative (the goldens allow 2e-5), at every level count', async () => {
    const inputs = {
      x: { data: wave(2 * 4 * 16 * 24, 0.3), dims: [2, 4, 16, 24] },
      t: { data: new Float32Array([10, 900]), dims: [2] },
      context: { data: wave(2 * 77 * 64, 0.7), dims: [2, 77, 64] },
    };
    const eps = async (winogradLevels: number) => {
      const m = await loadSd1(goldenPath(TINY, 'tiny-sd.safetensors'), {
        cacheDir,
        threads: 2,
        winogradLevels,
      });
      try {
        return (await m.unet(inputs)).data;
      } finally {
        await m.release();
      }
    };
    const direct = await eps(0);
    for (const levels of [1, 2, 3]) {
      const e = errors(await eps(levels), direct);
      expect(e.relL2, `${levels} levels`).toBeLessThan(5e-6);
      expect(e.relL2, `${levels} levels`).toBeGreaterThan(0); // a different graph did run
    }
  });
});
