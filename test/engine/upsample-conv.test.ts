/**
 * ops.upsampleConv2x — nearest ×2 upsampling then a 3×3 convolution computed as four 2×2
 * convolutions at the input's resolution — against the plain Resize + Conv it replaces, with zero
 * and circular padding, on even and odd sizes.
 */
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { conv2d, upsampleConv2x, upsampleNearest2x } from '../../src/onnx/ops.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { upsamplePhaseKernel } from '../../src/runtime/quantize.js';

const [C, O] = [6, 5];
const f32Tensor = (shape: number[], data: Float32Array) => ({
  dtype: 'F32' as const,
  shape,
  data: new Uint8Array(data.buffer),
});
const wave = (n: number, f: number, phase = 0) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + phase));

async function run(
  form: 'phases' | 'resize',
  circular: boolean,
  h: number,
  w: number,
): Promise<Float32Array> {
  const src = new MemoryTensorSource(
    new Map([
      ['up.conv.weight', f32Tensor([O, C, 3, 3], wave(O * C * 9, 0.77, 0.2))],
      ['up.conv.bias', f32Tensor([O], wave(O, 1.3))],
    ]),
  );
  const g = new GraphBuilder('upsample', src, { circularPadding: circular });
  const x = g.input('x', 'float32', [2, C, 'h', 'w']);
  const y =
    form === 'phases'
      ? upsampleConv2x(g, x, 'up.conv', C, O)
      : conv2d(g, upsampleNearest2x(g, x), 'up.conv', C, O, 3);
  g.output(y, 'y', 'float32', [2, O, 'h2', 'w2']);
  const params = await Promise.all(
    [...g.params.values()].map(async (p) => [p.name, await src.readFloat32(p.key)] as const),
  );
  const byName = new Map(params);
  const model = g.toModel((p) => {
    const data = byName.get(p.name)!;
    return { name: p.name, dims: p.dims, dataType: 1, rawData: new Uint8Array(data.buffer) };
  });
  const session = await ort.InferenceSession.create(encodeModel(model));
  const out = await session.run({ x: new ort.Tensor('float32', wave(2 * C * h * w, 0.31), [2, C, h, w]) });
  await session.release();
  expect(out.y!.dims).toEqual([2, O, 2 * h, 2 * w]);
  return out.y!.data as Float32Array;
}

describe('upsampleConv2x', () => {
  for (const circular of [false, true]) {
    for (const [h, w] of [
      [4, 4],
      [3, 5],
      [1, 2],
    ] as const) {
      it(`equals Resize + 3×3 Conv (${circular ? 'circular' : 'zero'} padding, ${h}×${w})`, async () => {
        const want = await run('resize', circular, h, w);
        const got = await run('phases', circular, h, w);
        let worst = 0;
        for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
        expect(worst).toBeLessThan(1e-5);
        // Not trivially equal: the output varies.
        expect(Math.max(...want) - Math.min(...want)).toBeGreaterThan(1);
      });
    }
  }
});

describe('upsampleConv2x without phases (GPU providers)', () => {
  it('is the plain nearest Resize then 3×3 Conv', () => {
    const src = new MemoryTensorSource(
      new Map([
        ['up.conv.weight', f32Tensor([O, C, 3, 3], wave(O * C * 9, 0.77))],
        ['up.conv.bias', f32Tensor([O], wave(O, 1.3))],
      ]),
    );
    const g = new GraphBuilder('upsample', src, { cpuForms: false });
    upsampleConv2x(g, g.input('x', 'float32', [2, C, 'h', 'w']), 'up.conv', C, O);
    expect(g.nodes.map((n) => n.opType)).toEqual(['Resize', 'Conv']);
  });
});

describe('upsamplePhaseKernel (the int8 graph’s phase weights)', () => {
  it('sums the 3×3 taps each output phase sees', () => {
    const w = Float32Array.from({ length: 9 }, (_, i) => i + 1); // rows [1 2 3], [4 5 6], [7 8 9]
    expect([...upsamplePhaseKernel(w, [1, 1, 3, 3], 0, 0)]).toEqual([1, 2 + 3, 4 + 7, 5 + 6 + 8 + 9]);
    expect([...upsamplePhaseKernel(w, [1, 1, 3, 3], 0, 1)]).toEqual([1 + 2, 3, 4 + 5 + 7 + 8, 6 + 9]);
    expect([...upsamplePhaseKernel(w, [1, 1, 3, 3], 1, 0)]).toEqual([1 + 4, 2 + 3 + 5 + 6, 7, 8 + 9]);
    expect([...upsamplePhaseKernel(w, [1, 1, 3, 3], 1, 1)]).toEqual([1 + 2 + 4 + 5, 3 + 6, 7 + 8, 9]);
  });
});
