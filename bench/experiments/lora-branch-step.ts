/**
 * What low-rank LoRA branches (onnx/ops.ts `withLowRankBranch`) cost per step, measured on one SD
 * 1.5 SpatialTransformer (GroupNorm, proj_in, self- and cross-attention, GEGLU feed-forward,
 * proj_out) at a chosen level — 320 channels at 64×64 is where most of a 512² step's transformer
 * time goes — built by the engine's own block builder, without branches and with a rank-`--rank`
 * branch on every Linear / 1×1 conv (full coverage, as kohya trains). Both sessions at level 'all'
 * with 2 threads run alternately so the VM's drift hits them alike; outputs are compared first
 * (rank-0 branches cannot be fed, so `--zero` feeds zero factors to check the graph is exact). The
 * fp32 GEMM rate is measured before and after (the machine is shared; the ratio is the figure).
 *
 *   npx tsx bench/experiments/lora-branch-step.ts [--channels 320] [--size 64] [--rank 32] [--runs 6]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { GraphBuilder, LORA_DOWN, LORA_UP, ShapeRecorder } from '../../src/onnx/builder.js';
import { spatialTransformer } from '../../src/models/blocks.js';
import { probeGemm } from '../probes.js';
import { encodeWithParams, median, randomTensor } from './harness.js';

const { values } = parseArgs({
  options: {
    channels: { type: 'string', default: '320' },
    size: { type: 'string', default: '64' },
    rank: { type: 'string', default: '32' },
    runs: { type: 'string', default: '6' },
  },
});
const C = Number(values.channels);
const S = Number(values.size);
const R = Number(values.rank);
const B = 2;
const heads = 8;
const P = 'st';

function build(source: ConstructorParameters<typeof GraphBuilder>[1], branches?: Set<string>): GraphBuilder {
  const g = new GraphBuilder('transformer', source, { lowRankBranches: branches });
  const x = g.input('x', 'float32', [B, C, S, S]);
  const context = g.input('context', 'float32', [B, 77, 768]);
  const y = spatialTransformer(g, P, x, C, heads, 1, 768, false, { context, impl: 'mha' });
  g.output(y, 'y', 'float32', [B, C, S, S]);
  return g;
}

// The block's weights: names and shapes from the builder itself, random values.
const rec = new ShapeRecorder();
build(rec);
const tensors = new Map<string, Tensor>();
let seed = 1;
for (const [k, shape] of rec.shapes) {
  const n = shape.reduce((a, b) => a * b, 1);
  const fanIn = shape.length > 1 ? n / shape[0]! : 1;
  const v = randomTensor([n], seed++).data as Float32Array;
  const scale = shape.length > 1 ? Math.sqrt(3 / fanIn) : 0.1;
  for (let i = 0; i < n; i++) v[i] = v[i]! * scale + (k.includes('norm') && k.endsWith('weight') ? 1 : 0);
  tensors.set(k, { dtype: 'F32', shape, data: new Uint8Array(v.buffer) });
}
const source = new MemoryTensorSource(tensors);
const layers = [...rec.shapes]
  .filter(([k, s]) => k.endsWith('.weight') && (s.length === 2 || (s.length === 4 && s[2] === 1)))
  .map(([k, s]) => [k.replace(/\.weight$/, ''), s[1]!, s[0]!] as const);

const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', intraOpNumThreads: 2 };
const plainG = build(source);
const branchG = build(source, new Set(layers.map(([k]) => k)));
const plain = await ort.InferenceSession.create(await encodeWithParams(plainG, source), options);
const branch = await ort.InferenceSession.create(await encodeWithParams(branchG, source), options);

const base = { x: randomTensor([B, C, S, S], 91), context: randomTensor([B, 77, 768], 92) };
const branchFeeds = (zero: boolean): Record<string, ort.Tensor> => {
  const f: Record<string, ort.Tensor> = { ...base };
  for (const [k, inF, outF] of layers) {
    const d = randomTensor([R, inF], seed++);
    const u = randomTensor([outF, R], seed++);
    if (zero) (u.data as Float32Array).fill(0);
    else (u.data as Float32Array).forEach((v, i, a) => (a[i] = v * 0.01));
    f[`${LORA_DOWN}${k}`] = d;
    f[`${LORA_UP}${k}`] = u;
  }
  return f;
};
const ref = (await plain.run(base)).y!.data as Float32Array;
const zero = (await branch.run(branchFeeds(true))).y!.data as Float32Array;
let diff = 0;
for (let i = 0; i < ref.length; i++) diff = Math.max(diff, Math.abs(ref[i]! - zero[i]!));
const feeds = branchFeeds(false);
const withLora = (await branch.run(feeds)).y!.data as Float32Array;
let moved = 0;
for (let i = 0; i < ref.length; i++) moved = Math.max(moved, Math.abs(ref[i]! - withLora[i]!));

const gemmBefore = (await probeGemm({ checkpoint: '', runs: 5, warmup: 0, threads: 2 })).gflops;
const tp: number[] = [];
const tb: number[] = [];
for (let r = 0; r < Number(values.runs); r++) {
  let t0 = performance.now();
  await plain.run(base);
  tp.push(performance.now() - t0);
  t0 = performance.now();
  await branch.run(feeds);
  tb.push(performance.now() - t0);
}
const gemmAfter = (await probeGemm({ checkpoint: '', runs: 5, warmup: 0, threads: 2 })).gflops;
// Per image token; the cross-attention keys/values run on the 77 context tokens only.
const perToken = layers.filter(([k]) => !/attn2\.to_[kv]$/.test(k));
const macs = perToken.reduce((n, [, i, o]) => n + i * o, 0);
const branchMacs = perToken.reduce((n, [, i, o]) => n + R * (i + o), 0);
console.log(
  JSON.stringify(
    {
      block: `SpatialTransformer ${C} ch at ${S}×${S}, batch ${B}, ${layers.length} branch layers, rank ${R}`,
      zero_branch_max_abs_diff: diff,
      lora_moves_output_max_abs: moved,
      layer_macs_per_token: macs,
      branch_macs_per_token: branchMacs,
      branch_macs_ratio: +(branchMacs / macs).toFixed(4),
      plain_ms: tp.map((t) => +t.toFixed(0)),
      branch_ms: tb.map((t) => +t.toFixed(0)),
      median_ratio: +(median(tb) / median(tp)).toFixed(3),
      pairwise_ratios: tb.map((t, i) => +(t / tp[i]!).toFixed(3)),
      gemm_gflops_before: +gemmBefore.toFixed(0),
      gemm_gflops_after: +gemmAfter.toFixed(0),
    },
    null,
    1,
  ),
);
