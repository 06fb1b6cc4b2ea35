/**
 * Layer helpers over GraphBuilder: each takes the checkpoint key prefix of the layer (`prefix`)
 * and reads `${prefix}.weight` / `${prefix}.bias` with the shape the layer needs, so a model
 * file's key tree and the code mirror each other.
 */
import { MS_DOMAIN, type GraphBuilder, type Value } from './builder.js';
import { OnnxDataType } from './proto.js';

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
  return mul(g, a, g.constFloat([s], [], 'scale'), name);
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
  const onePlus = add(g, e, g.constFloat([1], [], 'one'), name);
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
 * Circular padding of the spatial axes by `pad` on every side (torch F.pad mode='circular'), built
 * from Slice+Concat so it runs at opset 17 on every provider (Pad mode 'wrap' needs opset 19).
 */
export function padCircular(g: GraphBuilder, x: Value, pad: number, name?: string): Value {
  let y = x;
  for (const axis of g.layout === 'nhwc' ? [2, 1] : [3, 2]) {
    const ax = g.constI64([axis]);
    const tail = g.op1('Slice', [y, g.constI64([-pad]), g.constI64([2 ** 62]), ax], {}, { name });
    const head = g.op1('Slice', [y, g.constI64([0]), g.constI64([pad]), ax], {}, { name });
    y = concat(g, [tail, y, head], axis, name);
  }
  return y;
}

/** The channel axis of image activations in the graph's layout. */
export function channelAxis(g: GraphBuilder): number {
  return g.layout === 'nhwc' ? 3 : 1;
}

/** A per-sample channel vector [B, C] as [B, C, 1, 1] (NCHW) or [B, 1, 1, C] (NHWC), to add to activations. */
export function perChannel(g: GraphBuilder, v: Value, channels: number, name?: string): Value {
  return reshape(g, v, g.layout === 'nhwc' ? [0, 1, 1, channels] : [0, channels, 1, 1], name);
}

/** NCHW → NHWC. */
export function toNhwc(g: GraphBuilder, x: Value, name?: string): Value {
  return transpose(g, x, [0, 2, 3, 1], name);
}

/** NHWC → NCHW. */
export function toNchw(g: GraphBuilder, x: Value, name?: string): Value {
  return transpose(g, x, [0, 3, 1, 2], name);
}

/**
 * x quantized to uint8 per tensor at run time (DynamicQuantizeLinear: q, scale, zero point), once
 * per value however many int8 products read it.
 */
function quantizeDynamic(g: GraphBuilder, x: Value, name?: string): [Value, Value, Value] {
  let hit = g.quantizedValues.get(x.name);
  if (!hit) {
    const [q, s, z] = g.op('DynamicQuantizeLinear', [x], {}, { name, outputs: 3 });
    hit = [q!, s!, z!];
    g.quantizedValues.set(x.name, hit);
  }
  return hit;
}

/**
 * y = x·W + b in int8: x quantized dynamically, W = `${prefix}.weight#q8` [K, N] with per-column
 * scales; `rows` takes only output channels [start, end) of the layer (runtime/quantize.ts `@rows=`).
 */
function matMulInt8(
  g: GraphBuilder,
  xq: [Value, Value, Value],
  prefix: string,
  K: number,
  N: number,
  bias: boolean,
  rows?: [number, number],
  phase?: [number, number],
): Value {
  const part = rows ? `@rows=${rows[0]}:${rows[1]}` : '';
  if (rows && rows[1] - rows[0] !== N) throw new Error(`${prefix}: rows ${rows} do not give ${N} outputs`);
  // An upsampling phase kernel (runtime/quantize.ts `@up2x=ac`) shares the layer's whole bias.
  const wpart = phase ? `@up2x=${phase[0]}${phase[1]}` : part;
  const wq = g.paramInt8(`${prefix}.weight${wpart}#q8`, [K, N]);
  const ws = g.param(`${prefix}.weight${wpart}#q8scale`, [N]);
  const b = bias ? g.param(`${prefix}.bias${part}`, [N]) : null;
  return g.op1(
    'MatMulIntegerToFloat',
    [xq[0], wq, xq[1], ws, xq[2], null, b],
    {},
    { name: prefix, domain: MS_DOMAIN },
  );
}

/**
 * Convolution of NHWC x as a matrix product: the k·k shifted (and strided) views of the padded
 * input concatenated along channels (im2col, [B, Ho, Wo, k²·C]) times the weight as [k²·C, O].
 * In int8 the input is quantized first and padded with its zero point, and the weight comes from
 * runtime/quantize.ts in that row order; in float32 the weight's transpose is constant-folded by
 * onnxruntime when the session is created.
 */
function conv2dNhwc(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inCh: number,
  outCh: number,
  k: number,
  stride: number,
  pad: number,
  bias: boolean,
  int8: boolean,
): Value {
  const xq = int8 ? quantizeDynamic(g, x, prefix) : undefined;
  const src = padNhwc(g, xq ? xq[0] : x, pad, xq?.[2], prefix);
  let cols = src;
  if (k > 1 || stride > 1) {
    const views: Value[] = [];
    const axes = g.constI64([1, 2]);
    const steps = g.constI64([stride, stride]);
    for (let dy = 0; dy < k; dy++) {
      for (let dx = 0; dx < k; dx++) {
        // End −(k−1−d) leaves exactly Ho (Wo) positions for any input size and stride.
        const end = (d: number) => (d === k - 1 ? 2 ** 62 : -(k - 1 - d));
        const starts = g.constI64([dy, dx]);
        const ends = g.constI64([end(dy), end(dx)]);
        views.push(g.op1('Slice', [src, starts, ends, axes, steps], {}, { name: prefix }));
      }
    }
    cols = views.length === 1 ? views[0]! : concat(g, views, 3, prefix);
  }
  const K = k * k * inCh;
  if (xq) return matMulInt8(g, [cols, xq[1], xq[2]], prefix, K, outCh, bias);
  const w = g.param(`${prefix}.weight`, [outCh, inCh, k, k]);
  const wt = reshape(g, transpose(g, w, [2, 3, 1, 0], prefix), [K, outCh], prefix);
  const y = g.op1('MatMul', [cols, wt], {}, { name: prefix });
  return bias ? add(g, y, g.param(`${prefix}.bias`, [outCh]), prefix) : y;
}

/**
 * NHWC `x` padded by `pad` on both spatial axes: wrapped around (circularPadding) or filled with
 * `fill` (a quantized input's zero point; float zero by default).
 */
function padNhwc(g: GraphBuilder, x: Value, pad: number, fill: Value | undefined, prefix: string): Value {
  if (pad === 0) return x;
  if (g.circularPadding) return padCircular(g, x, pad, prefix);
  const pads = g.constI64([0, pad, pad, 0, 0, pad, pad, 0]);
  return g.op1('Pad', [x, pads, fill ?? g.constFloat([0], [], 'zero')], {}, { name: prefix });
}

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

/** Winograd F(2×2, 3×3) matrices: input transform Bᵀ and weight transform G (Aᵀ is in conv3x3Winograd). */
const WINOGRAD_BT = [
  [1, 0, -1, 0],
  [0, 1, 1, 0],
  [0, -1, 1, 0],
  [0, 1, 0, -1],
];
const WINOGRAD_G = [
  [1, 0, 0],
  [0.5, 0.5, 0.5],
  [0.5, -0.5, 0.5],
  [0, 0, 1],
];
/**
 * A 3×3 convolution (stride 1, zero padding 1) on [B, C, H, W] with H and W even, as Winograd
 * F(2×2, 3×3): per 2×2 output tile, 16 products of transformed inputs and weights instead of 36
 * multiplies. onnxruntime has no Winograd kernel, so the pieces are graph ops its CPU provider runs
 * well: the input transform Bᵀ·d·B is 16 depthwise 4×4 stride-2 convolutions (one per position
 * in the transformed tile), the products are 16 pointwise convolutions with the weights G·g·Gᵀ
 * (MatMuls and Slices of the checkpoint's weight, folded into constants when the session is
 * created), the output transform Aᵀ·M·A is Adds and Subs, and DepthToSpace interleaves the four
 * output phases. Exact up to rounding (≈ 1e-6 relative; `test/engine/winograd.test.ts`); measured
 * 26–28 % faster than the direct convolution at 640 and 1280 channels, 4–8 % at 320
 * (docs/performance.md). The transformed weights take 16/9 of the 3×3 weight's memory.
 */
export function conv3x3Winograd(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inCh: number,
  outCh: number,
): Value {
  const w = g.param(`${prefix}.weight`, [outCh, inCh, 3, 3]);
  const b = g.param(`${prefix}.bias`, [outCh]);
  // U = G·w·Gᵀ over the kernel axes: [O, C, 4, 4].
  const gT = g.constF32(
    [0, 1, 2].flatMap((r) => WINOGRAD_G.map((row) => row[r]!)),
    [3, 4],
  );
  const gMat = g.constF32(WINOGRAD_G.flat(), [4, 3]);
  const u = g.op1('MatMul', [gMat, g.op1('MatMul', [w, gT], {}, { name: prefix })], {}, { name: prefix });
  const axes = g.constI64([2, 3]);
  const products: Value[][] = [];
  for (let a = 0; a < 4; a++) {
    products.push([]);
    for (let c = 0; c < 4; c++) {
      const taps = WINOGRAD_BT[a]!.flatMap((ra) => WINOGRAD_BT[c]!.map((rc) => ra * rc));
      const kernel = g.op1(
        'Expand',
        [g.constF32(taps, [1, 1, 4, 4], 'winograd_bt'), g.constI64([inCh, 1, 4, 4])],
        {},
        { name: prefix },
      );
      const v = g.op1(
        'Conv',
        [x, kernel],
        { kernel_shape: [4, 4], strides: [2, 2], pads: [1, 1, 1, 1], group: inCh },
        { name: prefix },
      );
      const uac = g.op1(
        'Slice',
        [u, g.constI64([a, c]), g.constI64([a + 1, c + 1]), axes],
        {},
        { name: prefix },
      );
      // The bias rides on M₁₁, whose output-transform coefficient is 1 in every phase.
      const inputs = a === 1 && c === 1 ? [v, uac, b] : [v, uac];
      products[a]!.push(g.op1('Conv', inputs, { kernel_shape: [1, 1] }, { name: prefix }));
    }
  }
  // Aᵀ·M·A: rows [1, 1, 1, 0] and [0, 1, −1, −1], applied down the tile then across.
  const combine = (row: number, at: (i: number) => Value): Value =>
    row === 0
      ? add(g, add(g, at(0), at(1), prefix), at(2), prefix)
      : sub(g, sub(g, at(1), at(2), prefix), at(3), prefix);
  const phases: Value[] = [];
  for (const py of [0, 1]) {
    const down = [0, 1, 2, 3].map((c) => combine(py, (a) => products[a]![c]!));
    for (const px of [0, 1]) phases.push(combine(px, (c) => down[c]!));
  }
  // Channel (2·py + px)·O + o → output (o, 2i + py, 2j + px).
  return g.op1(
    'DepthToSpace',
    [concat(g, phases, 1, prefix)],
    { blocksize: 2, mode: 'DCR' },
    { name: prefix },
  );
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
 * GroupNorm of NHWC x (onnxruntime's CPU provider has no channels-last GroupNorm kernel, and
 * transposing to NCHW and back costs two passes more): statistics over [B, H·W, G, C/G] reduced
 * on axes 1 and 3, centred before squaring (as the NCHW kernel does), then one scale and shift.
 */
function groupNormNhwc(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  channels: number,
  groups: number,
  eps: number,
): Value {
  const cg = channels / groups;
  const xr = reshape(g, x, [0, -1, groups, cg], prefix);
  const axes = { axes: [1, 3], keepdims: 1 };
  const mean = g.op1('ReduceMean', [xr], axes, { name: prefix });
  const d = sub(g, xr, mean, prefix);
  // Σd² / N read in one pass (no d·d tensor written); N = H·W·C/G from the run-time shape.
  const hw = g.op1('Gather', [shapeOf(g, xr, prefix), g.constI64([1], [])], { axis: 0 }, { name: prefix });
  const count = scale(g, g.op1('Cast', [hw], { to: OnnxDataType.FLOAT }, { name: prefix }), cg, prefix);
  const sumSq = g.op1('ReduceSumSquare', [d], axes, { name: prefix });
  const variance = g.op1('Div', [sumSq, count], {}, { name: prefix });
  const rstd = g.op1(
    'Reciprocal',
    [g.op1('Sqrt', [add(g, variance, g.constFloat([eps], [], 'eps'), prefix)], {}, { name: prefix })],
    {},
    { name: prefix },
  );
  const gamma = g.param(`${prefix}.weight`, [channels], [1, 1, groups, cg]);
  const beta = g.param(`${prefix}.bias`, [channels], [1, 1, groups, cg]);
  const y = add(g, mul(g, d, mul(g, rstd, gamma, prefix), prefix), beta, prefix);
  return reshape(g, y, shapeOf(g, x, prefix), prefix);
}

/** Nearest-neighbour ×2 upsampling of [B, C, H, W] (torch F.interpolate(scale_factor=2, mode="nearest")). */
export function upsampleNearest2x(g: GraphBuilder, x: Value, name?: string): Value {
  const scales = g.layout === 'nhwc' ? [1, 2, 2, 1] : [1, 1, 2, 2];
  return g.op1(
    'Resize',
    [x, null, g.constF32(scales, [4], 'scales')],
    { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' },
    { name },
  );
}

/**
 * Taps of a 3×3 kernel that each output phase of a nearest ×2 upsampling sees along one axis:
 * even outputs read input i−1 through tap 0 and input i through taps 1 + 2; odd outputs read
 * input i through taps 0 + 1 and input i+1 through tap 2.
 */
export const UPSAMPLE_PHASE_TAPS: readonly (readonly [number, number])[][] = [
  [
    [0, 1],
    [1, 3],
  ],
  [
    [0, 2],
    [2, 3],
  ],
];

/** The 2-tap kernel of one upsampling phase along `axis` of a 3×3 kernel: single taps kept, pairs summed. */
function phaseKernelTaps(g: GraphBuilder, v: Value, axis: number, phase: number, name: string): Value {
  const slice = (start: number, end: number) =>
    g.op1('Slice', [v, g.constI64([start]), g.constI64([end]), g.constI64([axis])], {}, { name });
  return concat(
    g,
    UPSAMPLE_PHASE_TAPS[phase]!.map(([s, e]) =>
      e - s === 1 ? slice(s, e) : add(g, slice(s, s + 1), slice(s + 1, e), name),
    ),
    axis,
    name,
  );
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
  const w = g.param(`${prefix}.weight`, [outCh, inCh, 3, 3]);
  const b = g.param(`${prefix}.bias`, [outCh]);
  const phaseTaps = (v: Value, axis: number, phase: number) => phaseKernelTaps(g, v, axis, phase, prefix);
  // Circular padding (seamless tiling): pad the input once, each phase reads its shifted window.
  const padded = g.circularPadding ? padCircular(g, x, 1, prefix) : undefined;
  const phases: Value[] = [];
  for (const a of [0, 1]) {
    const rows = phaseTaps(w, 2, a);
    for (const c of [0, 1]) {
      const kernel = phaseTaps(rows, 3, c);
      // Phase (a, c) reads input rows i−1+a … i+a and columns j−1+c … j+c.
      let input = x;
      let pads = [1 - a, 1 - c, a, c];
      if (padded) {
        const end = (p: number) => (p === 0 ? -1 : 2 ** 62);
        input = g.op1(
          'Slice',
          [padded, g.constI64([a, c]), g.constI64([end(a), end(c)]), g.constI64([2, 3])],
          {},
          { name: prefix },
        );
        pads = [0, 0, 0, 0];
      }
      phases.push(g.op1('Conv', [input, kernel, b], { kernel_shape: [2, 2], pads }, { name: prefix }));
    }
  }
  // Channel (2a + c)·outCh + o → output (o, 2i + a, 2j + c).
  return g.op1(
    'DepthToSpace',
    [concat(g, phases, 1, prefix)],
    { blocksize: 2, mode: 'DCR' },
    { name: prefix },
  );
}

/**
 * upsampleConv2x on channels-last `x` [B, H, W, C]: the input is padded (and, in int8, quantized)
 * once; each phase is the im2col of its 2×2 window times its kernel — in int8 the `@up2x=ac#q8`
 * weights of runtime/quantize.ts, in float32 the folded Slice/Add of the 3×3 weight — and the four
 * phases are interleaved by two Concats into [B, H, 2, W, 2, O] = [B, 2H, 2W, O].
 */
function upsampleConv2xNhwc(g: GraphBuilder, x: Value, prefix: string, inCh: number, outCh: number): Value {
  const xq = g.int8 ? quantizeDynamic(g, x, prefix) : undefined;
  const src = padNhwc(g, xq ? xq[0] : x, 1, xq?.[2], prefix);
  const w = xq ? undefined : g.param(`${prefix}.weight`, [outCh, inCh, 3, 3]);
  const axes = g.constI64([1, 2]);
  // The padded input has H + 2 rows: a window starting at s keeps H of them.
  const end = (start: number) => (start === 2 ? 2 ** 62 : start - 2);
  const rows: Value[] = [];
  for (const a of [0, 1]) {
    const phases: Value[] = [];
    for (const c of [0, 1]) {
      const views: Value[] = [];
      for (const dy of [0, 1]) {
        for (const dx of [0, 1]) {
          const [sy, sx] = [a + dy, c + dx];
          const bounds = [g.constI64([sy, sx]), g.constI64([end(sy), end(sx)])];
          views.push(g.op1('Slice', [src, ...bounds, axes], {}, { name: prefix }));
        }
      }
      const cols = concat(g, views, 3, prefix);
      let y: Value;
      if (xq) y = matMulInt8(g, [cols, xq[1], xq[2]], prefix, 4 * inCh, outCh, true, undefined, [a, c]);
      else {
        const kernel = phaseKernelTaps(g, phaseKernelTaps(g, w!, 2, a, prefix), 3, c, prefix);
        const wt = reshape(g, transpose(g, kernel, [2, 3, 1, 0], prefix), [4 * inCh, outCh], prefix);
        y = add(
          g,
          g.op1('MatMul', [cols, wt], {}, { name: prefix }),
          g.param(`${prefix}.bias`, [outCh]),
          prefix,
        );
      }
      phases.push(g.op1('Unsqueeze', [y, g.constI64([3])], {}, { name: prefix })); // [B, H, W, 1, O]
    }
    rows.push(g.op1('Unsqueeze', [concat(g, phases, 3, prefix), g.constI64([2])], {}, { name: prefix }));
  }
  const both = concat(g, rows, 2, prefix); // [B, H, 2, W, 2, O]
  const size = g.op1(
    'Add',
    [
      g.op1('Mul', [shapeOf(g, x, prefix), g.constI64([1, 2, 2, 0])], {}, { name: prefix }),
      g.constI64([0, 0, 0, outCh]),
    ],
    {},
    { name: prefix },
  );
  return reshape(g, both, size, prefix);
}

/**
 * Nearest-resize `x` [B, C, h, w] to the spatial size of `like` [B, C', H, W] at run time (torch
 * F.interpolate(size=…, mode='nearest'): source index floor(dst·in/out)).
 */
export function resizeNearestLike(g: GraphBuilder, x: Value, like: Value, name?: string): Value {
  const dims = (v: Value, from: number, to: number) =>
    g.op1('Slice', [shapeOf(g, v, name), g.constI64([from]), g.constI64([to])], {}, { name });
  const sizes =
    g.layout === 'nhwc'
      ? concat(g, [dims(x, 0, 1), dims(like, 1, 3), dims(x, 3, 4)], 0, name)
      : concat(g, [dims(x, 0, 2), dims(like, 2, 4)], 0, name);
  return g.op1(
    'Resize',
    [x, null, null, sizes],
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
 * [B·heads, S, L] score matrix is never held whole. S ≤ chunk runs as one chunk.
 */
function attendChunked(g: GraphBuilder, qh: Value, attend: (qc: Value) => Value, name: string): Value {
  const slots = chunkSlots(g, qh, 2, g.attentionChunk, MAX_ATTENTION_CHUNKS, name);
  return slots.joinResults(slots.parts.map(attend));
}

/**
 * `x` cut along `axis` into `slots` chunks of `chunk` (the last slot takes the rest), for work
 * that must not hold all of `x`'s rows at once. The length is only known at run time and the
 * graph has no control flow, so each slot is a Slice with run-time bounds; a slot past the end
 * takes the last row again (GPU providers refuse empty tensors, e.g. webgpu's Softmax), and
 * `joinResults` concatenates per-slot results along `axis` and cuts those repeats off (they all
 * come after the real rows).
 */
export function chunkSlots(
  g: GraphBuilder,
  x: Value,
  axis: number,
  chunk: number,
  slots: number,
  name: string,
): { parts: Value[]; joinResults: (results: Value[]) => Value } {
  const ax = g.constI64([axis]);
  const length = g.op1('Slice', [shapeOf(g, x, name), ax, g.constI64([axis + 1])], {}, { name }); // [n]
  const lastRow = g.op1('Sub', [length, g.constI64([1])], {}, { name });
  const parts: Value[] = [];
  for (let i = 0; i < slots; i++) {
    const start = g.op1('Min', [g.constI64([i * chunk]), lastRow], {}, { name });
    const end =
      i === slots - 1 ? length : g.op1('Min', [g.constI64([(i + 1) * chunk]), length], {}, { name });
    const atLeastOneRow = g.op1(
      'Max',
      [end, g.op1('Add', [start, g.constI64([1])], {}, { name })],
      {},
      { name },
    );
    parts.push(g.op1('Slice', [x, start, atLeastOneRow, ax], {}, { name }));
  }
  const joinResults = (results: Value[]) =>
    g.op1('Slice', [concat(g, results, axis, name), g.constI64([0]), length, ax], {}, { name });
  return { parts, joinResults };
}

/** Image activations → [B, H·W, C] tokens (in an NHWC graph a free reshape). */
export function toTokens(g: GraphBuilder, x: Value, channels: number, name?: string): Value {
  if (g.layout === 'nhwc') return reshape(g, x, [0, -1, channels], name);
  return transpose(g, reshape(g, x, [0, 0, -1], name), [0, 2, 1], name);
}

/** [B, H·W, C] tokens back to the shape of `like` (the graph's image layout). */
export function fromTokens(g: GraphBuilder, t: Value, like: Value, name?: string): Value {
  if (g.layout === 'nhwc') return reshape(g, t, shapeOf(g, like, name), name);
  return reshape(g, transpose(g, t, [0, 2, 1], name), shapeOf(g, like, name), name);
}
