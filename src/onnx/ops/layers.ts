/**
 * Layer helpers over GraphBuilder: each takes the checkpoint key prefix of the layer (`prefix`)
 * and reads `${prefix}.weight` / `${prefix}.bias` with the shape the layer needs, so a model
 * file's key tree and the code mirror each other. Where the graph asks for CPU kernel forms,
 * channels-last or int8, a layer hands over to its form in ops/cpu-forms.ts.
 */
import { MS_DOMAIN, type GraphBuilder, type Value } from '../builder.js';
import {
  conv2dNhwc,
  conv3x3Winograd,
  groupNormNhwc,
  matMulInt8,
  quantizeDynamic,
  upsampleConv2xNhwc,
  upsampleConv2xPhases,
} from './cpu-forms.js';
import {
  add,
  chunkSlots,
  mul,
  padCircular,
  reshape,
  scale,
  shapeOf,
  splitEqual,
  sub,
  transpose,
  upsampleNearest2x,
} from './primitives.js';

/**
 * 2-D convolution, weights [out, in, k, k], symmetric padding: zeros, or wrapped around the edges
 * when the graph is built with `circularPadding` (only padded convs change, as in torch).
 * In an NHWC graph it is a matrix product (conv2dNhwc), in int8 unless `int8: false`.
 * `winograd`: a 3×3 stride-1 zero-padded conv on an input of even height and width (the caller
 * knows) runs as conv3x3Winograd where the graph uses CPU forms.
 */
export function conv2d(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inCh: number,
  outCh: number,
  k: number,
  opts: { stride?: number; pad?: number; bias?: boolean; int8?: boolean; winograd?: boolean } = {},
): Value {
  const stride = opts.stride ?? 1;
  const pad = opts.pad ?? (k - 1) / 2;
  if (g.layout === 'nhwc') {
    const int8 = g.int8 && opts.int8 !== false;
    const y = conv2dNhwc(g, x, prefix, inCh, outCh, k, stride, pad, opts.bias !== false, int8);
    // A 1×1 stride-1 conv on channels-last is a Linear: its branch is the same two products.
    return k === 1 && stride === 1 ? withLowRankBranch(g, y, x, prefix, inCh, outCh) : y;
  }
  const winograd = opts.winograd && k === 3 && stride === 1 && pad === 1 && opts.bias !== false;
  if (winograd && g.cpuForms && !g.circularPadding && !g.float16) {
    return conv3x3Winograd(g, x, prefix, inCh, outCh);
  }
  const w = g.param(`${prefix}.weight`, [outCh, inCh, k, k]);
  const b = opts.bias === false ? null : g.param(`${prefix}.bias`, [outCh]);
  const circular = g.circularPadding && pad > 0;
  const input = circular ? padCircular(g, x, pad, prefix) : x;
  const p = circular ? 0 : pad;
  const y = g.op1(
    'Conv',
    b ? [input, w, b] : [input, w],
    { kernel_shape: [k, k], strides: [stride, stride], pads: [p, p, p, p] },
    { name: prefix },
  );
  const branch = k === 1 && stride === 1 ? g.lowRankBranch(prefix, inCh, outCh) : undefined;
  if (!branch) return y;
  // NCHW 1×1: the factors as [r, in, 1, 1] and [out, r, 1, 1] convolution weights (kohya's own).
  const asKernel = (v: Value) => reshape(g, v, [0, 0, 1, 1], `${prefix}.lora`);
  const low = g.op1('Conv', [x, asKernel(branch.down)], { kernel_shape: [1, 1] }, { name: `${prefix}.lora` });
  const up = g.op1('Conv', [low, asKernel(branch.up)], { kernel_shape: [1, 1] }, { name: `${prefix}.lora` });
  return add(g, y, up, `${prefix}.lora`);
}

/**
 * torch Linear on the last axis: y = x·Wᵀ + b with W stored [out, in]. Without contrib ops the
 * transpose of the initializer is constant-folded by onnxruntime at session creation. In an int8
 * graph it multiplies in int8 unless `int8: false` (small or outlier-prone inputs stay float32).
 */
export function linear(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inF: number,
  outF: number,
  bias = true,
  opts: { int8?: boolean } = {},
): Value {
  if (g.int8 && opts.int8 !== false)
    return withLowRankBranch(
      g,
      matMulInt8(g, quantizeDynamic(g, x, prefix), prefix, inF, outF, bias),
      x,
      prefix,
      inF,
      outF,
    );
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
  return withLowRankBranch(g, y, x, prefix, inF, outF);
}

/**
 * y + (x·Dᵀ)·Uᵀ where layer `prefix` has a low-rank branch (GraphOptions.lowRankBranches; x and y
 * with features on the last axis), else y. Two thin products: 2·r·(in + out) / (in·out) of the
 * layer's own multiply-adds.
 */
function withLowRankBranch(
  g: GraphBuilder,
  y: Value,
  x: Value,
  prefix: string,
  inF: number,
  outF: number,
): Value {
  const b = g.lowRankBranch(prefix, inF, outF);
  if (!b) return y;
  const low = matMulTransB(g, x, b.down, `${prefix}.lora`);
  return add(g, y, matMulTransB(g, low, b.up, `${prefix}.lora`), `${prefix}.lora`);
}

/** x·Wᵀ for W [n, k] (FusedMatMul reads W as given; without contrib ops a Transpose first). */
function matMulTransB(g: GraphBuilder, x: Value, w: Value, name: string): Value {
  if (g.contribOps)
    return g.op1('FusedMatMul', [x, w], { transB: 1, alpha: { float: 1 } }, { name, domain: MS_DOMAIN });
  return g.op1('MatMul', [x, transpose(g, w, [1, 0], name)], {}, { name });
}

/**
 * A Linear layer split by output channels into parts of `sizes` (e.g. GEGLU's value and gate
 * halves). In an int8 graph each part is its own product on the once-quantized input, which
 * saves a Split pass over the widest activation of the network; otherwise Linear + Split.
 */
export function linearSplit(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inF: number,
  sizes: number[],
  name?: string,
): Value[] {
  const outF = sizes.reduce((a, b) => a + b, 0);
  if (!g.int8) return splitEqual(g, linear(g, x, prefix, inF, outF), -1, sizes, name);
  const xq = quantizeDynamic(g, x, prefix);
  const branch = g.lowRankBranch(prefix, inF, outF);
  const low = branch && matMulTransB(g, x, branch.down, `${prefix}.lora`);
  let start = 0;
  return sizes.map((n) => {
    let part = matMulInt8(g, xq, prefix, inF, n, true, [start, start + n]);
    if (branch && low) {
      // This part's rows of U: [n, r].
      const rows = g.op1(
        'Slice',
        [branch.up, g.constI64([start]), g.constI64([start + n]), g.constI64([0])],
        {},
        { name: `${prefix}.lora` },
      );
      part = add(g, part, matMulTransB(g, low, rows, `${prefix}.lora`), `${prefix}.lora`);
    }
    start += n;
    return part;
  });
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
 * per-channel affine (the form onnxruntime's CPU provider runs as one fused kernel pass). The
 * statistics are float32 in float16 graphs too, as torch's GroupNorm32 computes them.
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
  if (g.layout === 'nhwc') return groupNormNhwc(g, x, prefix, channels, groups, eps);
  const gamma = g.param(`${prefix}.weight`, [channels], [channels, 1, 1]);
  const beta = g.param(`${prefix}.bias`, [channels], [channels, 1, 1]);
  const grouped = g.toFloat32(reshape(g, x, [0, groups, -1], prefix), prefix);
  let normed32: Value;
  if (g.cpuForms) {
    const ones = g.constF32(new Float32Array(groups).fill(1), [groups], 'ones');
    const zeros = g.constF32(new Float32Array(groups), [groups], 'zeros');
    normed32 = g.op1(
      'InstanceNormalization',
      [grouped, ones, zeros],
      { epsilon: { float: eps } },
      { name: prefix },
    );
  } else {
    // Centred before squaring, as torch does: no cancellation however few values a group has.
    const mean = g.op1('ReduceMean', [grouped], { axes: [2], keepdims: 1 }, { name: prefix });
    const d = sub(g, grouped, mean, prefix);
    const variance = g.op1(
      'ReduceMean',
      [mul(g, d, d, prefix)],
      { axes: [2], keepdims: 1 },
      { name: prefix },
    );
    const std = g.op1('Sqrt', [add(g, variance, g.constF32([eps], [], 'eps'), prefix)], {}, { name: prefix });
    normed32 = g.op1('Div', [d, std], {}, { name: prefix });
  }
  const normed = g.toCompute(normed32, prefix);
  const back = reshape(g, normed, shapeOf(g, x, prefix), prefix);
  return add(g, mul(g, back, gamma, prefix), beta, prefix);
}

/**
 * Nearest ×2 upsampling then a 3×3 convolution (stride 1, pad 1: the UNet's and the VAE's
 * `Upsample` layers), computed at the input's resolution. Each of the four output phases (row
 * parity a, column parity b) depends on a 2×2 neighbourhood of input pixels through a 2×2 kernel
 * whose taps are sums of the 3×3 kernel's, so the four phases are 2×2 convolutions (16 multiplies
 * per input pixel and channel pair instead of 36 on the upsampled image) interleaved by
 * DepthToSpace. Exact up to the rounding of the summed weights. The phase kernels are
 * Slice/Add/Concat of the checkpoint's weight, folded into constants by onnxruntime when the
 * session is created. Channels-last graphs: upsampleConv2xNhwc.
 */
export function upsampleConv2x(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inCh: number,
  outCh: number,
): Value {
  if (g.layout === 'nhwc') return upsampleConv2xNhwc(g, x, prefix, inCh, outCh);
  if (!g.cpuForms) return conv2d(g, upsampleNearest2x(g, x, prefix), prefix, inCh, outCh, 3);
  return upsampleConv2xPhases(g, x, prefix, inCh, outCh);
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
 * [B·heads, S, L] score matrix is never held whole. S ≤ chunk runs as one chunk.
 */
function attendChunked(g: GraphBuilder, qh: Value, attend: (qc: Value) => Value, name: string): Value {
  const slots = chunkSlots(g, qh, 2, g.attentionChunk, MAX_ATTENTION_CHUNKS, name);
  return slots.joinResults(slots.parts.map(attend));
}
