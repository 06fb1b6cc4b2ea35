/**
 * The network module types of A1111 v1.10.1's Lora extension (LoRA/LoCon incl. CP `lora_mid`,
 * LoHa, LoKr, IA3, full diff) and their `calc_updown` + `finalize_updown`, on Float32Arrays.
 * `computeUpdown(module, weight, multiplier)` gives what A1111 adds to the layer's weight.
 */
import { matmulOptions, matmulOrt } from './fast-matmul.js';
import type { LayerInfo } from './lora-keys.js';

/** A float32 tensor: shape + row-major values. */
export interface F32Tensor {
  shape: number[];
  data: Float32Array;
}

export type ModuleClass =
  'NetworkModuleLora' | 'NetworkModuleHada' | 'NetworkModuleIa3' | 'NetworkModuleLokr' | 'NetworkModuleFull';

/** One network module: the weights a file holds for one layer. */
export interface NetworkModule {
  moduleClass: ModuleClass;
  /** The first file key of the group (A1111 `network_key`). */
  networkKey: string;
  /** A1111's `sd_key`: the layer name it matched. */
  sdKey: string;
  layer: LayerInfo;
  /** Network part name (`lora_up.weight`, `hada_w1_a`, …) → tensor, already reshaped as A1111 does. */
  w: Record<string, F32Tensor>;
  alpha: number | null;
  scale: number | null;
  dim: number | null;
  /** IA3 only. */
  onInput?: boolean;
}

/** Thrown where A1111 raises a RuntimeError while applying one layer (counted, not fatal). */
export class ApplyError extends Error {}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function reshape(t: F32Tensor, shape: number[]): F32Tensor {
  let inferred = -1;
  let known = 1;
  shape.forEach((d, i) => {
    if (d === -1) inferred = i;
    else known *= d;
  });
  const total = t.data.length;
  const out = [...shape];
  if (inferred >= 0) {
    if (known === 0 || total % known !== 0) throw new ApplyError(`cannot reshape [${t.shape}] to [${shape}]`);
    out[inferred] = total / known;
  }
  if (numelOf(out) !== total) throw new ApplyError(`cannot reshape [${t.shape}] to [${shape}]`);
  return { shape: out, data: t.data };
}

/** [m,k] @ [k,n] → [m,n], accumulated in float64 and rounded once. */
function matmul(a: F32Tensor, b: F32Tensor): F32Tensor {
  const [m, k] = a.shape as [number, number];
  const [k2, n] = b.shape as [number, number];
  if (a.shape.length !== 2 || b.shape.length !== 2 || k !== k2)
    throw new ApplyError(`cannot multiply [${a.shape}] by [${b.shape}]`);
  const out = new Float32Array(m * n);
  const row = new Float64Array(n);
  const A = a.data;
  const B = b.data;
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const av = A[i * k + p]!;
      if (av === 0) continue;
      const off = p * n;
      for (let j = 0; j < n; j++) row[j] += av * B[off + j]!;
    }
    out.set(row, i * n);
  }
  return { shape: [m, n], data: out };
}

/** `matmul`, on onnxruntime's GEMM when the product is large (fast-matmul.ts). */
async function matmulAuto(a: F32Tensor, b: F32Tensor): Promise<F32Tensor> {
  const [m, k] = a.shape as [number, number];
  const n = b.shape[1]!;
  if (
    a.shape.length !== 2 ||
    b.shape.length !== 2 ||
    k !== b.shape[0] ||
    m * k * n < matmulOptions.minMacsForOrt
  )
    return matmul(a, b);
  return { shape: [m, n], data: await matmulOrt(a.data, b.data, m, k, n) };
}

function to2d(t: F32Tensor): F32Tensor {
  return reshape(t, [t.shape[0] ?? 1, -1]);
}

/** lyco_helpers.rebuild_conventional: (up @ down).reshape(shape), with the optional dyn_dim cut. */
async function rebuildConventional(
  up: F32Tensor,
  down: F32Tensor,
  shape: number[],
  dynDim: number | null,
): Promise<F32Tensor> {
  let u = to2d(up);
  let d = to2d(down);
  if (dynDim !== null) {
    const r = Math.max(0, Math.min(dynDim, u.shape[1]!));
    const cols = u.shape[1]!;
    const ud = new Float32Array(u.shape[0]! * r);
    for (let i = 0; i < u.shape[0]!; i++) ud.set(u.data.subarray(i * cols, i * cols + r), i * r);
    u = { shape: [u.shape[0]!, r], data: ud };
    const rd = Math.min(dynDim, d.shape[0]!);
    d = { shape: [rd, d.shape[1]!], data: d.data.subarray(0, rd * d.shape[1]!) };
  }
  return reshape(await matmulAuto(u, d), shape);
}

/** einsum('n m k l, i n, m j -> i j k l', mid, up, down). */
function rebuildCp(up: F32Tensor, down: F32Tensor, mid: F32Tensor): F32Tensor {
  const u = to2d(up);
  const d = to2d(down);
  if (mid.shape.length !== 4) throw new ApplyError(`lora_mid must be 4-D, got [${mid.shape}]`);
  const [n, m, kh, kw] = mid.shape as [number, number, number, number];
  const [I, n2] = u.shape as [number, number];
  const [m2, J] = d.shape as [number, number];
  if (n !== n2 || m !== m2)
    throw new ApplyError(`lora_mid [${mid.shape}] does not fit up [${u.shape}] / down [${d.shape}]`);
  const kk = kh * kw;
  // t[i, m, kk] = Σ_n up[i, n] mid[n, m, kk]
  const t = matmul(u, { shape: [n, m * kk], data: mid.data });
  const out = new Float32Array(I * J * kk);
  for (let i = 0; i < I; i++) {
    for (let j = 0; j < J; j++) {
      for (let q = 0; q < kk; q++) {
        let s = 0;
        for (let mm = 0; mm < m; mm++) s += t.data[i * m * kk + mm * kk + q]! * d.data[mm * J + j]!;
        out[(i * J + j) * kk + q] = s;
      }
    }
  }
  return { shape: [I, J, kh, kw], data: out };
}

/** lyco_helpers.make_weight_cp: out[r, j, k, l] = Σ_i Σ_a t[i, a, k, l] wb[a, j] wa[i, r]. */
function makeWeightCp(t: F32Tensor, wa: F32Tensor, wb: F32Tensor): F32Tensor {
  if (t.shape.length !== 4 || wa.shape.length !== 2 || wb.shape.length !== 2)
    throw new ApplyError(`tucker factors of shapes [${t.shape}], [${wa.shape}], [${wb.shape}] do not fit`);
  const [I, A, kh, kw] = t.shape as [number, number, number, number];
  const kk = kh * kw;
  if (wb.shape[0] !== A || wa.shape[0] !== I)
    throw new ApplyError(`tucker factors of shapes [${t.shape}], [${wa.shape}], [${wb.shape}] do not fit`);
  const J = wb.shape[1]!;
  const R = wa.shape[1]!;
  // temp[i, j, kk] = Σ_a t[i, a, kk] wb[a, j]
  const temp = new Float64Array(I * J * kk);
  for (let i = 0; i < I; i++)
    for (let a = 0; a < A; a++)
      for (let q = 0; q < kk; q++) {
        const tv = t.data[(i * A + a) * kk + q]!;
        for (let j = 0; j < J; j++) temp[(i * J + j) * kk + q] += tv * wb.data[a * J + j]!;
      }
  const out = new Float32Array(R * J * kk);
  for (let r = 0; r < R; r++)
    for (let j = 0; j < J; j++)
      for (let q = 0; q < kk; q++) {
        let s = 0;
        for (let i = 0; i < I; i++) s += temp[(i * J + j) * kk + q]! * wa.data[i * R + r]!;
        out[(r * J + j) * kk + q] = s;
      }
  return { shape: [R, J, kh, kw], data: out };
}

/** torch.kron for 2-D w1 and 2-D/4-D w2 (w1 gets trailing 1-dims first), reshaped to `shape`. */
function makeKron(shape: number[], w1: F32Tensor, w2: F32Tensor): F32Tensor {
  if (w1.shape.length !== 2) throw new ApplyError(`lokr_w1 must be 2-D, got [${w1.shape}]`);
  const [a, b] = w1.shape as [number, number];
  const w2m = to2d(w2);
  const [o, i] = w2m.shape as [number, number];
  const rows = a * o;
  const cols = b * i;
  const out = new Float32Array(rows * cols);
  for (let r1 = 0; r1 < a; r1++)
    for (let c1 = 0; c1 < b; c1++) {
      const s = w1.data[r1 * b + c1]!;
      for (let r2 = 0; r2 < o; r2++) {
        const base = (r1 * o + r2) * cols + c1 * i;
        const src = r2 * i;
        for (let c2 = 0; c2 < i; c2++) out[base + c2] = s * w2m.data[src + c2]!;
      }
    }
  return reshape({ shape: [rows, cols], data: out }, shape);
}

function need(mod: NetworkModule, part: string): F32Tensor {
  const t = mod.w[part];
  if (!t) throw new ApplyError(`${mod.networkKey}: ${part} is missing`);
  return t;
}

/** A1111's multiplier rule: `te` if 'transformer' is in the layer name's first 20 characters. */
export function multiplierKind(sdKey: string): 'te' | 'unet' {
  return sdKey.slice(0, 20).includes('transformer') ? 'te' : 'unet';
}

export function calcScale(mod: NetworkModule): number {
  if (mod.scale !== null) return mod.scale;
  if (mod.dim !== null && mod.alpha !== null) return mod.alpha / mod.dim;
  return 1.0;
}

/** `calc_updown` of each module class: the un-scaled delta and its `output_shape`. */
async function rebuild(
  mod: NetworkModule,
  orig: F32Tensor,
  dynDim: number | null,
): Promise<{ up: F32Tensor; outShape: number[] }> {
  switch (mod.moduleClass) {
    case 'NetworkModuleLora': {
      const up = need(mod, 'lora_up.weight');
      const down = need(mod, 'lora_down.weight');
      const mid = mod.w['lora_mid.weight'];
      const outShape = [up.shape[0]!, down.shape[1]!];
      if (mid) {
        outShape.push(...mid.shape.slice(2));
        return { up: rebuildCp(up, down, mid), outShape };
      }
      if (down.shape.length === 4) outShape.push(...down.shape.slice(2));
      return { up: await rebuildConventional(up, down, outShape, dynDim), outShape };
    }
    case 'NetworkModuleHada': {
      const w1a = need(mod, 'hada_w1_a');
      const w1b = need(mod, 'hada_w1_b');
      const w2a = need(mod, 'hada_w2_a');
      const w2b = need(mod, 'hada_w2_b');
      const t1 = mod.w['hada_t1'];
      const t2 = mod.w['hada_t2'];
      let outShape = [w1a.shape[0]!, w1b.shape[1]!];
      let u1: F32Tensor;
      if (t1) {
        outShape = [w1a.shape[1]!, w1b.shape[1]!, ...t1.shape.slice(2)];
        u1 = makeWeightCp(t1, w1a, w1b);
      } else {
        if (w1b.shape.length === 4) outShape.push(...w1b.shape.slice(2));
        u1 = await rebuildConventional(w1a, w1b, outShape, null);
      }
      const u2 = t2 ? makeWeightCp(t2, w2a, w2b) : await rebuildConventional(w2a, w2b, outShape, null);
      return { up: mulBroadcast(u1, u2), outShape };
    }
    case 'NetworkModuleLokr': {
      const w1 = mod.w['lokr_w1'] ?? matmul(need(mod, 'lokr_w1_a'), need(mod, 'lokr_w1_b'));
      let w2 = mod.w['lokr_w2'];
      if (!w2) {
        const t2 = mod.w['lokr_t2'];
        w2 = t2
          ? makeWeightCp(t2, need(mod, 'lokr_w2_a'), need(mod, 'lokr_w2_b'))
          : matmul(need(mod, 'lokr_w2_a'), need(mod, 'lokr_w2_b'));
      }
      let outShape = [w1.shape[0]! * w2.shape[0]!, w1.shape[1]! * w2.shape[1]!];
      if (orig.shape.length === 4) outShape = [...orig.shape];
      return { up: makeKron(outShape, w1, w2), outShape };
    }
    case 'NetworkModuleIa3': {
      let w = need(mod, 'weight');
      const outShape = [w.shape[0]!, orig.shape[1]!];
      if (mod.onInput) outShape.reverse();
      else w = reshape(w, [-1, 1]);
      return { up: mulBroadcast(orig, w), outShape };
    }
    case 'NetworkModuleFull': {
      const diff = need(mod, 'diff');
      return { up: diff, outShape: [...diff.shape] };
    }
  }
}

/** Elementwise product with torch broadcasting. */
function mulBroadcast(a: F32Tensor, b: F32Tensor): F32Tensor {
  return broadcastOp(a, b, (x, y) => x * y);
}

function broadcastShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new ApplyError(`shapes [${a}] and [${b}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

function broadcastOp(a: F32Tensor, b: F32Tensor, f: (x: number, y: number) => number): F32Tensor {
  const shape = broadcastShape(a.shape, b.shape);
  const n = shape.length;
  const total = numelOf(shape);
  const out = new Float32Array(total);
  const same = (s: number[]) => s.length === n && s.every((d, i) => d === shape[i]);
  if (same(a.shape) && same(b.shape)) {
    for (let i = 0; i < total; i++) out[i] = f(a.data[i]!, b.data[i]!);
    return { shape, data: out };
  }
  const strides = (s: number[]) => {
    const padded = [...Array<number>(n - s.length).fill(1), ...s];
    const st = new Array<number>(n).fill(0);
    let acc = 1;
    for (let i = n - 1; i >= 0; i--) {
      st[i] = padded[i] === 1 ? 0 : acc;
      acc *= padded[i]!;
    }
    return st;
  };
  const sa = strides(a.shape);
  const sb = strides(b.shape);
  const idx = new Array<number>(n).fill(0);
  for (let flat = 0; flat < total; flat++) {
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < n; d++) {
      ia += idx[d]! * sa[d]!;
      ib += idx[d]! * sb[d]!;
    }
    out[flat] = f(a.data[ia]!, b.data[ib]!);
    for (let d = n - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return { shape, data: out };
}

/**
 * What A1111 adds to the layer's current weight `orig` for this module at `multiplier`:
 * `finalize_updown(calc_updown(orig)) = rebuild · scale · multiplier`, reshaped as A1111 does,
 * zero-padded on input channels for a 9-channel inpainting conv.
 */
export async function computeUpdown(
  mod: NetworkModule,
  orig: F32Tensor,
  multiplier: number,
  dynDim: number | null = null,
): Promise<F32Tensor> {
  const { up, outShape } = await rebuild(mod, orig, dynDim);
  let updown = up;
  const bias = mod.w['bias'];
  if (bias) {
    updown = reshape(updown, bias.shape);
    updown = broadcastOp(updown, bias, (x, y) => x + y);
    updown = reshape(updown, outShape);
  }
  if (outShape.length === 4) updown = reshape(updown, outShape);
  if (updown.data.length === orig.data.length) updown = reshape(updown, orig.shape);
  const data = new Float32Array(updown.data.length);
  // torch: (updown * scale) * multiplier, each product rounded to float32.
  const s = Math.fround(calcScale(mod));
  const m = Math.fround(multiplier);
  for (let i = 0; i < data.length; i++) data[i] = Math.fround(updown.data[i]! * s) * m;
  updown = { shape: updown.shape, data };
  if (orig.shape.length === 4 && orig.shape[1] === 9 && updown.shape.length === 4 && updown.shape[1] === 4) {
    updown = padInputChannels(updown, 9);
  }
  return updown;
}

function padInputChannels(t: F32Tensor, to: number): F32Tensor {
  const [o, i, kh, kw] = t.shape as [number, number, number, number];
  const kk = kh * kw;
  const out = new Float32Array(o * to * kk);
  for (let a = 0; a < o; a++) out.set(t.data.subarray(a * i * kk, (a + 1) * i * kk), a * to * kk);
  return { shape: [o, to, kh, kw], data: out };
}

/** `weight + updown` as torch's `weight.copy_(weight + updown)`: updown must broadcast to the weight. */
export function addUpdown(weight: F32Tensor, updown: F32Tensor): F32Tensor {
  const shape = broadcastShape(weight.shape, updown.shape);
  if (shape.length !== weight.shape.length || shape.some((d, i) => d !== weight.shape[i]))
    throw new ApplyError(`delta of shape [${updown.shape}] does not fit the weight [${weight.shape}]`);
  return broadcastOp(weight, updown, (x, y) => x + y);
}
