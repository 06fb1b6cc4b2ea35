/**
 * A small typed ONNX graph builder. Values are named edges; weights ("params") are declared by
 * their checkpoint key with the shape the network expects, checked against the TensorSource at
 * build time so a wrong checkpoint fails with the tensor's name, not deep inside onnxruntime.
 * How param bytes reach onnxruntime (in place in the checkpoint, or a converted cache file) is
 * decided later by runtime/weights.ts; the builder only records which key each initializer reads.
 */
import type { FileLocation, Tensor, TensorInfo, TensorSource } from '../formats/tensor.js';
import { float32ToFloat16Bits } from '../formats/dtype.js';
import { numel } from '../formats/tensor.js';
import { UserError } from '../util/errors.js';
import {
  AttributeType,
  OnnxDataType,
  type AttributeProtoObj,
  type ModelProtoObj,
  type NodeProtoObj,
  type TensorProtoObj,
  type ValueInfoProtoObj,
} from './proto.js';

export const OPSET = 17;
export const MS_DOMAIN = 'com.microsoft';

/** A dimension: a fixed size or a symbolic name (free dimension). */
export type Dim = number | string;

export type ElemType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'bool';

const ELEM_CODE: Record<ElemType, number> = {
  float32: OnnxDataType.FLOAT,
  float16: OnnxDataType.FLOAT16,
  int64: OnnxDataType.INT64,
  int32: OnnxDataType.INT32,
  uint8: OnnxDataType.UINT8,
  bool: OnnxDataType.BOOL,
};

/**
 * Plain attention over more queries than this runs in query chunks of this size (at 4096 tokens,
 * 4 chunks: 781 MB instead of 2386 MB and 0.43 s instead of 0.67 s; docs/performance.md).
 */
export const DEFAULT_ATTENTION_CHUNK = 1024;

/** Input name prefixes of a low-rank branch's factors (GraphOptions.lowRankBranches). */
export const LORA_DOWN = 'lora_down:';
export const LORA_UP = 'lora_up:';

export interface GraphOptions {
  contribOps?: boolean;
  /**
   * Forms tuned for onnxruntime's CPU kernels (default true): upsampling layers as four 2×2
   * convolutions at the input's resolution (ops.upsampleConv2x), GroupNorm as one
   * InstanceNormalization. false gives the portable forms GPU providers get: Resize + 3×3 Conv, and
   * GroupNorm statistics in two explicit passes (webgpu's Conv computed 2×2 kernels on 2×2 inputs
   * wrongly, and its InstanceNormalization loses precision on small groups: docs/performance.md).
   */
  cpuForms?: boolean;
  /** Pad every padded Conv circularly (A1111 "Tiling": torch padding_mode='circular'). */
  circularPadding?: boolean;
  /** Query chunk size of plain (MatMul/Softmax) attention; 0 = never chunk. See ops.attention. */
  attentionChunk?: number;
  /**
   * Activation layout inside the graph: 'nchw' (default) or 'nhwc' (channels last: convolutions
   * as im2col matrix products, tokens without transposes; what the int8 graph needs).
   */
  layout?: Layout;
  /**
   * Multiply the large weights in int8 (dynamic uint8 activations × int8 weights, onnxruntime's
   * VNNI kernels): the opt-in fast UNet. Needs layout 'nhwc', contrib ops, and a source that
   * provides `#q8` tensors (runtime/quantize.ts).
   */
  int8?: boolean;
  /**
   * Compute in float16 (GPU providers): weights and constants are float16; float32 graph inputs
   * are cast on entry and graph outputs cast back, so callers still exchange float32. What float16
   * cannot hold stays float32 (the timestep sinusoid of t ≈ 1000, GroupNorm statistics).
   */
  float16?: boolean;
  /**
   * Layers (checkpoint key prefixes, e.g. `model.diffusion_model.middle_block.1.proj_in`) that get
   * a low-rank branch fed as graph inputs, float32 inputs
   * `lora_down:<prefix>` [r, in] and `lora_up:<prefix>` [out, r] (kohya's layout; r a per-layer
   * free dim), y = layer(x) + (x·Dᵀ)·Uᵀ. A LoRA
   * set then changes feeds, not weights (adapters/lora-branches.ts).
   */
  lowRankBranches?: ReadonlySet<string>;
}

export type Layout = 'nchw' | 'nhwc';

/** An edge of the graph (its name changes when it is exposed as a named graph output). */
export interface Value {
  readonly name: string;
}

export type AttrValue = number | string | number[] | string[] | { float: number } | { floats: number[] };

/** A weight read from the checkpoint: key, the dims the graph sees (same element count), source shape. */
export interface ParamInit {
  name: string;
  key: string;
  dims: number[];
  /** Shape of the tensor in the checkpoint. */
  shape: number[];
  /**
   * Element type onnxruntime gets: float32 or float16 (converted from any float dtype; float16 in
   * float16 graphs) or int8 as stored.
   */
  dtype: 'F32' | 'F16' | 'I8';
}

/** A small constant made by the builder, stored inside the model file. */
export interface InlineInit {
  name: string;
  elemType: ElemType;
  dims: number[];
  data: Uint8Array;
}

/** Serialised param: either a TensorProto pointing at external data, or one with raw bytes. */
export type ParamResolver = (p: ParamInit) => TensorProtoObj;

export class GraphBuilder {
  readonly nodes: NodeProtoObj[] = [];
  readonly params = new Map<string, ParamInit>();
  readonly inlines: InlineInit[] = [];
  private readonly inputs: ValueInfoProtoObj[] = [];
  private readonly outputs: ValueInfoProtoObj[] = [];
  private readonly names = new Set<string>();
  private readonly constCache = new Map<string, Value>();
  private counter = 0;
  private usesMs = false;

  /**
   * Whether com.microsoft contrib ops may be used (FusedMatMul, MultiHeadAttention): true for
   * onnxruntime's CPU and CUDA providers; false gives standard ONNX ops only, for other providers.
   */
  readonly contribOps: boolean;

  /** Convolutions wrap around the image edges instead of padding with zeros (seamless tiling). */
  readonly circularPadding: boolean;

  /** Query chunk size of plain attention (0 = whole); see GraphOptions.attentionChunk. */
  readonly attentionChunk: number;

  readonly layout: Layout;
  readonly int8: boolean;
  readonly cpuForms: boolean;
  readonly float16: boolean;
  /** The element type of activations, weights and `constFloat` constants. */
  readonly floatType: 'float32' | 'float16';
  readonly lowRankBranches: ReadonlySet<string>;
  /** The branches the graph has so far: prefix → [in, out]. */
  readonly branchInputs = new Map<string, [number, number]>();
  /** DynamicQuantizeLinear outputs per quantized value, so a tensor feeding several int8 ops is quantized once. */
  readonly quantizedValues = new Map<string, [q: Value, scale: Value, zeroPoint: Value]>();

  constructor(
    readonly graphName: string,
    /** Where params come from; shapes are checked against it. */
    readonly source: TensorSource,
    opts: GraphOptions = {},
  ) {
    this.contribOps = opts.contribOps ?? true;
    this.circularPadding = opts.circularPadding ?? false;
    this.attentionChunk = opts.attentionChunk ?? DEFAULT_ATTENTION_CHUNK;
    if (!Number.isInteger(this.attentionChunk) || this.attentionChunk < 0)
      throw new Error(`graph ${graphName}: attentionChunk must be a non-negative integer`);
    this.layout = opts.layout ?? 'nchw';
    this.int8 = opts.int8 ?? false;
    this.cpuForms = opts.cpuForms ?? true;
    this.float16 = opts.float16 ?? false;
    this.floatType = this.float16 ? 'float16' : 'float32';
    this.lowRankBranches = opts.lowRankBranches ?? new Set();
    if (this.float16 && (this.layout !== 'nchw' || this.int8))
      throw new Error(`graph ${graphName}: float16 needs layout 'nchw' and no int8`);
    if (this.int8 && (this.layout !== 'nhwc' || !this.contribOps))
      throw new Error(`graph ${graphName}: int8 needs layout 'nhwc' and contrib ops`);
  }

  private fresh(base: string): string {
    let name = base;
    while (this.names.has(name)) name = `${base}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  /**
   * A graph input. In a float16 graph a float32 input is declared float32 and returned cast to
   * float16, unless `keepFloat32` (values float16 cannot hold, like timesteps near 1000).
   */
  input(name: string, elemType: ElemType, dims: Dim[], opts: { keepFloat32?: boolean } = {}): Value {
    if (this.names.has(name)) throw new Error(`graph ${this.graphName}: duplicate name ${name}`);
    this.names.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    const v = { name };
    return elemType === 'float32' && !opts.keepFloat32 ? this.toCompute(v, name) : v;
  }

  /**
   * The inputs of layer `prefix`'s low-rank branch (GraphOptions.lowRankBranches), or undefined
   * when it has none. Each layer is asked once.
   */
  lowRankBranch(prefix: string, inF: number, outF: number): { down: Value; up: Value } | undefined {
    if (!this.lowRankBranches.has(prefix)) return undefined;
    if (this.branchInputs.has(prefix))
      throw new Error(`graph ${this.graphName}: layer ${prefix} has two branches`);
    this.branchInputs.set(prefix, [inF, outF]);
    const r = `r:${prefix}`;
    return {
      down: this.input(`${LORA_DOWN}${prefix}`, 'float32', [r, inF]),
      up: this.input(`${LORA_UP}${prefix}`, 'float32', [outF, r]),
    };
  }

  /** Branch layers the finished graph has no layer for (a builder checks this is empty). */
  missingBranches(): string[] {
    return [...this.lowRankBranches].filter((p) => !this.branchInputs.has(p));
  }

  /** `v` (float32 or the compute type) in the compute type: a Cast in float16 graphs. */
  toCompute(v: Value, name?: string): Value {
    return this.float16 ? this.op1('Cast', [v], { to: ELEM_CODE.float16 }, { name }) : v;
  }

  /** `v` in float32: a Cast in float16 graphs (for statistics float16 would round or overflow). */
  toFloat32(v: Value, name?: string): Value {
    return this.float16 ? this.op1('Cast', [v], { to: ELEM_CODE.float32 }, { name }) : v;
  }

  /** Expose `v` as a graph output called `name` (an Identity node is added when the name differs). */
  output(v: Value, name: string, elemType: ElemType = 'float32', dims: Dim[] = []): void {
    if (this.outputs.some((o) => o.name === name)) {
      throw new Error(`graph ${this.graphName}: duplicate output name ${name}`);
    }
    let out = v;
    if (this.float16 && elemType === 'float32') {
      // Callers get float32 whatever the graph computes in (a no-op Cast for float32 values).
      let from = v.name;
      if (from === name) {
        from = this.fresh(`${name}/computed`);
        for (const n of this.nodes) n.output = n.output.map((s) => (s === name ? from : s));
        for (const n of this.nodes) n.input = n.input.map((s) => (s === name ? from : s));
      } else if (this.names.has(name)) {
        throw new Error(`graph ${this.graphName}: duplicate output name ${name}`);
      }
      this.names.add(name);
      const cast = node('Cast', [from], [name], `${name}/Cast`);
      cast.attribute = [attribute('to', ELEM_CODE.float32)];
      this.nodes.push(cast);
      out = { name };
    } else if (v.name !== name) {
      if (this.names.has(name)) throw new Error(`graph ${this.graphName}: duplicate output name ${name}`);
      this.names.add(name);
      const producer = this.nodes.find((n) => n.output.includes(v.name));
      const alreadyOut = this.outputs.some((o) => o.name === v.name);
      if (producer && !alreadyOut) {
        // Rename the edge itself: an Identity feeding a graph output trips onnxruntime's
        // Pad→Conv fusion when the value has other consumers (invalid graph at level 'basic').
        const old = v.name;
        for (const n of this.nodes) {
          n.input = n.input.map((s) => (s === old ? name : s));
          n.output = n.output.map((s) => (s === old ? name : s));
        }
        (v as { name: string }).name = name;
      } else {
        this.nodes.push(node('Identity', [v.name], [name], `${name}/Identity`));
        out = { name };
      }
    }
    const info = valueInfo(out.name, elemType, dims);
    if (dims.length === 0) delete (info.type.tensorType as { shape?: unknown }).shape;
    this.outputs.push(info);
  }

  /**
   * A weight from the checkpoint. `shape` is what the network needs; a missing tensor or one of
   * another shape is a UserError naming the tensor. `view` reinterprets it with other dims of the
   * same size (e.g. a GroupNorm gamma [C] seen as [C,1,1]) at no cost.
   */
  param(key: string, shape: readonly number[], view?: readonly number[]): Value {
    return this.addParam(key, shape, view, this.float16 ? 'F16' : 'F32');
  }

  /** A computed int8 weight (`<key>#q8` of runtime/quantize.ts) of `shape` [K, N]. */
  paramInt8(key: string, shape: readonly number[]): Value {
    return this.addParam(key, shape, undefined, 'I8');
  }

  private addParam(
    key: string,
    shape: readonly number[],
    view: readonly number[] | undefined,
    dtype: ParamInit['dtype'],
  ): Value {
    const existing = this.params.get(key);
    const dims = [...(view ?? shape)];
    if (existing && sameDims(existing.dims, dims)) return { name: existing.name };
    if (this.source instanceof ShapeRecorder) {
      this.source.record(key, shape);
      const name = this.fresh(existing ? `${key}#${dims.join('x')}` : key);
      this.params.set(existing ? name : key, { name, key, dims, shape: [...shape], dtype });
      return { name };
    }
    const info = this.source.info(key);
    if (!info) {
      throw new UserError(
        `${this.source.path}: tensor "${key}" is missing (needed by the ${this.graphName}); ` +
          'is this a Stable Diffusion 1.x checkpoint, and is the file complete?',
      );
    }
    if (!sameDims(info.shape, shape)) {
      throw new UserError(
        `${this.source.path}: tensor "${key}" has shape [${info.shape.join(',')}] but the ${this.graphName} ` +
          `needs [${shape.join(',')}]; the checkpoint does not match the detected architecture`,
      );
    }
    if (dtype === 'I8' ? info.dtype !== 'I8' : !['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) {
      throw new UserError(
        `${this.source.path}: tensor "${key}" is ${info.dtype}, expected ${dtype === 'I8' ? 'int8' : 'a float tensor'}`,
      );
    }
    if (view && numel(view) !== numel(shape))
      throw new Error(`param ${key}: view ${view} does not fit ${shape}`);
    const name = this.fresh(existing ? `${key}#${dims.join('x')}` : key);
    this.params.set(existing ? name : key, { name, key, dims, shape: [...shape], dtype });
    return { name };
  }

  /** An inline constant in the compute type (small: scales, masks) — float16 in float16 graphs. */
  constFloat(values: ArrayLike<number>, dims: number[], hint = 'const'): Value {
    if (!this.float16) return this.constF32(values, dims, hint);
    const data = Uint16Array.from(Array.from(values, float32ToFloat16Bits));
    return this.inline('float16', dims, new Uint8Array(data.buffer), hint);
  }

  /** An inline float32 constant whatever the compute type (Resize scales, float32 islands). */
  constF32(values: ArrayLike<number>, dims: number[], hint = 'const'): Value {
    const data = Float32Array.from(values);
    return this.inline('float32', dims, new Uint8Array(data.buffer), hint);
  }

  constI64(values: ArrayLike<number>, dims: number[] = [values.length], hint = 'shape'): Value {
    const data = BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
    return this.inline('int64', dims, new Uint8Array(data.buffer), hint);
  }

  private inline(elemType: ElemType, dims: number[], data: Uint8Array, hint: string): Value {
    const cacheKey = `${elemType}|${dims.join(',')}|${Buffer.from(data).toString('base64')}`;
    const hit = data.byteLength <= 4096 ? this.constCache.get(cacheKey) : undefined;
    if (hit) return hit;
    const name = this.fresh(`const/${hint}`);
    this.inlines.push({ name, elemType, dims, data });
    const v = { name };
    if (data.byteLength <= 4096) this.constCache.set(cacheKey, v);
    return v;
  }

  /** Add a node; returns its outputs. `name` is the layer (checkpoint key prefix) used in node names. */
  op(
    opType: string,
    inputs: (Value | null)[],
    attrs: Record<string, AttrValue> = {},
    opts: { name?: string; outputs?: number; domain?: string } = {},
  ): Value[] {
    const layer = opts.name ?? opType;
    const nOut = opts.outputs ?? 1;
    const outs: string[] = [];
    for (let i = 0; i < nOut; i++) outs.push(this.fresh(`${layer}/${opType}${nOut > 1 ? `:${i}` : ''}`));
    const n = node(
      opType,
      inputs.map((v) => (v ? v.name : '')),
      outs,
      this.fresh(`${layer}/${opType}#node`),
    );
    if (opts.domain) {
      n.domain = opts.domain;
      if (opts.domain === MS_DOMAIN) this.usesMs = true;
    }
    n.attribute = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    this.nodes.push(n);
    return outs.map((name) => ({ name }));
  }

  /** Single-output convenience. */
  op1(
    opType: string,
    inputs: (Value | null)[],
    attrs: Record<string, AttrValue> = {},
    opts: { name?: string; domain?: string } = {},
  ): Value {
    return this.op(opType, inputs, attrs, opts)[0]!;
  }

  /** The ModelProto with params serialised by `resolve`. */
  toModel(resolve: ParamResolver, metadata: Record<string, string> = {}): ModelProtoObj {
    const initializer: TensorProtoObj[] = [];
    for (const p of this.params.values()) initializer.push(resolve(p));
    for (const c of this.inlines) {
      initializer.push({ name: c.name, dims: c.dims, dataType: ELEM_CODE[c.elemType], rawData: c.data });
    }
    const opsetImport = [{ domain: '', version: OPSET }];
    if (this.usesMs) opsetImport.push({ domain: MS_DOMAIN, version: 1 });
    return {
      irVersion: 8,
      producerName: 'sdstudio',
      producerVersion: '1',
      opsetImport,
      metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.graphName,
        node: this.nodes,
        initializer,
        input: this.inputs,
        output: this.outputs,
      },
    };
  }
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function node(opType: string, input: string[], output: string[], name: string): NodeProtoObj {
  return { opType, input, output, name, attribute: [] };
}

function valueInfo(name: string, elemType: ElemType, dims: Dim[]): ValueInfoProtoObj {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_CODE[elemType],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): AttributeProtoObj {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use {float: x} for floats`);
    return { name, type: AttributeType.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'number')) return { name, type: AttributeType.INTS, ints: v as number[] };
    return {
      name,
      type: AttributeType.STRINGS,
      strings: (v as string[]).map((s) => new TextEncoder().encode(s)),
    };
  }
  if ('float' in v) return { name, type: AttributeType.FLOAT, f: v.float };
  return { name, type: AttributeType.FLOATS, floats: v.floats };
}

/**
 * A stand-in source that accepts every param and records the shape the network asks for: build
 * a graph against it to learn a configuration's full weight list (random-weight benchmarks).
 */
export class ShapeRecorder implements TensorSource {
  readonly path = '<shape recorder>';
  readonly format = 'memory' as const;
  readonly metadata: Record<string, string> = {};
  readonly shapes = new Map<string, number[]>();

  record(key: string, shape: readonly number[]): void {
    this.shapes.set(key, [...shape]);
  }
  keys(): string[] {
    return [...this.shapes.keys()].sort();
  }
  has(name: string): boolean {
    return this.shapes.has(name);
  }
  info(name: string): TensorInfo | undefined {
    const shape = this.shapes.get(name);
    return shape && { name, dtype: 'F32', shape: [...shape] };
  }
  read(name: string): Promise<Tensor> {
    return Promise.reject(new Error(`shape recorder holds no data (asked for ${name})`));
  }
  readFloat32(name: string): Promise<Float32Array> {
    return Promise.reject(new Error(`shape recorder holds no data (asked for ${name})`));
  }
  location(): FileLocation | undefined {
    return undefined;
  }
  async close(): Promise<void> {}
}
