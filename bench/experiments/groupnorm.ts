/**
 * Which GroupNorm form runs fastest on onnxruntime's CPU provider (32 groups, NCHW, eps 1e-5),
 * each followed by SiLU as in every ResBlock, stacked `--layers` deep so the copies of the input
 * and output between JS and onnxruntime do not dominate.
 *   instnorm     Reshape [B,G,-1] → InstanceNormalization → Reshape → ·γ + β (src/onnx/ops.ts groupNorm)
 *   reducemean   the same statistics spelled with ReduceMean / Sub / Mul / Sqrt / Div
 *   onnx21       the standard GroupNormalization op (opset 21, per-channel γ/β)
 * Default shape: SD 1.5 UNet level 0 at 512² batch 2 ([2,320,64,64]);
 * `--shape 1,128,512,512` is the VAE decoder's last level at 512².
 *
 *   npx tsx bench/experiments/groupnorm.ts [--shape 2,320,64,64] [--runs 9] [--layers 8]
 */
import { parseArgs } from 'node:util';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { GraphBuilder, type Value } from '../../src/onnx/builder.js';
import { add, groupNorm, mul, reshape, shapeOf, silu } from '../../src/onnx/ops.js';
import { encodeModel, OnnxDataType } from '../../src/onnx/proto.js';
import { randomTensor, runVariantsIsolated, timeModel } from './harness.js';

const { values } = parseArgs({
  options: {
    variant: { type: 'string' },
    shape: { type: 'string', default: '2,320,64,64' },
    runs: { type: 'string', default: '9' },
    layers: { type: 'string', default: '8' },
    variants: { type: 'string', default: 'instnorm,reducemean,onnx21' },
  },
});
const dims = values.shape!.split(',').map(Number);
const C = dims[1]!;
const G = 32;
const eps = 1e-5;
const gamma = new Float32Array(C).map((_, i) => 1 + 0.01 * i);
const beta = new Float32Array(C).map((_, i) => 0.001 * i);

function f32(v: Float32Array, shape: number[]): Tensor {
  return { dtype: 'F32', shape, data: new Uint8Array(v.buffer) };
}

function groupNormVariant(g: GraphBuilder, x: Value, variant: string): Value {
  if (variant === 'instnorm') return groupNorm(g, x, 'gn', C, G, eps);
  if (variant === 'reducemean') {
    const grouped = reshape(g, x, [0, G, -1]);
    const mean = g.op1('ReduceMean', [grouped], { axes: [2], keepdims: 1 });
    const centered = g.op1('Sub', [grouped, mean]);
    const variance = g.op1('ReduceMean', [mul(g, centered, centered)], { axes: [2], keepdims: 1 });
    const std = g.op1('Sqrt', [add(g, variance, g.constF32([eps], []))]);
    const normed = reshape(g, g.op1('Div', [centered, std]), shapeOf(g, x));
    return add(g, mul(g, normed, g.param('gn.weight', [C], [C, 1, 1])), g.param('gn.bias', [C], [C, 1, 1]));
  }
  if (variant === 'onnx21') {
    return g.op1('GroupNormalization', [x, g.param('gn.weight', [C]), g.param('gn.bias', [C])], {
      num_groups: G,
      epsilon: { float: eps },
    });
  }
  throw new Error(`unknown variant ${variant}`);
}

function build(variant: string): Uint8Array {
  const src = new MemoryTensorSource(
    new Map([
      ['gn.weight', f32(gamma, [C])],
      ['gn.bias', f32(beta, [C])],
    ]),
  );
  const g = new GraphBuilder('groupnorm', src);
  let y: Value = g.input('x', 'float32', dims);
  for (let l = 0; l < Number(values.layers); l++) y = silu(g, groupNormVariant(g, y, variant));
  g.output(y, 'y', 'float32', dims);
  // Params inline as raw data: the tensors are tiny.
  const model = g.toModel((p) => ({
    name: p.name,
    dims: p.dims,
    dataType: OnnxDataType.FLOAT,
    rawData: new Uint8Array((p.key === 'gn.weight' ? gamma : beta).slice().buffer),
  }));
  if (variant === 'onnx21') {
    model.opsetImport = model.opsetImport.map((o) => (o.domain === '' ? { ...o, version: 21 } : o));
  }
  return encodeModel(model);
}

if (values.variant) {
  const feeds = { x: randomTensor(dims) };
  const t = await timeModel(values.variant, build(values.variant), feeds, Number(values.runs), {
    graphOptimizationLevel: 'all',
  });
  console.log(JSON.stringify(t));
} else {
  const results = runVariantsIsolated(new URL(import.meta.url).pathname, values.variants!.split(','), [
    '--shape',
    values.shape!,
    '--runs',
    values.runs!,
    '--layers',
    values.layers!,
  ]);
  console.log(JSON.stringify({ shape: dims, layers: Number(values.layers), results }));
}
