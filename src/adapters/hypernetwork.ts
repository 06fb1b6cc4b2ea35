/**
 * A1111 hypernetworks (`modules/hypernetworks/hypernetwork.py`): a `.pt` file (read by the
 * restricted unpickler) holding, per context width, two MLPs — one for the cross-attention
 * keys, one for the values — applied as `x + mlp(x) · multiplier`. Current files carry
 * `layer_structure`, `activation_func`, `is_layer_norm`, `dropout_structure`, … beside the
 * weights; legacy files hold only `{width: [sd_k, sd_v]}` with `linear1`/`linear2` keys.
 * Dropout is identity at inference but takes a slot in the `nn.Sequential` numbering, which
 * the state-dict keys (`linear.0`, `linear.2`, …) follow.
 */
import { readTorchFile } from '../formats/torch.js';
import type { HnLayer } from '../models/hypernetwork-graph.js';
import { toFloat32 } from '../formats/dtype.js';
import type { Tensor } from '../formats/tensor.js';
import { UserError } from '../util/errors.js';
import type { F32Tensor } from './lora-modules.js';

type Act = (x: number) => number;

function erf(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse for GELU at float32; use a series/continued fraction.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: converges quickly here.
    let sum = x;
    let term = x;
    const x2 = x * x;
    for (let n = 1; n < 60; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for |x| ≥ 2.5.
  let f = ax;
  let c = ax;
  let d = 0;
  for (let n = 1; n < 100; n++) {
    const an = n / 2;
    d = ax + an * d;
    d = d === 0 ? 1e-300 : 1 / d;
    c = ax + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  return x > 0 ? 1 - erfc : erfc - 1;
}

const softplus = (x: number) => (x > 20 ? x : Math.log1p(Math.exp(x)));
const SELU_ALPHA = 1.6732632423543772;
const SELU_SCALE = 1.0507009873554805;

/** torch.nn activations by A1111's names (its dict: lower-cased class names, `swish` = Hardswish). */
const ACTIVATIONS: Record<string, Act> = {
  relu: (x) => (x > 0 ? x : 0),
  leakyrelu: (x) => (x >= 0 ? x : 0.01 * x),
  elu: (x) => (x > 0 ? x : Math.expm1(x)),
  swish: (x) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6,
  hardswish: (x) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6,
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  silu: (x) => x / (1 + Math.exp(-x)),
  mish: (x) => x * Math.tanh(softplus(x)),
  softplus,
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  relu6: (x) => Math.min(Math.max(x, 0), 6),
  selu: (x) => SELU_SCALE * (x > 0 ? x : SELU_ALPHA * Math.expm1(x)),
  celu: (x) => (x > 0 ? x : Math.expm1(x)),
  hardtanh: (x) => Math.min(Math.max(x, -1), 1),
  hardsigmoid: (x) => Math.min(Math.max(x / 6 + 0.5, 0), 1),
  logsigmoid: (x) => -softplus(-x),
  softsign: (x) => x / (1 + Math.abs(x)),
  tanhshrink: (x) => x - Math.tanh(x),
  hardshrink: (x) => (Math.abs(x) > 0.5 ? x : 0),
  softshrink: (x) => (x > 0.5 ? x - 0.5 : x < -0.5 ? x + 0.5 : 0),
  // RReLU at inference: a leaky ReLU with the mean of its slope range (1/8, 1/3).
  rrelu: (x) => (x >= 0 ? x : ((1 / 8 + 1 / 3) / 2) * x),
};

/** The activation names we run (A1111's: torch.nn class names lower-cased, `swish` = Hardswish). */
export const HYPERNETWORK_ACTIVATIONS: readonly string[] = Object.keys(ACTIVATIONS);

/** An activation layer by A1111's name (undefined for a name A1111 would refuse). */
export function activationLayer(name: string): HnLayer | undefined {
  const fn = Object.hasOwn(ACTIVATIONS, name) ? ACTIVATIONS[name] : undefined;
  return fn ? { kind: 'act', name, fn } : undefined;
}

export type { HnLayer };

export interface Hypernetwork {
  name: string;
  layerStructure: number[];
  activationFunc: string | null;
  addLayerNorm: boolean;
  useDropout: boolean;
  activateOutput: boolean;
  lastLayerDropout: boolean;
  dropoutStructure: number[];
  weightInit: string;
  /** Context width → [keys MLP, values MLP]. */
  layers: Map<number, [HnLayer[], HnLayer[]]>;
}

/** A1111 `parse_dropout_structure`. */
export function parseDropoutStructure(
  layers: number[],
  useDropout: boolean,
  lastLayerDropout: boolean,
): number[] {
  if (!useDropout) return layers.map(() => 0);
  const out = [0];
  for (let i = 0; i < layers.length - 3; i++) out.push(0.3);
  out.push(lastLayerDropout ? 0.3 : 0);
  out.push(0);
  return out;
}

function bad(path: string, why: string): UserError {
  return new UserError(`${path}: not a usable hypernetwork: ${why}`);
}

function isTensor(x: unknown): x is Tensor {
  return typeof x === 'object' && x !== null && 'dtype' in x && 'shape' in x && 'data' in x;
}

function numArray(v: unknown, what: string, path: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x)))
    throw bad(path, `${what} is not a list of numbers`);
  return v as number[];
}

/** Build one MLP as A1111's HypernetworkModule.__init__ lays out its nn.Sequential, then load `sd`. */
function buildModule(hn: Omit<Hypernetwork, 'layers'>, dim: number, sd: unknown, path: string): HnLayer[] {
  if (typeof sd !== 'object' || sd === null || Array.isArray(sd))
    throw bad(path, `width ${dim}: state dict is not a dict`);
  const state = new Map<string, Tensor>();
  for (const [k, v] of Object.entries(sd as Record<string, unknown>)) {
    if (k === '_metadata') continue;
    if (!isTensor(v)) throw bad(path, `width ${dim}: ${k} is not a tensor`);
    // fix_old_state_dict
    const renamed =
      {
        'linear1.bias': 'linear.0.bias',
        'linear1.weight': 'linear.0.weight',
        'linear2.bias': 'linear.1.bias',
        'linear2.weight': 'linear.1.weight',
      }[k] ?? k;
    state.set(renamed, v);
  }
  const ls = hn.layerStructure;
  const seq: {
    kind: HnLayer['kind'];
    name?: string;
    width?: number;
    shape?: [number, number];
    p?: number;
  }[] = [];
  for (let i = 0; i < ls.length - 1; i++) {
    const inW = Math.trunc(dim * ls[i]!);
    const outW = Math.trunc(dim * ls[i + 1]!);
    seq.push({ kind: 'linear', shape: [outW, inW] });
    const act = hn.activationFunc;
    if (act === 'linear' || act === null || (i >= ls.length - 2 && !hn.activateOutput)) {
      // no activation
    } else if (act === 'prelu') {
      seq.push({ kind: 'prelu' });
    } else if (act in ACTIVATIONS) {
      seq.push({ kind: 'act', name: act });
    } else {
      throw bad(path, `unsupported activation function "${act}"`);
    }
    if (hn.addLayerNorm) seq.push({ kind: 'layernorm', width: outW });
    const p = hn.dropoutStructure[i + 1] ?? 0;
    if (p > 0) seq.push({ kind: 'dropout', p });
  }
  const used = new Set<string>();
  const take = (key: string, shape: number[]): Float32Array => {
    const t = state.get(key);
    if (!t) throw bad(path, `width ${dim}: ${key} is missing (layer structure [${ls}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, j) => d !== shape[j]))
      throw bad(path, `width ${dim}: ${key} has shape [${t.shape}], expected [${shape}]`);
    used.add(key);
    const data = toFloat32(t);
    for (const v of data) if (!Number.isFinite(v)) throw bad(path, `${key} holds NaN or infinite values`);
    return data;
  };
  const out: HnLayer[] = seq.map((s, idx): HnLayer => {
    switch (s.kind) {
      case 'linear':
        return {
          kind: 'linear',
          weight: { shape: [...s.shape!], data: take(`linear.${idx}.weight`, s.shape!) },
          bias: take(`linear.${idx}.bias`, [s.shape![0]]),
        };
      case 'prelu':
        return { kind: 'prelu', weight: take(`linear.${idx}.weight`, [1]) };
      case 'act':
        return { kind: 'act', name: s.name!, fn: ACTIVATIONS[s.name!]! };
      case 'layernorm':
        return {
          kind: 'layernorm',
          weight: take(`linear.${idx}.weight`, [s.width!]),
          bias: take(`linear.${idx}.bias`, [s.width!]),
          eps: 1e-5,
        };
      default:
        return { kind: 'dropout', p: s.p! };
    }
  });
  const extra = [...state.keys()].filter((k) => !used.has(k));
  if (extra.length)
    throw bad(path, `width ${dim}: unexpected keys ${extra.join(', ')} for layer structure [${ls}]`);
  return out;
}

/** Read a hypernetwork `.pt` (current or legacy format). Bad files are UserErrors. */
export async function loadHypernetwork(path: string, name?: string): Promise<Hypernetwork> {
  const root = await readTorchFile(path);
  if (typeof root !== 'object' || root === null || Array.isArray(root))
    throw bad(path, 'the file does not hold a dict');
  const d = root as Record<string, unknown>;
  const get = <T>(k: string, def: T): T => (k in d && d[k] !== undefined ? (d[k] as T) : def);
  const layerStructure = numArray(
    get<unknown>('layer_structure', [1, 2, 1]) ?? [1, 2, 1],
    'layer_structure',
    path,
  );
  if (layerStructure.length < 2 || layerStructure[0] !== 1 || layerStructure[layerStructure.length - 1] !== 1)
    throw bad(path, `layer_structure [${layerStructure}] must start and end with 1`);
  const activationFunc = get<unknown>('activation_func', null);
  if (activationFunc !== null && typeof activationFunc !== 'string')
    throw bad(path, 'activation_func is not a string');
  let dropoutStructure = get<unknown>('dropout_structure', null);
  const useDropout =
    Array.isArray(dropoutStructure) && dropoutStructure.some((x) => x)
      ? true
      : Boolean(get<unknown>('use_dropout', false));
  const lastLayerDropout = Boolean(get<unknown>('last_layer_dropout', false));
  if (dropoutStructure === null)
    dropoutStructure = parseDropoutStructure(layerStructure, useDropout, lastLayerDropout);
  const ds = numArray(dropoutStructure, 'dropout_structure', path);
  const weightInit = get<unknown>('weight_initialization', 'Normal');
  const base: Omit<Hypernetwork, 'layers'> = {
    name:
      typeof d.name === 'string' ? d.name : (name ?? path.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '')),
    layerStructure,
    activationFunc: activationFunc as string | null,
    addLayerNorm: Boolean(get<unknown>('is_layer_norm', false)),
    useDropout,
    activateOutput: Boolean(get<unknown>('activate_output', true)),
    lastLayerDropout,
    dropoutStructure: ds,
    weightInit: typeof weightInit === 'string' ? weightInit : 'Normal',
  };
  if (name !== undefined) base.name = name;
  const layers = new Map<number, [HnLayer[], HnLayer[]]>();
  for (const [k, v] of Object.entries(d)) {
    if (!/^\d+$/.test(k)) continue;
    const dim = Number(k);
    if (dim <= 0 || dim > 1 << 16) throw bad(path, `context width ${k} is out of range`);
    if (!Array.isArray(v) || v.length !== 2)
      throw bad(path, `width ${k}: expected a pair of state dicts (keys, values)`);
    layers.set(dim, [buildModule(base, dim, v[0], path), buildModule(base, dim, v[1], path)]);
  }
  if (layers.size === 0) throw bad(path, 'it holds no MLP for any context width');
  return { ...base, layers };
}

/** One MLP over the rows of x [.., dim] in float32 (each layer's output rounded to float32). */
export function runMlp(layers: readonly HnLayer[], x: F32Tensor): F32Tensor {
  const dim = x.shape[x.shape.length - 1]!;
  const rows = x.data.length / dim;
  let cur = x.data;
  let width = dim;
  for (const layer of layers) {
    switch (layer.kind) {
      case 'linear': {
        const [o, i] = layer.weight.shape as [number, number];
        if (i !== width) throw new UserError(`hypernetwork layer expects width ${i}, got ${width}`);
        const W = layer.weight.data;
        const next = new Float32Array(rows * o);
        for (let r = 0; r < rows; r++) {
          const xr = r * i;
          for (let a = 0; a < o; a++) {
            let s = 0;
            const wr = a * i;
            for (let b = 0; b < i; b++) s += cur[xr + b]! * W[wr + b]!;
            next[r * o + a] = s + layer.bias[a]!;
          }
        }
        cur = next;
        width = o;
        break;
      }
      case 'act': {
        const next = new Float32Array(cur.length);
        for (let j = 0; j < cur.length; j++) next[j] = layer.fn(cur[j]!);
        cur = next;
        break;
      }
      case 'prelu': {
        const a = layer.weight[0]!;
        const next = new Float32Array(cur.length);
        for (let j = 0; j < cur.length; j++) next[j] = cur[j]! >= 0 ? cur[j]! : a * cur[j]!;
        cur = next;
        break;
      }
      case 'layernorm': {
        const next = new Float32Array(cur.length);
        for (let r = 0; r < rows; r++) {
          const o = r * width;
          let mean = 0;
          for (let j = 0; j < width; j++) mean += cur[o + j]!;
          mean /= width;
          let v = 0;
          for (let j = 0; j < width; j++) v += (cur[o + j]! - mean) ** 2;
          const inv = 1 / Math.sqrt(v / width + layer.eps);
          for (let j = 0; j < width; j++)
            next[o + j] = (cur[o + j]! - mean) * inv * layer.weight[j]! + layer.bias[j]!;
        }
        cur = next;
        break;
      }
      case 'dropout':
        break; // identity at inference
    }
  }
  return { shape: [...x.shape.slice(0, -1), width], data: cur };
}

/** `x + mlp(x) · multiplier`. */
function residual(layers: readonly HnLayer[], x: F32Tensor, multiplier: number): F32Tensor {
  const y = runMlp(layers, x);
  if (y.data.length !== x.data.length) throw new UserError('hypernetwork MLP changes the width of its input');
  const m = Math.fround(multiplier);
  const out = new Float32Array(x.data.length);
  for (let i = 0; i < out.length; i++) out[i] = x.data[i]! + Math.fround(y.data[i]! * m);
  return { shape: [...x.shape], data: out };
}

/** A1111 `apply_single_hypernetwork`: the k and v MLPs for the input's width, or the inputs unchanged. */
export function applyHypernetwork(
  hn: Hypernetwork,
  contextK: F32Tensor,
  contextV: F32Tensor,
  multiplier: number,
): { k: F32Tensor; v: F32Tensor } {
  const pair = hn.layers.get(contextK.shape[contextK.shape.length - 1]!);
  if (!pair) return { k: contextK, v: contextV };
  return { k: residual(pair[0], contextK, multiplier), v: residual(pair[1], contextV, multiplier) };
}

/** A1111 `apply_hypernetworks`: each network in order, keys through the k MLPs, values through the v MLPs. */
export function applyHypernetworks(
  stack: readonly { hypernetwork: Hypernetwork; multiplier: number }[],
  context: F32Tensor,
): { k: F32Tensor; v: F32Tensor } {
  let k = context;
  let v = context;
  for (const { hypernetwork, multiplier } of stack)
    ({ k, v } = applyHypernetwork(hypernetwork, k, v, multiplier));
  return { k, v };
}
