/**
 * Can Winograd convolution, spelled in ONNX ops, beat onnxruntime's direct 3×3 convolution on the
 * CPU? F(2×2, 3×3) needs 16 multiplies per 2×2 output tile and channel pair instead of 36, but
 * onnxruntime has no Winograd kernel, so the transforms become graph ops:
 *   direct    Conv 3×3, pad 1 (MLAS's NCHWc kernel at level 'all': what the UNet runs)
 *   winograd  input transform Bᵀ·d·B as 16 depthwise 4×4 stride-2 convolutions (one per tile
 *             position), 16 pointwise convolutions with the transformed weights G·g·Gᵀ (the
 *             products), output transform Aᵀ·M·A as 24 Adds/Subs, then Concat + DepthToSpace to
 *             interleave the four output phases
 * `--layers` convolutions are stacked so the copies between JS and onnxruntime do not dominate;
 * the variants' outputs are compared (max |difference| printed) before timing.
 *
 *   npx tsx bench/experiments/winograd.ts [--shape 2,320,64,64] [--layers 4] [--runs 7]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { GraphBuilder, type Value } from '../../src/onnx/builder.js';
import { add, concat, sub } from '../../src/onnx/ops.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { median, randomTensor } from './harness.js';

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

const BT = [
  [1, 0, -1, 0],
  [0, 1, 1, 0],
  [0, -1, 1, 0],
  [0, 1, 0, -1],
];
const G = [
  [1, 0, 0],
  [0.5, 0.5, 0.5],
  [0.5, -0.5, 0.5],
  [0, 0, 1],
];

/** A layer's 3×3 weight [C, C, 3, 3] (scaled so activations stay O(1) through the stack). */
function weight(layer: number): Float32Array {
  const w = new Float32Array(C * C * 9);
  let x = 7 + layer;
  const s = Math.sqrt(3 / (C * 9));
  for (let i = 0; i < w.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    w[i] = (x / 2147483648 - 1) * s;
  }
  return w;
}

function direct(g: GraphBuilder, x: Value, w: Float32Array): Value {
  return g.op1('Conv', [x, g.constF32(w, [C, C, 3, 3])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
}

function winograd(g: GraphBuilder, x: Value, w: Float32Array): Value {
  // Input transform: V_ab = Σ_rs Bᵀ[a][r]·Bᵀ[b][s]·d[r][s] over the 4×4 tile at stride 2.
  const v: Value[] = [];
  for (let a = 0; a < 4; a++) {
    for (let b = 0; b < 4; b++) {
      const k = new Float32Array(C * 16);
      for (let c = 0; c < C; c++)
        for (let r = 0; r < 4; r++)
          for (let s = 0; s < 4; s++) k[c * 16 + r * 4 + s] = BT[a]![r]! * BT[b]![s]!;
      v.push(
        g.op1('Conv', [x, g.constF32(k, [C, 1, 4, 4])], {
          kernel_shape: [4, 4],
          strides: [2, 2],
          pads: [1, 1, 1, 1],
          group: C,
        }),
      );
    }
  }
  // Products: M_ab = U_ab · V_ab with U_ab[o][c] = Σ_rs G[a][r]·g[o][c][r][s]·G[b][s].
  const m: Value[] = [];
  for (let a = 0; a < 4; a++) {
    for (let b = 0; b < 4; b++) {
      const u = new Float32Array(C * C);
      for (let o = 0; o < C; o++)
        for (let c = 0; c < C; c++) {
          let sum = 0;
          for (let r = 0; r < 3; r++)
            for (let s = 0; s < 3; s++) sum += G[a]![r]! * w[((o * C + c) * 3 + r) * 3 + s]! * G[b]![s]!;
          u[o * C + c] = sum;
        }
      m.push(g.op1('Conv', [v[a * 4 + b]!, g.constF32(u, [C, C, 1, 1])], { kernel_shape: [1, 1] }));
    }
  }
  // Output transform Aᵀ·M·A, Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]: rows, then columns.
  const at = (p: number, q: (i: number) => Value) =>
    p === 0 ? add(g, add(g, q(0), q(1)), q(2)) : sub(g, sub(g, q(1), q(2)), q(3));
  const phases: Value[] = [];
  for (const py of [0, 1]) {
    const rows = [0, 1, 2, 3].map((b) => at(py, (a) => m[a * 4 + b]!));
    for (const px of [0, 1]) phases.push(at(px, (b) => rows[b]!));
  }
  return g.op1('DepthToSpace', [concat(g, phases, 1)], { blocksize: 2, mode: 'DCR' });
}

function normSilu(g: GraphBuilder, x: Value): Value {
  const grouped = g.op1('Reshape', [x, g.constI64([0, 32, -1])]);
  const ones = g.constF32(new Float32Array(32).fill(1), [32]);
  const zeros = g.constF32(new Float32Array(32), [32]);
  const n = g.op1('InstanceNormalization', [grouped, ones, zeros], { epsilon: { float: 1e-5 } });
  const y = g.op1('Reshape', [n, g.op1('Shape', [x])]);
  return g.op1('Mul', [y, g.op1('Sigmoid', [y])]);
}

function model(form: 'direct' | 'winograd'): Uint8Array {
  const g = new GraphBuilder(form, new MemoryTensorSource(new Map()), {});
  let h = g.input('x', 'float32', dims);
  for (let l = 0; l < layers; l++) {
    if (values.norm) h = normSilu(g, h);
    h = (form === 'direct' ? direct : winograd)(g, h, weight(l));
  }
  g.output(h, 'y', 'float32', dims);
  return encodeModel(
    g.toModel(() => {
      throw new Error('no params');
    }),
  );
}

const feeds = { x: randomTensor(dims) };
const options: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  intraOpNumThreads: 2,
  executionProviders: ['cpu'],
};
const profile = process.env.SDSTUDIO_ORT_PROFILE === '1';
const sessions = {
  direct: await ort.InferenceSession.create(model('direct'), options),
  winograd: await ort.InferenceSession.create(model('winograd'), {
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
