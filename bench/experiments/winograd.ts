/**
 * Can Winograd convolution, spelled in ONNX ops, beat onnxruntime's direct 3×3 convolution on the
 * CPU? F(2×2, 3×3) needs 16 multiplies per 2×2 output tile and channel pair instead of 36, but
 * onnxruntime has no Winograd kernel, so the transforms become graph ops:
 *   direct    Conv 3×3, pad 1 (MLAS's NCHWc kernel at level 'all': what the UNet runs)
 *   winograd  ops.conv3x3Winograd, as the UNet builds it: input transform Bᵀ·d·B as 16
 *             depthwise 4×4 stride-2 convolutions (one per tile position), 16 pointwise
 *             convolutions with the transformed weights G·g·Gᵀ (the products), output transform
 *             Aᵀ·M·A as 24 Adds/Subs, then Concat + DepthToSpace to interleave the output phases
 * `--layers` convolutions are stacked so the copies between JS and onnxruntime do not dominate;
 * the variants' outputs are compared (max |difference| printed) before timing.
 *
 *   npx tsx bench/experiments/winograd.ts [--shape 2,320,64,64] [--layers 4] [--runs 7]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { GraphBuilder, type Value } from '../../src/onnx/builder.js';
import { conv2d } from '../../src/onnx/ops.js';
import { encodeWithParams, median, randomTensor } from './harness.js';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: '2,320,64,64' },
    layers: { type: 'string', default: '4' },
    runs: { type: 'string', default: '7' },
    // GroupNorm + SiLU before every convolution, as in a ResBlock: the layout changes the UNet pays.
    norm: { type: 'boolean', default: false },
  },
});
const dims = values.shape!.split(',').map(Number) as [number, number, number, number];
const C = dims[1];
const layers = Number(values.layers);
const runs = Number(values.runs);

/** Layer l's 3×3 weight [C, C, 3, 3] (scaled so activations stay O(1) through the stack) and bias. */
function layerTensors(layer: number): [string, Tensor][] {
  const w = new Float32Array(C * C * 9);
  let x = 7 + layer;
  const s = Math.sqrt(3 / (C * 9));
  for (let i = 0; i < w.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    w[i] = (x / 2147483648 - 1) * s;
  }
  const b = Float32Array.from({ length: C }, (_, i) => 0.01 * Math.sin(i));
  const t = (shape: number[], v: Float32Array): Tensor => ({
    dtype: 'F32',
    shape,
    data: new Uint8Array(v.buffer),
  });
  return [
    [`l${layer}.weight`, t([C, C, 3, 3], w)],
    [`l${layer}.bias`, t([C], b)],
  ];
}
const source = new MemoryTensorSource(
  new Map(Array.from({ length: layers }, (_, l) => layerTensors(l)).flat()),
);

function normSilu(g: GraphBuilder, x: Value): Value {
  const grouped = g.op1('Reshape', [x, g.constI64([0, 32, -1])]);
  const ones = g.constF32(new Float32Array(32).fill(1), [32]);
  const zeros = g.constF32(new Float32Array(32), [32]);
  const n = g.op1('InstanceNormalization', [grouped, ones, zeros], { epsilon: { float: 1e-5 } });
  const y = g.op1('Reshape', [n, g.op1('Shape', [x])]);
  return g.op1('Mul', [y, g.op1('Sigmoid', [y])]);
}

/** The stack, its 3×3 convolutions as the engine builds them (ops.conv2d, ops.conv3x3Winograd). */
async function model(form: 'direct' | 'winograd'): Promise<Uint8Array> {
  const g = new GraphBuilder(form, source, {});
  let h = g.input('x', 'float32', dims);
  for (let l = 0; l < layers; l++) {
    if (values.norm) h = normSilu(g, h);
    h = conv2d(g, h, `l${l}`, C, C, 3, { winograd: form === 'winograd' });
  }
  g.output(h, 'y', 'float32', dims);
  return encodeWithParams(g, source);
}

const feeds = { x: randomTensor(dims) };
const options: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  intraOpNumThreads: 2,
  executionProviders: ['cpu'],
};
const profile = process.env.SDSTUDIO_ORT_PROFILE === '1';
const sessions = {
  direct: await ort.InferenceSession.create(await model('direct'), options),
  winograd: await ort.InferenceSession.create(await model('winograd'), {
    ...options,
    ...(profile ? { enableProfiling: true, profileFilePrefix: '/tmp/winograd-profile' } : {}),
  }),
};
const outs = await Promise.all(
  Object.values(sessions).map(async (s) => (await s.run(feeds)).y!.data as Float32Array),
);
let diff = 0;
let peak = 0;
for (let i = 0; i < outs[0]!.length; i++) {
  diff = Math.max(diff, Math.abs(outs[0]![i]! - outs[1]![i]!));
  peak = Math.max(peak, Math.abs(outs[0]![i]!));
}
console.log(`max |direct − winograd| ${diff.toExponential(2)} (max |direct| ${peak.toFixed(2)})`);
// Alternate the variants so the VM's drift hits both alike.
const times: Record<string, number[]> = { direct: [], winograd: [] };
for (let i = 0; i < runs; i++) {
  for (const [name, s] of Object.entries(sessions)) {
    const t = performance.now();
    await s.run(feeds);
    times[name]!.push((performance.now() - t) / 1000 / layers);
  }
}
const gflop = (2 * dims[0] * C * C * 9 * dims[2] * dims[3]) / 1e9;
for (const [name, t] of Object.entries(times)) {
  const s = median(t);
  console.log(
    `${name.padEnd(9)} ${(s * 1000).toFixed(1)} ms per conv (${(gflop / s).toFixed(0)} direct-GFLOP/s)`,
  );
}
if (profile) sessions.winograd.endProfiling();
