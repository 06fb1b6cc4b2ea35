/**
 * Token merging for the UNet's self-attention (ToMe for SD, as A1111's "Token merging ratio"
 * applies it: only the transformers at full latent resolution, only self-attention, the
 * destination tokens fixed at the top-left of every 2×2 cell, no randomness).
 *
 * Before a block's self-attention the r source tokens most similar (cosine of the block input) to
 * a destination token are averaged into it; attention then runs on N − r tokens, and each merged
 * token takes its destination's output. Self-attention has no positional terms, so the order of
 * the merged sequence does not matter: the graph only needs, per token, its slot in that sequence.
 *
 * The token grid is only known at run time, so the partition (which tokens are destinations) and
 * r are graph inputs computed by `tokenMergeInputs` for the latent size being run.
 */
import type { GraphBuilder, Value } from '../onnx/builder.js';
import { chunkSlots } from '../onnx/ops.js';

/** Graph input names of token merging. */
export const TOKEN_MERGE_IO = { src: 'tome_src', dst: 'tome_dst', r: 'tome_r' } as const;

/**
 * The largest ratio A1111's setting accepts. With 2×2 cells at most the 3 sources of every 4
 * tokens can merge, so ratios above 0.75 act as 0.75 (tomesd caps r the same way).
 */
export const MAX_TOKEN_MERGE_RATIO = 0.9;

/** Sources per similarity chunk, and the most chunks (the last takes every source beyond). */
export const SIMILARITY_CHUNK = 2048;
const SIMILARITY_CHUNKS = 32;

export interface TokenMergeInputs {
  /** Source token positions [Ns] (int64, raster order of the latent grid). */
  src: Value;
  /** Destination token positions [Nd]. */
  dst: Value;
  /** Tokens to merge away, [1] (int64, ≤ Ns). */
  r: Value;
}

/** Declare the three inputs on a graph. */
export function tokenMergeGraphInputs(g: GraphBuilder): TokenMergeInputs {
  return {
    src: g.input(TOKEN_MERGE_IO.src, 'int64', ['tome_sources']),
    dst: g.input(TOKEN_MERGE_IO.dst, 'int64', ['tome_destinations']),
    r: g.input(TOKEN_MERGE_IO.r, 'int64', [1]),
  };
}

export interface TokenMerge {
  /** [B, N, C] → [B, N − r, C]: merged tokens averaged with their destination. */
  merge(v: Value): Value;
  /** [B, N − r, C] → [B, N, C]: every token takes its slot's value. */
  unmerge(v: Value): Value;
}

/**
 * The merge of one block, decided from its input tokens `metric` [B, N, C] (tomesd uses the
 * block input, not the normed one).
 */
export function planTokenMerge(
  g: GraphBuilder,
  metric: Value,
  io: TokenMergeInputs,
  name: string,
  similarityChunk = SIMILARITY_CHUNK,
): TokenMerge {
  const op = (type: string, inputs: (Value | null)[], attrs = {}) => g.op1(type, inputs, attrs, { name });
  const i64 = (v: number[]) => g.constI64(v);
  const scalarI64 = (v: number) => g.constI64([v], []);
  const dimOf = (v: Value, axis: number) => op('Gather', [op('Shape', [v]), scalarI64(axis)], { axis: 0 });

  // Cosine similarity of every source token to every destination token, and each source's best
  // destination. The [Ns, Nd] similarities are taken in chunks of sources so a large image's
  // (2048²: 49152 × 16384) are never held whole. float32 in float16 graphs: the squared norms of
  // large activations overflow float16.
  const m32 = g.toFloat32(metric, name);
  const unit = op('Div', [m32, op('ReduceL2', [m32], { axes: [-1], keepdims: 1 })]);
  const a = op('Gather', [unit, io.src], { axis: 1 });
  const bT = op('Transpose', [op('Gather', [unit, io.dst], { axis: 1 })], { perm: [0, 2, 1] });
  const sources = chunkSlots(g, a, 1, similarityChunk, SIMILARITY_CHUNKS, name);
  const scores = sources.parts.map((rows) => op('MatMul', [rows, bT]));
  const best = sources.joinResults(scores.map((s) => op('ReduceMax', [s], { axes: [2], keepdims: 0 }))); // [B, Ns]
  const bestDst = sources.joinResults(scores.map((s) => op('ArgMax', [s], { axis: 2, keepdims: 0 }))); // [B, Ns]

  // Sources by similarity, most similar first; the first r are merged.
  const ns = dimOf(io.src, 0);
  const nd = dimOf(io.dst, 0);
  const batch = dimOf(metric, 0);
  const n = dimOf(metric, 1);
  const r = op('Squeeze', [io.r, i64([0])]);
  /** A shape tensor from scalar dims. */
  const shape = (...dims: Value[]) =>
    op(
      'Concat',
      dims.map((d) => op('Unsqueeze', [d, i64([0])])),
      { axis: 0 },
    );
  const range = (end: Value) => op('Range', [scalarI64(0), end, scalarI64(1)]);
  const order = g.op('TopK', [best, shape(ns)], { axis: 1, largest: 1, sorted: 1 }, { name, outputs: 2 })[1]!;

  // slot[b, n]: where token n of row b sits in the merged sequence — unmerged sources first
  // (slots 0 … Ns − r − 1), then the destinations; a merged source shares its destination's slot.
  const kept = op('Sub', [ns, r]);
  const rank = range(ns); // [Ns]
  const srcPos = op('Gather', [io.src, order], { axis: 0 }); // [B, Ns]
  const srcDst = op('GatherElements', [bestDst, order], { axis: 1 });
  const srcSlot = op('Where', [op('Less', [rank, r]), op('Add', [srcDst, kept]), op('Sub', [rank, r])]);
  const dstPos = op('Expand', [io.dst, shape(batch, nd)]);
  const dstSlot = op('Expand', [op('Add', [range(nd), kept]), shape(batch, nd)]);
  const positions = op('Concat', [srcPos, dstPos], { axis: 1 }); // a permutation of 0 … N − 1 per row
  const slot = op('ScatterElements', [positions, positions, op('Concat', [srcSlot, dstSlot], { axis: 1 })], {
    axis: 1,
  });

  // ScatterND indices [B, N, 2] = (row, slot) for the merge's sums.
  const rowIdx = op('Expand', [op('Unsqueeze', [range(batch), i64([1])]), shape(batch, n)]);
  const scatterIdx = op('Concat', [op('Unsqueeze', [rowIdx, i64([2])]), op('Unsqueeze', [slot, i64([2])])], {
    axis: 2,
  });
  const merged = op('Sub', [n, r]);
  // The merge sums in float32 in float16 graphs too (webgpu's ScatterND adds no float16).
  const zeros = (s: Value) => op('ConstantOfShape', [s]); // float32 zeros
  // Tokens per slot (1 + the sources merged into a destination), [B, N − r, 1].
  const ones = op('Expand', [g.constF32([1], [1, 1]), shape(batch, n)]);
  const counts = op('Unsqueeze', [
    op('ScatterND', [zeros(shape(batch, merged)), scatterIdx, ones], { reduction: 'add' }),
    i64([2]),
  ]);

  return {
    merge(v: Value): Value {
      const sums = op(
        'ScatterND',
        [zeros(shape(batch, merged, dimOf(v, 2))), scatterIdx, g.toFloat32(v, name)],
        {
          reduction: 'add',
        },
      );
      return g.toCompute(op('Div', [sums, counts]), name);
    },
    unmerge(v: Value): Value {
      return op('GatherND', [v, op('Unsqueeze', [slot, i64([2])])], { batch_dims: 1 });
    },
  };
}

/** Values of the token-merging inputs for a latent of `height` × `width` at `ratio`. */
export function tokenMergeInputs(
  height: number,
  width: number,
  ratio: number,
): { src: BigInt64Array; dst: BigInt64Array; r: BigInt64Array } {
  if (!(ratio >= 0 && ratio <= MAX_TOKEN_MERGE_RATIO))
    throw new RangeError(`token merging ratio must be within 0 … ${MAX_TOKEN_MERGE_RATIO} (got ${ratio})`);
  // One destination per whole 2×2 cell (its top-left token); a last odd row/column holds sources only.
  const src: bigint[] = [];
  const dst: bigint[] = [];
  const cellsY = Math.floor(height / 2) * 2;
  const cellsX = Math.floor(width / 2) * 2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const isDst = y < cellsY && x < cellsX && y % 2 === 0 && x % 2 === 0;
      (isDst ? dst : src).push(BigInt(y * width + x));
    }
  }
  const r = Math.min(src.length, Math.floor(height * width * ratio));
  return { src: BigInt64Array.from(src), dst: BigInt64Array.from(dst), r: BigInt64Array.of(BigInt(r)) };
}
