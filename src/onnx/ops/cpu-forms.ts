/**
 * CPU kernel forms: layers written as the graph ops onnxruntime's CPU provider runs fastest
 * (int8 products, channels-last convolutions as matrix products, Winograd, phase-split
 * upsampling convolutions, channels-last GroupNorm). ops/layers.ts picks one by the graph's
 * options (layout, int8, cpuForms); each is exact up to rounding against the plain form.
 */
import { MS_DOMAIN, type GraphBuilder, type Value } from '../builder.js';
import { OnnxDataType } from '../proto.js';
import { add, concat, mul, padCircular, reshape, scale, shapeOf, sub, transpose } from './primitives.js';

/**
 * x quantized to uint8 per tensor at run time (DynamicQuantizeLinear: q, scale, zero point), once
 * per value however many int8 products read it.
 */
export function quantizeDynamic(g: GraphBuilder, x: Value, name?: string): [Value, Value, Value] {
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
export function matMulInt8(
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
export function conv2dNhwc(
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
export function padNhwc(
  g: GraphBuilder,
  x: Value,
  pad: number,
  fill: Value | undefined,
  prefix: string,
): Value {
  if (pad === 0) return x;
  if (g.circularPadding) return padCircular(g, x, pad, prefix);
  const pads = g.constI64([0, pad, pad, 0, 0, pad, pad, 0]);
  return g.op1('Pad', [x, pads, fill ?? g.constFloat([0], [], 'zero')], {}, { name: prefix });
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
 * GroupNorm of NHWC x (onnxruntime's CPU provider has no channels-last GroupNorm kernel, and
 * transposing to NCHW and back costs two passes more): statistics over [B, H·W, G, C/G] reduced
 * on axes 1 and 3, centred before squaring (as the NCHW kernel does), then one scale and shift.
 */
export function groupNormNhwc(
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
export function phaseKernelTaps(g: GraphBuilder, v: Value, axis: number, phase: number, name: string): Value {
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
 * upsampleConv2x on NCHW `x` as four 2×2 phase convolutions interleaved by DepthToSpace (the
 * form described at upsampleConv2x in ops/layers.ts).
 */
export function upsampleConv2xPhases(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inCh: number,
  outCh: number,
): Value {
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
export function upsampleConv2xNhwc(
  g: GraphBuilder,
  x: Value,
  prefix: string,
  inCh: number,
  outCh: number,
): Value {
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
