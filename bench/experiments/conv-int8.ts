/**
 * 3×3 convolution throughput at the UNet's shapes: fp32 Conv (level 'all': NCHWc kernels) against
 * int8 — DynamicQuantizeLinear (uint8 activations, per tensor) → ConvInteger (int8 weights, per output
 * channel) → Cast → Mul (x_scale · w_scale[c]) → Add (bias). A chain of 4 convs per graph.
 *
 *   npx tsx bench/experiments/conv-int8.ts [--threads 2] [--runs 5]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { OnnxDataType, type TensorProtoObj } from '../../src/onnx/proto.js';
import { median } from '../measure.js';
import { floatModel, init, lcg, node, type Node } from './tiny-models.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    runs: { type: 'string', default: '5' },
    shapes: { type: 'string', default: '2x320x64,2x640x32,2x1280x16' },
    forms: { type: 'string', default: 'fp32,im2col' },
  },
});
const CHAIN = 4;

const n = node;
const ints = (name: string, v: number[]) => ({ name, type: 7, ints: v });

function build(form: string, B: number, C: number, H: number): Uint8Array {
  const nodes: Node[] = [];
  const inits: TensorProtoObj[] = [];
  let x = 'x';
  for (let l = 0; l < CHAIN; l++) {
    const y = l === CHAIN - 1 ? 'y' : `h${l}`;
    const w = lcg(C * C * 9, 11 + l, 1 / Math.sqrt(C * 9));
    const b = lcg(C, 5 + l, 0.1);
    inits.push(init(`b${l}`, OnnxDataType.FLOAT, [C], b));
    const attrs = [ints('kernel_shape', [3, 3]), ints('pads', [1, 1, 1, 1])];
    if (form === 'fp32') {
      inits.push(init(`w${l}`, OnnxDataType.FLOAT, [C, C, 3, 3], w));
      nodes.push(n('Conv', [x, `w${l}`, `b${l}`], [y], attrs));
    } else if (form === 'im2col') {
      // NHWC activations: quantise once, pad with the zero point, 9 shifted views → [BHW, 9C] → one
      // MatMulIntegerToFloat with bias. Weights as [(kh, kw, cin), cout].
      const q = new Int8Array(9 * C * C);
      const sc = new Float32Array(C);
      for (let o = 0; o < C; o++) {
        let mx = 0;
        for (let i = 0; i < C * 9; i++) mx = Math.max(mx, Math.abs(w[o * C * 9 + i]!));
        sc[o] = mx / 127;
      }
      for (let o = 0; o < C; o++)
        for (let ci = 0; ci < C; ci++)
          for (let k = 0; k < 9; k++) q[(k * C + ci) * C + o] = Math.round(w[(o * C + ci) * 9 + k]! / sc[o]!);
      inits.push(init(`wq${l}`, OnnxDataType.INT8, [9 * C, C], q));
      inits.push(init(`ws${l}`, OnnxDataType.FLOAT, [C], sc));
      inits.push(init(`wz${l}`, OnnxDataType.INT8, [C], new Int8Array(C)));
      inits.push(init(`pads`, OnnxDataType.INT64, [8], new BigInt64Array([0n, 1n, 1n, 0n, 0n, 1n, 1n, 0n])));
      inits.push(init(`ax`, OnnxDataType.INT64, [2], new BigInt64Array([1n, 2n])));
      inits.push(
        init(`shape2d`, OnnxDataType.INT64, [2], new BigInt64Array([BigInt(B * H * H), BigInt(9 * C)])),
      );
      inits.push(
        init(
          `shape4d`,
          OnnxDataType.INT64,
          [4],
          new BigInt64Array([BigInt(B), BigInt(H), BigInt(H), BigInt(C)]),
        ),
      );
      nodes.push(n('DynamicQuantizeLinear', [x], [`q${l}`, `s${l}`, `z${l}`]));
      nodes.push(n('Pad', [`q${l}`, 'pads', `z${l}`], [`p${l}`]));
      const views: string[] = [];
      for (let dy = 0; dy < 3; dy++)
        for (let dx = 0; dx < 3; dx++) {
          const st = `st${dy}${dx}`;
          const en = `en${dy}${dx}`;
          if (l === 0) {
            inits.push(init(st, OnnxDataType.INT64, [2], new BigInt64Array([BigInt(dy), BigInt(dx)])));
            inits.push(
              init(en, OnnxDataType.INT64, [2], new BigInt64Array([BigInt(dy + H), BigInt(dx + H)])),
            );
          }
          nodes.push(n('Slice', [`p${l}`, st, en, 'ax'], [`v${l}_${dy}${dx}`]));
          views.push(`v${l}_${dy}${dx}`);
        }
      nodes.push(n('Concat', views, [`c${l}`], [{ name: 'axis', type: 2, i: 3 }]));
      nodes.push(n('Reshape', [`c${l}`, 'shape2d'], [`r${l}`]));
      nodes.push(
        n(
          'MatMulIntegerToFloat',
          [`r${l}`, `wq${l}`, `s${l}`, `ws${l}`, `z${l}`, `wz${l}`, `b${l}`],
          [`o${l}`],
          [],
          'com.microsoft',
        ),
      );
      nodes.push(n('Reshape', [`o${l}`, 'shape4d'], [y]));
    } else {
      const q = new Int8Array(C * C * 9);
      const sc = new Float32Array(C);
      for (let o = 0; o < C; o++) {
        let mx = 0;
        for (let i = 0; i < C * 9; i++) mx = Math.max(mx, Math.abs(w[o * C * 9 + i]!));
        sc[o] = mx / 127;
        for (let i = 0; i < C * 9; i++) q[o * C * 9 + i] = Math.round(w[o * C * 9 + i]! / sc[o]!);
      }
      inits.push(init(`wq${l}`, OnnxDataType.INT8, [C, C, 3, 3], q));
      inits.push(init(`ws${l}`, OnnxDataType.FLOAT, [1, C, 1, 1], sc));
      inits.push(init(`bb${l}`, OnnxDataType.FLOAT, [1, C, 1, 1], b));
      nodes.push(n('DynamicQuantizeLinear', [x], [`q${l}`, `s${l}`, `z${l}`]));
      nodes.push(n('ConvInteger', [`q${l}`, `wq${l}`, `z${l}`], [`i${l}`], attrs));
      nodes.push(n('Cast', [`i${l}`], [`f${l}`], [{ name: 'to', type: 2, i: OnnxDataType.FLOAT }]));
      nodes.push(n('Mul', [`ws${l}`, `s${l}`], [`sc${l}`]));
      nodes.push(n('Mul', [`f${l}`, `sc${l}`], [`m${l}`]));
      nodes.push(n('Add', [`m${l}`, `bb${l}`], [y]));
    }
    x = y;
  }
  const dims = form === 'im2col' ? [B, H, H, C] : [B, C, H, H];
  return floatModel(nodes, inits, ['x', dims], ['y', dims]);
}

for (const shape of values.shapes!.split(',')) {
  const [B, C, H] = shape.split('x').map(Number) as [number, number, number];
  const xd = lcg(B * C * H * H, 3);
  const xNhwc = new Float32Array(xd.length);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < H * H; i++) xNhwc[(b * H * H + i) * C + c] = xd[(b * C + c) * H * H + i]!;
  const toNchw = (o: Float32Array) => {
    const r = new Float32Array(o.length);
    for (let b = 0; b < B; b++)
      for (let c = 0; c < C; c++)
        for (let i = 0; i < H * H; i++) r[(b * C + c) * H * H + i] = o[(b * H * H + i) * C + c]!;
    return r;
  };
  const flops = CHAIN * 2 * B * C * C * 9 * H * H;
  let ref: Float32Array | undefined;
  for (const form of values.forms!.split(',')) {
    const session = await ort.InferenceSession.create(build(form, B, C, H), {
      intraOpNumThreads: Number(values.threads),
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
    const x = new ort.Tensor(
      'float32',
      form === 'im2col' ? xNhwc : xd,
      form === 'im2col' ? [B, H, H, C] : [B, C, H, H],
    );
    const raw = (await session.run({ x })).y!.data as Float32Array;
    const out = form === 'im2col' ? toNchw(raw) : raw;
    await session.run({ x });
    const ts: number[] = [];
    for (let i = 0; i < Number(values.runs); i++) {
      const t = performance.now();
      await session.run({ x });
      ts.push((performance.now() - t) / 1000);
    }
    await session.release();
    let note = '';
    if (!ref) ref = out;
    else {
      let se = 0;
      let peak = 0;
      for (let i = 0; i < out.length; i++) {
        se += (out[i]! - ref[i]!) ** 2;
        peak = Math.max(peak, Math.abs(ref[i]!));
      }
      note = `  PSNR vs first ${(10 * Math.log10((peak * peak) / (se / out.length))).toFixed(1)} dB`;
    }
    const s = median(ts);
    console.log(
      `${shape.padEnd(12)} ${form.padEnd(5)} ${(s * 1000).toFixed(1).padStart(8)} ms  ${(flops / s / 1e9).toFixed(0)} GFLOP/s${note}`,
    );
  }
}
