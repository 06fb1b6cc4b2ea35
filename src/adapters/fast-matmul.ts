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

let patchSession: Promise<ort.InferenceSession> | undefined;

function lowRankPatchSession(): Promise<ort.InferenceSession> {
  if (!patchSession) {
    const g = new GraphBuilder('lora-patch', new MemoryTensorSource(new Map()));
    const w = g.input('w', 'float32', ['o', 'i']);
    const u = g.input('u', 'float32', ['o', 'r']);
    const d = g.input('d', 'float32', ['r', 'i']);
    const s = g.input('s', 'float32', []);
    const m = g.input('m', 'float32', []);
    // A1111's order of float32 operations: ((up @ down) * scale) * multiplier, then weight + that.
    const updown = g.op1('Mul', [g.op1('Mul', [g.op1('MatMul', [u, d]), s]), m]);
    g.output(g.op1('Add', [w, updown]), 'out');
    const bytes = encodeModel(
      g.toModel(() => {
        throw new Error('the LoRA patch graph has no weights');
      }),
    );
    // 'disabled': no fusion may reorder the products (a fused alpha would round differently).
    patchSession = ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
    patchSession.catch(() => (patchSession = undefined));
  }
  return patchSession;
}

/** `w + ((u @ d) · scale) · multiplier` over flat [o, i] views, in one onnxruntime call. */
export async function patchLowRankOrt(
  w: Float32Array,
  u: Float32Array,
  d: Float32Array,
  o: number,
  r: number,
  i: number,
  scale: number,
  multiplier: number,
): Promise<Float32Array> {
  const sess = await lowRankPatchSession();
  matmulStats.ortCalls++;
  const out = await sess.run({
    w: new ort.Tensor('float32', w, [o, i]),
    u: new ort.Tensor('float32', u, [o, r]),
    d: new ort.Tensor('float32', d, [r, i]),
    s: new ort.Tensor('float32', new Float32Array([scale]), []),
    m: new ort.Tensor('float32', new Float32Array([multiplier]), []),
  });
  return out.out!.data as Float32Array;
}
