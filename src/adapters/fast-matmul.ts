/**
 * Large float32 matrix products for LoRA deltas (`up @ down`) on onnxruntime's CPU GEMM (MLAS,
 * every core) instead of a JavaScript loop: a full-coverage rank-32 LoRA on SD 1.5 is ≈ 9·10⁹
 * multiply-adds, seconds in JS, a fraction of a second in MLAS (docs/performance.md). One tiny
 * session (a MatMul with dynamic dims) is built on first use and kept.
 */
import ort from 'onnxruntime-node';
import { MemoryTensorSource } from '../formats/memory.js';
import { GraphBuilder } from '../onnx/builder.js';
import { encodeModel } from '../onnx/proto.js';

/** Products with fewer multiply-adds than this stay in JavaScript (no session round trip). */
export const matmulOptions = { minMacsForOrt: 1 << 22 };
/** Products run on onnxruntime so far (tests check which path ran). */
export const matmulStats = { ortCalls: 0 };

let session: Promise<ort.InferenceSession> | undefined;

function matmulSession(): Promise<ort.InferenceSession> {
  if (!session) {
    const g = new GraphBuilder('lora-matmul', new MemoryTensorSource(new Map()));
    const a = g.input('a', 'float32', ['m', 'k']);
    const b = g.input('b', 'float32', ['k', 'n']);
    g.output(g.op1('MatMul', [a, b]), 'c');
    const bytes = encodeModel(
      g.toModel(() => {
        throw new Error('the LoRA matmul graph has no weights');
      }),
    );
    session = ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'basic' });
    session.catch(() => (session = undefined));
  }
  return session;
}

/** [m,k] @ [k,n] on onnxruntime. */
export async function matmulOrt(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
): Promise<Float32Array> {
  const s = await matmulSession();
  matmulStats.ortCalls++;
  const out = await s.run({
    a: new ort.Tensor('float32', a, [m, k]),
    b: new ort.Tensor('float32', b, [k, n]),
  });
  return out.c!.data as Float32Array;
}
