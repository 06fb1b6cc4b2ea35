/**
 * Helpers for the kernel experiments (gemm.ts, conv-int8.ts): deterministic data, initializers,
 * nodes, and a one-input one-output float32 model around a node list.
 */
import { encodeModel, OnnxDataType, type ModelProtoObj, type TensorProtoObj } from '../../src/onnx/proto.js';

export type Node = ModelProtoObj['graph']['node'][number];

/** n deterministic values in [-scale, scale). */
export function lcg(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = (x / 2 ** 31 - 1) * scale;
  }
  return a;
}

export function init(name: string, dataType: number, dims: number[], d: ArrayBufferView): TensorProtoObj {
  return { name, dims, dataType, rawData: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) };
}

export function node(
  opType: string,
  input: string[],
  output: string[],
  attribute: Node['attribute'] = [],
  domain?: string,
): Node {
  return { opType, input, output, name: output[0]!, attribute, ...(domain ? { domain } : {}) };
}

/** A model with float32 input `input` and output `output` around `nodes` (opset 17 + com.microsoft). */
export function floatModel(
  nodes: Node[],
  inits: TensorProtoObj[],
  input: [string, number[]],
  output: [string, number[]],
): Uint8Array {
  const vi = ([name, dims]: [string, number[]]) => ({
    name,
    type: {
      tensorType: { elemType: OnnxDataType.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } },
    },
  });
  return encodeModel({
    irVersion: 8,
    producerName: 'bench',
    producerVersion: '1',
    opsetImport: [
      { domain: '', version: 17 },
      { domain: 'com.microsoft', version: 1 },
    ],
    metadataProps: [],
    graph: { name: 'g', node: nodes, initializer: inits, input: [vi(input)], output: [vi(output)] },
  });
}
