/**
 * The transformer's GEGLU feed-forward (LayerNorm → Linear dim→8·dim → value · GELU(gate) →
 * Linear 4·dim→dim → residual), stacked `--layers` deep, in the forms the engine could build:
 *   split     Linear to 8·dim, Split into value and gate (the engine's fp32 form)
 *   halves    two Linears, one per half of the weight (no Split pass over the widest activation)
 *   chunkN    halves on N token chunks (ops.chunkSlots), so each chunk's 4·dim-wide
 *             intermediates stay in the CPU's cache instead of going through memory
 *   split-chunkN  split on N token chunks
 * The variants run alternately in one process so the VM's drift hits them alike; outputs are
 * compared first. Result (docs/performance.md): neither adopted. `halves` is −4…−6 % per
 * feed-forward at 64×64 (≈ 0.4 % of a step) but the folded weight halves raised a 512² txt2img's
 * peak by ≈ 60 MB; token chunks are −15 % in this stack but only −6 % of the level-0
 * feed-forwards' kernel time inside the whole UNet (≈ 0.5 % of a step) for ≈ 870 more nodes.
 *
 *   npx tsx bench/experiments/feedforward.ts [--tokens 4096] [--dim 320] [--variants split,halves,chunk4]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { GraphBuilder, type Value } from '../../src/onnx/builder.js';
import { add, chunkSlots, gelu, layerNorm, linear, linearSplit, mul } from '../../src/onnx/ops.js';
import { encodeWithParams, median, randomTensor } from './harness.js';

const { values } = parseArgs({
  options: {
    tokens: { type: 'string', default: '4096' },
    dim: { type: 'string', default: '320' },
    batch: { type: 'string', default: '2' },
    layers: { type: 'string', default: '4' },
    runs: { type: 'string', default: '9' },
    variants: { type: 'string', default: 'split,halves,chunk2,chunk4,chunk8' },
  },
});
const N = Number(values.tokens);
const D = Number(values.dim);
const B = Number(values.batch);
const layers = Number(values.layers);
const inner = 4 * D;

function rand(n: number, seed: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = (x / 2147483648 - 1) * scale;
  }
  return a;
}
const t = (shape: number[], v: Float32Array): Tensor => ({
  dtype: 'F32',
  shape,
  data: new Uint8Array(v.buffer),
});
const tensors = new Map<string, Tensor>();
for (let l = 0; l < layers; l++) {
  tensors.set(
    `l${l}.norm.weight`,
    t(
      [D],
      rand(D, 3 + l, 0.1).map((v) => 1 + v),
    ),
  );
  tensors.set(`l${l}.norm.bias`, t([D], rand(D, 5 + l, 0.1)));
  tensors.set(`l${l}.proj.weight`, t([2 * inner, D], rand(2 * inner * D, 7 + l, Math.sqrt(3 / D))));
  tensors.set(`l${l}.proj.bias`, t([2 * inner], rand(2 * inner, 9 + l, 0.1)));
  tensors.set(`l${l}.out.weight`, t([D, inner], rand(D * inner, 11 + l, Math.sqrt(3 / inner) / 2)));
  tensors.set(`l${l}.out.bias`, t([D], rand(D, 13 + l, 0.1)));
}
const source = new MemoryTensorSource(tensors);

/** Value and gate as two Linears over the halves of the checkpoint's [8·dim, dim] weight. */
function halves(g: GraphBuilder, x: Value, p: string): [Value, Value] {
  const w = g.param(`${p}.weight`, [2 * inner, D]);
  const b = g.param(`${p}.bias`, [2 * inner]);
  const part = (i: number) => {
    const [s, e] = [g.constI64([i * inner]), g.constI64([(i + 1) * inner])];
    const wi = g.op1('Slice', [w, s, e, g.constI64([0])]);
    const bi = g.op1('Slice', [b, s, e, g.constI64([0])]);
    const y = g.op1('FusedMatMul', [x, wi], { transB: 1, alpha: { float: 1 } }, { domain: 'com.microsoft' });
    return add(g, y, bi);
  };
  return [part(0), part(1)];
}

function feedForward(g: GraphBuilder, x: Value, p: string, variant: string): Value {
  const ff = (h: Value) => {
    const [v, gate] =
      variant === 'split' || variant.startsWith('split-')
        ? linearSplit(g, h, `${p}.proj`, D, [inner, inner])
        : halves(g, h, `${p}.proj`);
    return linear(g, mul(g, v!, gelu(g, gate!)), `${p}.out`, inner, D);
  };
  const n = layerNorm(g, x, `${p}.norm`, D, 1e-5);
  if (!variant.includes('chunk')) return add(g, ff(n), x);
  const k = Number(variant.slice(variant.indexOf('chunk') + 'chunk'.length));
  const slots = chunkSlots(g, n, 1, Math.ceil(N / k), k, p);
  return add(g, slots.joinResults(slots.parts.map(ff)), x);
}

async function model(variant: string): Promise<Uint8Array> {
  const g = new GraphBuilder(variant, source, {});
  let h = g.input('x', 'float32', [B, N, D]);
  for (let l = 0; l < layers; l++) h = feedForward(g, h, `l${l}`, variant);
  g.output(h, 'y', 'float32', [B, N, D]);
  return encodeWithParams(g, source);
}

const variants = values.variants!.split(',');
const feeds = { x: randomTensor([B, N, D]) };
const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', intraOpNumThreads: 2 };
const sessions = new Map<string, ort.InferenceSession>();
for (const v of variants) sessions.set(v, await ort.InferenceSession.create(await model(v), options));
const outs = new Map<string, Float32Array>();
for (const [v, s] of sessions) outs.set(v, (await s.run(feeds)).y!.data as Float32Array);
const ref = outs.get(variants[0]!)!;
for (const [v, o] of outs) {
  let diff = 0;
  for (let i = 0; i < o.length; i++) diff = Math.max(diff, Math.abs(o[i]! - ref[i]!));
  console.log(`${v.padEnd(8)} max |difference| to ${variants[0]}: ${diff.toExponential(2)}`);
}
const times = new Map<string, number[]>();
for (let r = 0; r < Number(values.runs); r++) {
  for (const [v, s] of sessions) {
    const t0 = performance.now();
    await s.run(feeds);
    times.set(v, [...(times.get(v) ?? []), (performance.now() - t0) / layers]);
  }
}
for (const [v, ts] of times) console.log(`${v.padEnd(8)} ${median(ts).toFixed(1)} ms per feed-forward`);
