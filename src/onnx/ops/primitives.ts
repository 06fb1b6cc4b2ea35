/**
 * Graph primitives over GraphBuilder: elementwise ops, activations, shape and layout helpers
 * that read no weights. The layers (ops/layers.ts) and CPU kernel forms (ops/cpu-forms.ts) are
 * made of these.
 */
import { MS_DOMAIN, type GraphBuilder, type Value } from '../builder.js';

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
