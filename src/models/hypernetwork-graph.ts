/**
 * Hypernetworks inside the UNet graph (A1111 `apply_hypernetworks` in every CrossAttention): each
 * network holds, per width, a keys MLP and a values MLP; wherever an attention layer's key/value
 * source has a width the network knows — the text context for cross-attention, the hidden state
 * itself for self-attention — keys and values get `x + mlp(x) · multiplier`, networks in prompt
 * order. The MLPs run in the graph (self-attention needs them on each layer's own input); the
 * multipliers are graph inputs, so a strength change reuses the session.
 *
 * Weights are graph params under `hypernet.<i>.<width>.<0|1>.linear.<n>.…` (the file's own
 * numbering: 0 = keys, 1 = values), served by `HypernetWeightSource` over the checkpoint.
 */
import type { FileLocation, Tensor, TensorInfo, TensorSource } from '../formats/tensor.js';
import { float32ArrayToTensor } from '../formats/dtype.js';
import type { GraphBuilder, Value } from '../onnx/builder.js';
import { add, gelu, layerNorm, linear, mul, sub } from '../onnx/ops.js';

/**
 * One layer of a hypernetwork MLP as the graph builds it (adapters/hypernetwork.ts reads them
 * from the files; the evaluation there and the graph here follow the same list).
 */
export type HnLayer =
  | { kind: 'linear'; weight: { shape: number[]; data: Float32Array }; bias: Float32Array }
  | { kind: 'act'; name: string; fn: (x: number) => number }
  | { kind: 'prelu'; weight: Float32Array }
  | { kind: 'layernorm'; weight: Float32Array; bias: Float32Array; eps: number }
  | { kind: 'dropout'; p: number };

/** One network of a stack: its MLPs by width, [keys, values]. */
export interface UnetHypernetwork {
  layers: ReadonlyMap<number, readonly [readonly HnLayer[], readonly HnLayer[]]>;
  multiplier: number;
}

/** The hypernetworks of a UNet call, in prompt order. */
export interface UnetHypernetworks {
  /**
   * Identifies the networks' weights (files and their order), not the multipliers: the UNet graph
   * variant is cached under it.
   */
  key: string;
  stack: readonly UnetHypernetwork[];
}

/** Graph input of network i's multiplier ([1], float32). */
export const hypernetMultiplierInput = (i: number) => `hypernet.${i}.multiplier`;

const prefixOf = (i: number, width: number, kv: 0 | 1, n: number) =>
  `hypernet.${i}.${width}.${kv}.linear.${n}`;

/** The stack's weights as named float32 tensors (the names the graph's params use). */
export function hypernetTensors(stack: readonly UnetHypernetwork[]): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const put = (key: string, data: Float32Array, shape: number[]) =>
    out.set(key, float32ArrayToTensor(data, shape));
  stack.forEach((net, i) => {
    for (const [width, pair] of net.layers) {
      pair.forEach((layers, kv) => {
        layers.forEach((l, n) => {
          const p = prefixOf(i, width, kv as 0 | 1, n);
          if (l.kind === 'linear') {
            put(`${p}.weight`, l.weight.data, [...l.weight.shape]);
            put(`${p}.bias`, l.bias, [l.bias.length]);
          } else if (l.kind === 'layernorm') {
            put(`${p}.weight`, l.weight, [l.weight.length]);
            put(`${p}.bias`, l.bias, [l.bias.length]);
          } else if (l.kind === 'prelu') {
            put(`${p}.weight`, l.weight, [1]);
          }
        });
      });
    }
  });
  return out;
}

/**
 * The checkpoint plus the hypernetworks' weights (in memory: no file location, so runtime/weights.ts
 * inlines them beside the checkpoint's in-place weights).
 */
export class HypernetWeightSource implements TensorSource {
  readonly path: string;
  readonly format: TensorSource['format'];
  readonly metadata: Record<string, string>;

  constructor(
    private readonly base: TensorSource,
    private readonly extra: ReadonlyMap<string, Tensor>,
  ) {
    this.path = base.path;
    this.format = base.format;
    this.metadata = base.metadata;
  }
  keys(): string[] {
    return [...this.base.keys(), ...this.extra.keys()];
  }
  has(name: string): boolean {
    return this.extra.has(name) || this.base.has(name);
  }
  info(name: string): TensorInfo | undefined {
    const t = this.extra.get(name);
    return t ? { name, dtype: t.dtype, shape: [...t.shape] } : this.base.info(name);
  }
  async read(name: string): Promise<Tensor> {
    return this.extra.get(name) ?? this.base.read(name);
  }
  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.extra.get(name);
    if (!t) return this.base.readFloat32(name);
    return new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
  }
  location(name: string): FileLocation | undefined {
    return this.extra.has(name) ? undefined : this.base.location(name);
  }
  derivedFrom(name: string): FileLocation | undefined {
    return this.extra.has(name) ? undefined : this.base.derivedFrom?.(name);
  }
  async close(): Promise<void> {
    // The base belongs to the model.
  }
}

/** torch.nn activations by A1111's names, as ONNX opset 17 ops (elementwise, any float type). */
function activation(g: GraphBuilder, name: string, x: Value, p: string): Value {
  const c = (v: number) => g.constFloat([v], [], 'hn_act');
  const op = (t: string, v: Value, attrs: Record<string, { float: number }> = {}) =>
    g.op1(t, [v], attrs, { name: p });
  const clip = (v: Value, lo: number, hi: number) => g.op1('Clip', [v, c(lo), c(hi)], {}, { name: p });
  switch (name) {
    case 'relu':
      return op('Relu', x);
    case 'leakyrelu':
      return op('LeakyRelu', x, { alpha: { float: 0.01 } });
    case 'rrelu': // eval mode: the mean of the slope range (1/8, 1/3)
      return op('LeakyRelu', x, { alpha: { float: (1 / 8 + 1 / 3) / 2 } });
    case 'elu':
      return op('Elu', x, { alpha: { float: 1 } });
    case 'celu':
      return op('Celu', x, { alpha: { float: 1 } });
    case 'selu':
      return op('Selu', x);
    case 'swish': // A1111 maps "swish" to nn.Hardswish
    case 'hardswish':
      return op('HardSwish', x);
    case 'tanh':
      return op('Tanh', x);
    case 'sigmoid':
      return op('Sigmoid', x);
    case 'silu':
      return mul(g, x, op('Sigmoid', x), p);
    case 'softplus':
      return op('Softplus', x);
    case 'mish':
      return mul(g, x, op('Tanh', op('Softplus', x)), p);
    case 'gelu':
      return gelu(g, x, p);
    case 'relu6':
      return clip(x, 0, 6);
    case 'hardtanh':
      return clip(x, -1, 1);
    case 'hardsigmoid': // torch: relu6(x + 3) / 6
      return op('HardSigmoid', x, { alpha: { float: 1 / 6 }, beta: { float: 0.5 } });
    case 'logsigmoid':
      return op('Neg', op('Softplus', op('Neg', x)));
    case 'softsign':
      return op('Softsign', x);
    case 'tanhshrink':
      return sub(g, x, op('Tanh', x), p);
    case 'hardshrink':
      return op('Shrink', x, { lambd: { float: 0.5 }, bias: { float: 0 } });
    case 'softshrink':
      return op('Shrink', x, { lambd: { float: 0.5 }, bias: { float: 0.5 } });
    default:
      throw new Error(`hypernetwork activation "${name}" has no graph form`);
  }
}

/** One MLP of network i at `width` on x [.., width]; its output width equals the input's. */
function mlp(
  g: GraphBuilder,
  layers: readonly HnLayer[],
  x: Value,
  i: number,
  width: number,
  kv: 0 | 1,
): Value {
  let h = x;
  let w = width;
  layers.forEach((l, n) => {
    const p = prefixOf(i, width, kv, n);
    switch (l.kind) {
      case 'linear': {
        const [o, inF] = l.weight.shape as [number, number];
        // Small and rare: float32 even in an int8 graph.
        h = linear(g, h, p, inF, o, true, { int8: false });
        w = o;
        break;
      }
      case 'act':
        h = activation(g, l.name, h, p);
        break;
      case 'prelu':
        h = g.op1('PRelu', [h, g.param(`${p}.weight`, [1])], {}, { name: p });
        break;
      case 'layernorm':
        h = layerNorm(g, h, p, w, l.eps);
        break;
      case 'dropout':
        break; // identity at inference
    }
  });
  if (w !== width) throw new Error(`hypernetwork ${i}: its width-${width} MLP ends at width ${w}`);
  return h;
}

/**
 * The stack in a graph: `multipliers` are its graph inputs; `apply(k, v, width)` gives the keys and
 * values an attention layer reads from sources k and v of that width (undefined when no network
 * has a layer of that width: the layer is left as it is).
 */
export function hypernetGraph(g: GraphBuilder, hn: UnetHypernetworks) {
  const multipliers = hn.stack.map((_, i) => g.input(hypernetMultiplierInput(i), 'float32', [1]));
  const apply = (k: Value, v: Value, width: number): [Value, Value] | undefined => {
    let hit = false;
    hn.stack.forEach((net, i) => {
      const pair = net.layers.get(width);
      if (!pair) return;
      hit = true;
      const m = multipliers[i]!;
      const p = `hypernet.${i}.${width}`;
      k = add(g, k, mul(g, mlp(g, pair[0], k, i, width, 0), m, p), p);
      v = add(g, v, mul(g, mlp(g, pair[1], v, i, width, 1), m, p), p);
    });
    return hit ? [k, v] : undefined;
  };
  return { multipliers, apply };
}
