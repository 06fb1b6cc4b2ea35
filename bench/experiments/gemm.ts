/**
 * GEMM throughput of onnxruntime's CPU kernels on the shapes a SD 1.5 UNet step runs, fp32 and int8:
 * what the fp32 engine can reach at best, and what an int8 (VNNI) path would gain.
 *
 *   npx tsx bench/experiments/gemm.ts [--threads 2] [--runs 5]
 *
 * Forms: fp32 MatMul with a constant (prepacked) weight; com.microsoft DynamicQuantizeMatMul
 * (activations quantised per tensor to uint8 at run time, weights int8 per output channel);
 * the same split into DynamicQuantizeLinear + MatMulIntegerToFloat.
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { OnnxDataType, type TensorProtoObj } from '../../src/onnx/proto.js';
import { median } from '../measure.js';
import { floatModel, init, lcg, type Node } from './tiny-models.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    runs: { type: 'string', default: '5' },
    shapes: {
      type: 'string',
      default: '8192x320x2560,8192x320x320,2048x640x640,512x1280x5120,2048x2048x2048',
    },
    forms: { type: 'string', default: 'fp32,dqmm' },
  },
});

/** LAYERS pairs of layers K→N→K, so the arena holds the activations and the output is small. */
const LAYERS = 4;

function build(form: string, M: number, K: number, N: number): Uint8Array {
  const nodes: Node[] = [];
  const inits: TensorProtoObj[] = [];
  let x = 'a';
  for (let l = 0; l < 2 * LAYERS; l++) {
    const [k, n] = l % 2 ? [N, K] : [K, N];
    const out = l === 2 * LAYERS - 1 ? 'y' : `h${l}`;
    const one = layer(form, `l${l}`, x, out, k, n);
    nodes.push(...one.nodes);
    inits.push(...one.inits);
    x = out;
  }
  return floatModel(nodes, inits, ['a', [M, K]], ['y', [M, K]]);
}

function layer(form: string, p: string, x: string, y: string, K: number, N: number) {
  const w = lcg(K * N, 7, 1 / Math.sqrt(K));
  if (form === 'fp32') {
    return {
      nodes: [{ opType: 'MatMul', input: [x, `${p}w`], output: [y], name: `${p}mm`, attribute: [] }],
      inits: [init(`${p}w`, OnnxDataType.FLOAT, [K, N], w)],
    };
  }
  // int8 weights, symmetric per output column.
  const q = new Int8Array(K * N);
  const scales = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let mx = 0;
    for (let k = 0; k < K; k++) mx = Math.max(mx, Math.abs(w[k * N + n]!));
    scales[n] = mx / 127 || 1;
    for (let k = 0; k < K; k++) q[k * N + n] = Math.round(w[k * N + n]! / scales[n]!);
  }
  const inits = [
    init(`${p}wq`, OnnxDataType.INT8, [K, N], q),
    init(`${p}ws`, OnnxDataType.FLOAT, [N], scales),
    init(`${p}wz`, OnnxDataType.INT8, [N], new Int8Array(N)),
  ];
  if (form === 'dqmm') {
    const node = {
      opType: 'DynamicQuantizeMatMul',
      domain: 'com.microsoft',
      input: [x, `${p}wq`, `${p}ws`, `${p}wz`],
      output: [y],
      name: `${p}dqmm`,
      attribute: [],
    };
    return { nodes: [node], inits };
  }
  if (form === 'split') {
    const nodes = [
      {
        opType: 'DynamicQuantizeLinear',
        input: [x],
        output: [`${p}q`, `${p}s`, `${p}z`],
        name: `${p}dql`,
        attribute: [],
      },
      {
        opType: 'MatMulIntegerToFloat',
        domain: 'com.microsoft',
        input: [`${p}q`, `${p}wq`, `${p}s`, `${p}ws`, `${p}z`, `${p}wz`],
        output: [y],
        name: `${p}mm`,
        attribute: [],
      },
    ];
    return { nodes, inits };
  }
  throw new Error(`unknown form ${form}`);
}

for (const shape of values.shapes!.split(',')) {
  const [M, K, N] = shape.split('x').map(Number) as [number, number, number];
  const a = new ort.Tensor('float32', lcg(M * K, 3), [M, K]);
  for (const form of values.forms!.split(',')) {
    const session = await ort.InferenceSession.create(build(form, M, K, N), {
      intraOpNumThreads: Number(values.threads),
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
    await session.run({ a });
    await session.run({ a });
    const ts: number[] = [];
    for (let i = 0; i < Number(values.runs); i++) {
      const t = performance.now();
      await session.run({ a });
      ts.push((performance.now() - t) / 1000);
    }
    await session.release();
    const s = median(ts);
    console.log(
      `${shape.padEnd(18)} ${form.padEnd(6)} ${(s * 1000).toFixed(1).padStart(8)} ms  ${((2 * LAYERS * 2 * M * K * N) / s / 1e9).toFixed(0)} GFLOP/s`,
    );
  }
}
