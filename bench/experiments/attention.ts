/**
 * Which attention form to use in the UNet's SpatialTransformer (measured, not believed).
 * One attention at SD 1.5 512² level 0 (batch 2, 4096 tokens, 320 channels, 8 heads of 40):
 *   plain          MatMul → Softmax → MatMul (the full [2·8, 4096, 4096] score matrix, 1 GiB)
 *   plain-chunkN   the same on N query chunks, concatenated (scores N× smaller)
 *   mha            com.microsoft MultiHeadAttention
 * `--cross` measures cross-attention (77 context tokens of 768 projected to 320) instead.
 *
 *   npx tsx bench/experiments/attention.ts [--tokens 4096] [--runs 5] [--cross]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { attention, concat, reshape } from '../../src/onnx/ops.js';
import type { Value } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { randomTensor, runVariantsIsolated, timeModel } from './harness.js';

const { values } = parseArgs({
  options: {
    variant: { type: 'string' },
    tokens: { type: 'string', default: '4096' },
    channels: { type: 'string', default: '320' },
    batch: { type: 'string', default: '2' },
    runs: { type: 'string', default: '5' },
    cross: { type: 'boolean', default: false },
    variants: { type: 'string', default: 'plain,plain-chunk4,plain-chunk16,mha' },
  },
});
const S = Number(values.tokens);
const C = Number(values.channels);
const B = Number(values.batch);
const L = values.cross ? 77 : S;
const heads = 8;

function build(variant: string): Uint8Array {
  const g = new GraphBuilder('attention', new MemoryTensorSource(new Map()));
  const q = g.input('q', 'float32', [B, S, C]);
  const k = g.input('k', 'float32', [B, L, C]);
  const v = g.input('v', 'float32', [B, L, C]);
  let out;
  if (variant === 'mha' || variant === 'plain') {
    out = attention(g, q, k, v, heads, C / heads, variant, 'attn');
  } else if (variant.startsWith('mha-pad')) {
    // q and k heads padded with zero columns (q·k unchanged) so MultiHeadAttention's flash kernel
    // picks other block sizes; the scale stays 1/√40.
    const d = C / heads;
    const padded = Number(variant.slice('mha-pad'.length));
    const pad = (x: Value) =>
      reshape(
        g,
        g.op1('Pad', [reshape(g, x, [0, 0, heads, d]), g.constI64([0, 0, 0, 0, 0, 0, 0, padded - d])]),
        [0, 0, heads * padded],
      );
    out = g.op1(
      'MultiHeadAttention',
      [pad(q), pad(k), v],
      { num_heads: heads, scale: { float: 1 / Math.sqrt(d) } },
      { domain: 'com.microsoft' },
    );
  } else if (variant.startsWith('q8qk-chunk')) {
    // Q·Kᵀ in uint8 × uint8 (each quantized per tensor at run time), softmax and P·V in float32.
    const n = Number(variant.replace('s8', '').slice('q8qk-chunk'.length));
    const d = C / heads;
    const heads4 = (x: Value, perm: number[]) =>
      g.op1('Transpose', [reshape(g, x, [0, 0, heads, d])], { perm });
    const [q8, sq, zq] = g.op('DynamicQuantizeLinear', [heads4(q, [0, 2, 1, 3])], {}, { outputs: 3 });
    const kt = heads4(k, [0, 2, 3, 1]);
    const s8 = variant.includes('s8');
    const [k8, sk, zk] = s8
      ? (() => {
          const sc = g.op1('Div', [
            g.op1('ReduceMax', [g.op1('Abs', [kt])], { keepdims: 0 }),
            g.constF32([127], []),
          ]);
          const zero = g.op1('Cast', [g.constF32([0], [])], { to: 3 });
          return [g.op1('QuantizeLinear', [kt, sc, zero]), sc, null] as (Value | null)[];
        })()
      : g.op('DynamicQuantizeLinear', [kt], {}, { outputs: 3 });
    const skScaled = g.op1('Mul', [sk!, g.constF32([1 / Math.sqrt(d)], [])]);
    const vh = heads4(v, [0, 2, 1, 3]);
    const parts =
      n === 1
        ? [q8!]
        : g.op('Split', [q8!, g.constI64(new Array(n).fill(S / n))], { axis: 2 }, { outputs: n });
    const outs = parts.map((qc) => {
      const scores = g.op1(
        'MatMulIntegerToFloat',
        [qc, k8!, sq!, skScaled, zq!, zk!],
        {},
        { domain: 'com.microsoft' },
      );
      return g.op1('MatMul', [g.op1('Softmax', [scores], { axis: -1 }), vh]);
    });
    const o = n === 1 ? outs[0]! : concat(g, outs, 2);
    out = reshape(g, g.op1('Transpose', [o], { perm: [0, 2, 1, 3] }), [0, 0, C]);
  } else if (variant.startsWith('plain-chunk')) {
    const n = Number(variant.slice('plain-chunk'.length));
    const parts = g.op('Split', [q, g.constI64(new Array(n).fill(S / n))], { axis: 1 }, { outputs: n });
    out = concat(
      g,
      parts.map((p, i) => attention(g, p, k, v, heads, C / heads, 'plain', `attn${i}`)),
      1,
    );
  } else {
    throw new Error(`unknown variant ${variant}`);
  }
  g.output(out, 'out', 'float32', [B, S, C]);
  return encodeModel(
    g.toModel(() => {
      throw new Error('no params');
    }),
  );
}

if (values.variant) {
  const feeds = {
    q: randomTensor([B, S, C], 1),
    k: randomTensor([B, L, C], 2),
    v: randomTensor([B, L, C], 3),
  };
  const t = await timeModel(values.variant, build(values.variant), feeds, Number(values.runs), {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: os.availableParallelism(),
  });
  console.log(JSON.stringify(t));
} else {
  const args = ['--tokens', String(S), '--channels', String(C), '--batch', String(B), '--runs', values.runs!];
  if (values.cross) args.push('--cross');
  const results = runVariantsIsolated(new URL(import.meta.url).pathname, values.variants!.split(','), args);
  console.log(JSON.stringify({ tokens: S, channels: C, batch: B, cross: values.cross, results }));
}
