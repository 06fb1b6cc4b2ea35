/**
 * Layer helpers over GraphBuilder: each takes the checkpoint key prefix of the layer (`prefix`)
 * and reads `${prefix}.weight` / `${prefix}.bias` with the shape the layer needs, so a model
 * file's key tree and the code mirror each other.
 */
import { MS_DOMAIN, type GraphBuilder, type Value } from './builder.js';

export function add(g: GraphBuilder, a: Value, b: Value, name?: string): Value {
  return g.op1('Add', [a, b], {}, { name });
}
export function sub(g: GraphBuilder, a: Value, b: Value, name?: string): Value {
  return g.op1('Sub', [a, b], {}, { name });
}
export function mul(g: GraphBuilder, a: Value, b: Value, name?: string): Value {
  return g.op1('Mul', [a, b], {}, { name });
}
export function scale(g: GraphBuilder, a: Value, s: number, name?: string): Value {
  return mul(g, a, g.constF32([s], [], 'scale'), name);
}

export function silu(g: GraphBuilder, x: Value, name?: string): Value {
  // x·sigmoid(x) is com.microsoft QuickGelu with alpha 1: one pass instead of two.
  if (g.contribOps) return g.op1('QuickGelu', [x], { alpha: { float: 1 } }, { name, domain: MS_DOMAIN });
  return mul(g, x, g.op1('Sigmoid', [x], {}, { name }), name);
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)): com.microsoft Gelu (erf form), else the primitive ops. */
export function gelu(g: GraphBuilder, x: Value, name?: string): Value {
  if (g.contribOps) return g.op1('Gelu', [x], {}, { name, domain: MS_DOMAIN });
  const e = g.op1('Erf', [scale(g, x, Math.SQRT1_2, name)], {}, { name });
  const onePlus = add(g, e, g.constF32([1], [], 'one'), name);
  return mul(g, scale(g, x, 0.5, name), onePlus, name);
}

/** CLIP's QuickGELU: x · sigmoid(1.702 x). */
export function quickGelu(g: GraphBuilder, x: Value, name?: string): Value {
  if (g.contribOps) return g.op1('QuickGelu', [x], { alpha: { float: 1.702 } }, { name, domain: MS_DOMAIN });
  return mul(g, x, g.op1('Sigmoid', [scale(g, x, 1.702, name)], {}, { name }), name);
}

export function reshape(g: GraphBuilder, x: Value, shape: number[] | Value, name?: string): Value {
  const s = Array.isArray(shape) ? g.constI64(shape) : shape;
  return g.op1('Reshape', [x, s], {}, { name });
}

export function transpose(g: GraphBuilder, x: Value, perm: number[], name?: string): Value {
  return g.op1('Transpose', [x], { perm }, { name });
}

export function concat(g: GraphBuilder, xs: Value[], axis: number, name?: string): Value {
  return g.op1('Concat', xs, { axis }, { name });
}

export function shapeOf(g: GraphBuilder, x: Value, name?: string): Value {
  return g.op1('Shape', [x], {}, { name });
}

/** Split along `axis` into `parts` equal pieces. */
export function splitEqual(g: GraphBuilder, x: Value, axis: number, sizes: number[], name?: string): Value[] {
  return g.op('Split', [x, g.constI64(sizes)], { axis }, { name, outputs: sizes.length });
}

/**
 * Circular padding of [B, C, H, W] by `pad` on every side (torch F.pad mode='circular'), built from
 * Slice+Concat so it runs at opset 17 on every provider (Pad mode 'wrap' needs opset 19).
 */
export function padCircular(g: GraphBuilder, x: Value, pad: number, name?: string): Value {
  let y = x;
  for (const axis of [3, 2]) {
    const ax = g.constI64([axis]);
    const tail = g.op1('Slice', [y, g.constI64([-pad]), g.constI64([2 ** 62]), ax], {}, { name });
    const head = g.op1('Slice', [y, g.constI64([0]), g.constI64([pad]), ax], {}, { name });
    y = concat(g, [tail, y, head], axis, name);
  }
  return y;
}

/**
 * 2-D convolution, weights [out, in, k, k], symmetric padding: zeros, or wrapped around the edges
 * when the graph is built with `circularPadding` (only padded convs change, as in torch).
 */
export function conv2d(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inCh: number,
  outCh: number,
  k: number,
  opts: { stride?: number; pad?: number; bias?: boolean } = {},
): Value {
  const stride = opts.stride ?? 1;
  const pad = opts.pad ?? (k - 1) / 2;
  const w = g.param(`${prefix}.weight`, [outCh, inCh, k, k]);
  const b = opts.bias === false ? null : g.param(`${prefix}.bias`, [outCh]);
  const circular = g.circularPadding && pad > 0;
  const input = circular ? padCircular(g, x, pad, prefix) : x;
  const p = circular ? 0 : pad;
  return g.op1(
    'Conv',
    b ? [input, w, b] : [input, w],
    { kernel_shape: [k, k], strides: [stride, stride], pads: [p, p, p, p] },
    { name: prefix },
  );
}

/**
 * torch Linear on the last axis: y = x·Wᵀ + b with W stored [out, in]. Without contrib ops the
 * transpose of the initializer is constant-folded by onnxruntime at session creation.
 */
export function linear(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inF: number,
  outF: number,
  bias = true,
): Value {
  const w = g.param(`${prefix}.weight`, [outF, inF]);
  let y: Value;
  if (g.contribOps) {
    // FusedMatMul reads W as stored ([out, in], transB): no transposed copy at session creation
    // (measured 6.1 s vs 10.1 s of CPU to create the SD 1.5 UNet session).
    y = g.op1('FusedMatMul', [x, w], { transB: 1, alpha: { float: 1 } }, { name: prefix, domain: MS_DOMAIN });
  } else {
    const wt = transpose(g, w, [1, 0], prefix);
    y = g.op1('MatMul', [x, wt], {}, { name: prefix });
  }
  if (bias) y = add(g, y, g.param(`${prefix}.bias`, [outF]), prefix);
  return y;
}

/** LayerNorm over the last axis. */
export function layerNorm(g: GraphBuilder, x: Value, prefix: string, dim: number, eps: number): Value {
  return g.op1(
    'LayerNormalization',
    [x, g.param(`${prefix}.weight`, [dim]), g.param(`${prefix}.bias`, [dim])],
    { axis: -1, epsilon: { float: eps } },
    { name: prefix },
  );
}

/**
 * GroupNorm on [B, C, H, W] as InstanceNormalization over [B, G, C/G·H·W] followed by the
 * per-channel affine (the form onnxruntime's CPU provider runs as one fused kernel pass).
 */
export function groupNorm(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  channels: number,
  groups: number,
  eps: number,
): Value {
  if (channels % groups !== 0) {
    throw new Error(`${prefix}: GroupNorm over ${channels} channels cannot use ${groups} groups`);
  }
  const gamma = g.param(`${prefix}.weight`, [channels], [channels, 1, 1]);
  const beta = g.param(`${prefix}.bias`, [channels], [channels, 1, 1]);
  const grouped = reshape(g, x, [0, groups, -1], prefix);
  const ones = g.constF32(new Float32Array(groups).fill(1), [groups], 'ones');
  const zeros = g.constF32(new Float32Array(groups), [groups], 'zeros');
  const normed = g.op1(
    'InstanceNormalization',
    [grouped, ones, zeros],
    { epsilon: { float: eps } },
    { name: prefix },
  );
  const back = reshape(g, normed, shapeOf(g, x, prefix), prefix);
  return add(g, mul(g, back, gamma, prefix), beta, prefix);
}

/** Nearest-neighbour ×2 upsampling of [B, C, H, W] (torch F.interpolate(scale_factor=2, mode="nearest")). */
export function upsampleNearest2x(g: GraphBuilder, x: Value, name?: string): Value {
  return g.op1(
    'Resize',
    [x, null, g.constF32([1, 1, 2, 2], [4], 'scales')],
    { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' },
    { name },
  );
}

/**
 * Nearest-resize `x` [B, C, h, w] to the spatial size of `like` [B, C', H, W] at run time (torch
 * F.interpolate(size=…, mode='nearest'): source index floor(dst·in/out)).
 */
export function resizeNearestLike(g: GraphBuilder, x: Value, like: Value, name?: string): Value {
  const bc = g.op1('Slice', [shapeOf(g, x, name), g.constI64([0]), g.constI64([2])], {}, { name });
  const hw = g.op1('Slice', [shapeOf(g, like, name), g.constI64([2]), g.constI64([4])], {}, { name });
  return g.op1(
    'Resize',
    [x, null, null, concat(g, [bc, hw], 0, name)],
    { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' },
    { name },
  );
}

/** How scaled-dot-product attention is computed. */
export type AttentionImpl = 'mha' | 'plain';

/**
 * Scaled dot-product attention on [B, S, heads·dh] queries and [B, L, heads·dh] keys/values,
 * scale dh^-0.5, returning [B, S, heads·dh].
 * 'mha': com.microsoft MultiHeadAttention — onnxruntime's CPU kernel processes the softmax in
 * blocks, so the [B·heads, S, L] score matrix is never held whole at 4096 tokens.
 * 'plain': MatMul/Softmax/MatMul with an optional additive mask (used for CLIP's causal mask).
 */
export function attention(
  g: GraphBuilder,
  q: Value,
  k: Value,
  v: Value,
  heads: number,
  headDim: number,
  impl: AttentionImpl,
  name: string,
  mask?: Value,
): Value {
  if (impl === 'mha' && !mask && g.contribOps) {
    return g.op1(
      'MultiHeadAttention',
      [q, k, v],
      { num_heads: heads, scale: { float: 1 / Math.sqrt(headDim) } },
      { name, domain: MS_DOMAIN },
    );
  }
  const split = (x: Value) => transpose(g, reshape(g, x, [0, 0, heads, headDim], name), [0, 2, 1, 3], name);
  const qh = scale(g, split(q), 1 / Math.sqrt(headDim), name);
  const kt = transpose(g, reshape(g, k, [0, 0, heads, headDim], name), [0, 2, 3, 1], name);
  const vh = split(v);
  const attend = (qc: Value) => {
    let scores = g.op1('MatMul', [qc, kt], {}, { name });
    if (mask) scores = add(g, scores, mask, name);
    const probs = g.op1('Softmax', [scores], { axis: -1 }, { name });
    return g.op1('MatMul', [probs, vh], {}, { name });
  };
  // A mask (CLIP's causal one) is per query, so masked attention is never chunked; it runs at 77.
  const out = mask || g.attentionChunk === 0 ? attend(qh) : attendChunked(g, qh, attend, name);
  return reshape(g, transpose(g, out, [0, 2, 1, 3], name), [0, 0, heads * headDim], name);
}

/**
 * Most query chunks one plain attention is split into; the last takes every query beyond
 * (MAX_ATTENTION_CHUNKS − 1)·chunk, so memory stays bounded up to that many tokens (16 × 1024:
 * a 1024² image's top UNet level) and only grows past it.
 */
const MAX_ATTENTION_CHUNKS = 16;

/**
 * Attention on queries qh [B, heads, S, dh] in chunks of g.attentionChunk queries, so the
 * [B·heads, S, L] score matrix is never held whole. The token count is only known at run time and
 * the graph has no control flow, so the chunks are Slices with constant bounds: Slice clamps them
 * to S, and the chunks past S are empty (S ≤ chunk runs as one chunk — no chunking for small S).
 */
function attendChunked(g: GraphBuilder, qh: Value, attend: (qc: Value) => Value, name: string): Value {
  const c = g.attentionChunk;
  const axis = g.constI64([2]);
  const parts: Value[] = [];
  for (let i = 0; i < MAX_ATTENTION_CHUNKS; i++) {
    const end = i === MAX_ATTENTION_CHUNKS - 1 ? 2 ** 62 : (i + 1) * c;
    parts.push(attend(g.op1('Slice', [qh, g.constI64([i * c]), g.constI64([end]), axis], {}, { name })));
  }
  return concat(g, parts, 2, name);
}

/** [B, C, H, W] → [B, H·W, C] token layout. */
export function toTokens(g: GraphBuilder, x: Value, name?: string): Value {
  return transpose(g, reshape(g, x, [0, 0, -1], name), [0, 2, 1], name);
}

/** [B, H·W, C] tokens back to the shape of `like` ([B, C, H, W]). */
export function fromTokens(g: GraphBuilder, t: Value, like: Value, name?: string): Value {
  return reshape(g, transpose(g, t, [0, 2, 1], name), shapeOf(g, like, name), name);
}
