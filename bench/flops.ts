/**
 * FLOPs of a built graph, counted statically: shapes are propagated through the GraphBuilder's
 * nodes from concrete input dims (int64 shape vectors are evaluated where Shape/Slice/Concat make
 * them), and every MatMul / FusedMatMul, Conv and MultiHeadAttention adds 2 × its multiply-adds.
 * Everything else (norms, activations, adds) is memory-bound and not counted. This is the FLOP
 * count each GEMM floor in the bench uses (docs/performance.md, "Session 7").
 */
import type { GraphBuilder } from '../src/onnx/builder.js';
import type { AttributeProtoObj } from '../src/onnx/proto.js';

export interface FlopCount {
  /** fp32 MatMul / FusedMatMul. */
  matmul: number;
  /** int8 MatMulInteger(ToFloat) / DynamicQuantizeMatMul (the int8 UNet's linears and convolutions). */
  int8: number;
  conv: number;
  attention: number;
  total: number;
}

interface Val {
  dims: number[];
  /** Values of small int64 tensors (shape vectors), when known. */
  ints?: number[];
}

const attr = (a: AttributeProtoObj[], name: string) => a.find((x) => x.name === name);
const attrInt = (a: AttributeProtoObj[], name: string, dflt: number) => {
  const v = attr(a, name)?.i;
  return v === undefined ? dflt : Number(v);
};
const attrInts = (a: AttributeProtoObj[], name: string) => attr(a, name)?.ints?.map(Number);
const prod = (d: readonly number[]) => d.reduce((x, y) => x * y, 1);

function broadcast(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`cannot broadcast [${a}] with [${b}]`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

const ELEMENTWISE = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Pow',
  'Where',
  'Equal',
  'Less',
  'Greater',
  'Max',
  'Min',
]);
const SAME_SHAPE = new Set([
  'Cos',
  'Sin',
  'Exp',
  'Log',
  'Sqrt',
  'Erf',
  'Neg',
  'Abs',
  'Relu',
  'Sigmoid',
  'Tanh',
  'Softmax',
  'QuickGelu',
  'Gelu',
  'Reciprocal',
  'FastGelu',
  'BiasGelu',
  'Cast',
  'Identity',
  'InstanceNormalization',
  'LayerNormalization',
  'SkipLayerNormalization',
  'GroupNormalization',
  'QuantizeLinear',
  'DequantizeLinear',
]);

/**
 * Count the FLOPs of `g` for graph inputs of the given dims (every input must be named). Throws on
 * an op it cannot follow, so a new op in the builders cannot silently drop out of the count.
 */
export function countGraphFlops(g: GraphBuilder, inputs: Record<string, number[]>): FlopCount {
  const vals = new Map<string, Val>();
  for (const [name, dims] of Object.entries(inputs)) vals.set(name, { dims });
  for (const p of g.params.values()) vals.set(p.name, { dims: p.dims });
  for (const c of g.inlines) {
    const v: Val = { dims: c.dims };
    if (c.elemType === 'int64' && c.data.byteLength <= 64 * 8) {
      v.ints = [...new BigInt64Array(c.data.slice().buffer)].map(Number);
    }
    vals.set(c.name, v);
  }
  const count: FlopCount = { matmul: 0, int8: 0, conv: 0, attention: 0, total: 0 };
  const get = (name: string, node: string): Val => {
    const v = vals.get(name);
    if (!v) throw new Error(`flops: ${node} reads ${name}, whose shape is unknown (graph input not given?)`);
    return v;
  };
  for (const n of g.nodes) {
    const ins = n.input.map((name) => (name === '' ? undefined : get(name, `${n.opType} ${n.name}`)));
    const x = ins[0];
    const set = (i: number, v: Val) => vals.set(n.output[i]!, v);
    const a = n.attribute;
    switch (n.opType) {
      case 'MatMul':
      case 'FusedMatMul':
      case 'MatMulInteger':
      case 'MatMulIntegerToFloat':
      case 'DynamicQuantizeMatMul': {
        let A = x!.dims;
        let B = ins[1]!.dims;
        if (attrInt(a, 'transA', 0)) A = [...A.slice(0, -2), A.at(-1)!, A.at(-2)!];
        if (attrInt(a, 'transB', 0)) B = [...B.slice(0, -2), B.at(-1)!, B.at(-2)!];
        const [m, k] = [A.at(-2)!, A.at(-1)!];
        const nn = B.at(-1)!;
        if (B.at(-2) !== k) throw new Error(`flops: ${n.name}: [${A}] × [${B}]`);
        const batch = broadcast(A.slice(0, -2), B.slice(0, -2));
        const flops = 2 * prod(batch) * m * k * nn;
        if (n.opType.startsWith('MatMul') || n.opType === 'FusedMatMul') {
          if (n.opType.includes('Integer')) count.int8 += flops;
          else count.matmul += flops;
        } else count.int8 += flops;
        set(0, { dims: [...batch, m, nn] });
        break;
      }
      case 'Conv': {
        const [N, , H, W] = x!.dims as [number, number, number, number];
        const [O, Cg, kh, kw] = ins[1]!.dims as [number, number, number, number];
        const s = attrInts(a, 'strides') ?? [1, 1];
        const d = attrInts(a, 'dilations') ?? [1, 1];
        const p = attrInts(a, 'pads') ?? [0, 0, 0, 0];
        const Ho = Math.floor((H + p[0]! + p[2]! - d[0]! * (kh - 1) - 1) / s[0]!) + 1;
        const Wo = Math.floor((W + p[1]! + p[3]! - d[1]! * (kw - 1) - 1) / s[1]!) + 1;
        count.conv += 2 * N * O * Ho * Wo * Cg * kh * kw;
        set(0, { dims: [N, O, Ho, Wo] });
        break;
      }
      case 'MultiHeadAttention': {
        const [B, S, D] = x!.dims as [number, number, number];
        const L = ins[1]!.dims[1]!;
        const Dv = ins[2]!.dims[2]!;
        count.attention += 2 * B * S * L * D + 2 * B * S * L * Dv;
        set(0, { dims: [B, S, Dv] });
        break;
      }
      case 'Shape': {
        const r = x!.dims.length;
        const norm = (i: number) => (i < 0 ? i + r : Math.min(i, r));
        const ints = x!.dims.slice(norm(attrInt(a, 'start', 0)), norm(attrInt(a, 'end', r)));
        set(0, { dims: [ints.length], ints });
        break;
      }
      case 'Reshape': {
        const target = ins[1]!.ints;
        if (!target) throw new Error(`flops: ${n.name}: reshape target unknown`);
        const dims = target.map((t, i) => (t === 0 ? x!.dims[i]! : t));
        const free = dims.indexOf(-1);
        if (free >= 0) dims[free] = prod(x!.dims) / -prod(dims);
        set(0, { dims });
        break;
      }
      case 'Slice': {
        const starts = ins[1]!.ints;
        const ends = ins[2]!.ints;
        const axes = ins[3]?.ints ?? starts?.map((_, i) => i);
        const steps = ins[4]?.ints ?? starts?.map(() => 1);
        if (!starts || !ends || !axes || !steps) throw new Error(`flops: ${n.name}: slice bounds unknown`);
        const dims = [...x!.dims];
        let picked: number[] | undefined = x!.ints && dims.length === 1 ? [...x!.ints] : undefined;
        axes.forEach((ax0, j) => {
          const ax = ax0 < 0 ? ax0 + dims.length : ax0;
          const d = dims[ax]!;
          const clamp = (v: number) => Math.max(0, Math.min(d, v < 0 ? v + d : v));
          const [s, e, st] = [clamp(starts[j]!), clamp(ends[j]!), steps[j]!];
          if (!(st >= 1)) throw new Error(`flops: ${n.name}: slice step ${st}`);
          dims[ax] = Math.max(0, Math.ceil((e - s) / st));
          if (picked) picked = picked.filter((_, i) => i >= s && i < e && (i - s) % st === 0);
        });
        const out: Val = { dims };
        if (picked) out.ints = picked;
        set(0, out);
        break;
      }
      case 'Concat': {
        const parts = ins.map((v) => v!);
        const r = parts[0]!.dims.length;
        const axis = (attrInt(a, 'axis', 0) + r) % r;
        const dims = [...parts[0]!.dims];
        dims[axis] = parts.reduce((s, v) => s + v.dims[axis]!, 0);
        const out: Val = { dims };
        if (r === 1 && parts.every((v) => v.ints)) out.ints = parts.flatMap((v) => v.ints!);
        set(0, out);
        break;
      }
      case 'Split': {
        const r = x!.dims.length;
        const axis = (attrInt(a, 'axis', 0) + r) % r;
        const sizes =
          ins[1]?.ints ?? attrInts(a, 'split') ?? n.output.map(() => x!.dims[axis]! / n.output.length);
        sizes.forEach((s, i) => {
          const dims = [...x!.dims];
          dims[axis] = s;
          set(i, { dims });
        });
        break;
      }
      case 'Transpose': {
        const perm = attrInts(a, 'perm') ?? x!.dims.map((_, i) => x!.dims.length - 1 - i);
        set(0, { dims: perm.map((p) => x!.dims[p]!) });
        break;
      }
      case 'DepthToSpace': {
        const b = attrInt(a, 'blocksize', 1);
        const [N, C, H, W] = x!.dims as [number, number, number, number];
        set(0, { dims: [N, C / (b * b), H * b, W * b] });
        break;
      }
      case 'SpaceToDepth': {
        const b = attrInt(a, 'blocksize', 1);
        const [N, C, H, W] = x!.dims as [number, number, number, number];
        set(0, { dims: [N, C * b * b, H / b, W / b] });
        break;
      }
      case 'Unsqueeze': {
        const axes = ins[1]?.ints ?? attrInts(a, 'axes');
        if (!axes) throw new Error(`flops: ${n.name}: unsqueeze axes unknown`);
        const r = x!.dims.length + axes.length;
        const dims = [...x!.dims];
        for (const ax of axes.map((v) => (v < 0 ? v + r : v)).sort((p, q) => p - q)) dims.splice(ax, 0, 1);
        set(0, { dims });
        break;
      }
      case 'Expand': {
        const shape = ins[1]!.ints;
        if (!shape) throw new Error(`flops: ${n.name}: expand shape unknown`);
        set(0, { dims: broadcast(x!.dims, shape) });
        break;
      }
      case 'DynamicQuantizeLinear':
        set(0, { dims: [...x!.dims] });
        set(1, { dims: [] });
        set(2, { dims: [] });
        break;
      case 'Pad': {
        const pads = ins[1]?.ints ?? attrInts(a, 'pads');
        if (!pads) throw new Error(`flops: ${n.name}: pads unknown`);
        const r = x!.dims.length;
        const axes = ins[3]?.ints ?? x!.dims.map((_, i) => i);
        const dims = [...x!.dims];
        axes.forEach((ax0, j) => {
          const ax = ax0 < 0 ? ax0 + r : ax0;
          dims[ax] = dims[ax]! + pads[j]! + pads[j + axes.length]!;
        });
        set(0, { dims });
        break;
      }
      case 'ReduceMean':
      case 'ReduceSum':
      case 'ReduceSumSquare':
      case 'ReduceMax': {
        const r = x!.dims.length;
        const axes = (ins[1]?.ints ?? attrInts(a, 'axes') ?? x!.dims.map((_, i) => i)).map((v) =>
          v < 0 ? v + r : v,
        );
        const keep = attrInt(a, 'keepdims', 1);
        const dims = x!.dims.flatMap((d, i) => (axes.includes(i) ? (keep ? [1] : []) : [d]));
        set(0, { dims });
        break;
      }
      case 'Gather': {
        const r = x!.dims.length;
        const axis = (attrInt(a, 'axis', 0) + r) % r;
        const dims = [...x!.dims.slice(0, axis), ...ins[1]!.dims, ...x!.dims.slice(axis + 1)];
        set(0, { dims });
        break;
      }
      default:
        if (ELEMENTWISE.has(n.opType)) {
          const dims = ins.slice(1).reduce((acc, v) => broadcast(acc, v!.dims), x!.dims);
          const out: Val = { dims };
          if (x!.ints && ins.every((v) => v?.ints) && dims.length === 1) {
            const op = { Add: (p: number, q: number) => p + q, Mul: (p: number, q: number) => p * q }[
              n.opType as 'Add' | 'Mul'
            ];
            if (op) out.ints = x!.ints.map((v, i) => op(v, ins[1]!.ints![i] ?? ins[1]!.ints![0]!));
          }
          set(0, out);
        } else if (SAME_SHAPE.has(n.opType)) {
          n.output.forEach((o, i) => (i === 0 ? set(0, { dims: [...x!.dims] }) : vals.set(o, { dims: [1] })));
        } else {
          throw new Error(`flops: no shape rule for ${n.opType} (${n.name})`);
        }
    }
  }
  count.total = count.matmul + count.int8 + count.conv + count.attention;
  return count;
}
