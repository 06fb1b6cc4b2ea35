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
import { parseArgs } from 'node:util';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { attention, concat } from '../../src/onnx/ops.js';
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
  });
  console.log(JSON.stringify(t));
} else {
  const args = ['--tokens', String(S), '--channels', String(C), '--batch', String(B), '--runs', values.runs!];
  if (values.cross) args.push('--cross');
  const results = runVariantsIsolated(new URL(import.meta.url).pathname, values.variants!.split(','), args);
  console.log(JSON.stringify({ tokens: S, channels: C, batch: B, cross: values.cross, results }));
}
