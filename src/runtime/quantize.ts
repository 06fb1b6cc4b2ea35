/**
 * int8 weights for the opt-in fast UNet (docs/performance.md, "int8 UNet"): a TensorSource view of
 * a checkpoint that adds, for every weight the int8 graph multiplies in integer arithmetic, two
 * computed tensors —
 *
 *   `<key>#q8`      int8 [K, N]: the weight laid out as the right-hand side of x·W, symmetric,
 *                   one scale per output channel (N);
 *   `<key>#q8scale` float32 [N]: the scales (max |w| of the channel / 127).
 *
 * Layouts: Linear [out, in] → [in, out]; Conv [out, in, kh, kw] → [(dy·kw + dx)·in + ci, out], the
 * order in which the graph concatenates the kh·kw shifted views of an NHWC input (im2col).
 * `<key>@rows=a:b` (optionally followed by either suffix) is output channels [a, b) of a tensor:
 * a layer split in parts (GEGLU's halves), each multiplied on its own. `<key>@up2x=ac` is the
 * 2×2 kernel of output phase (a, c) of an upsampling 3×3 conv (`upsamplePhaseKernel`).
 * The computed tensors have no file location; `derivedFrom` names the stored tensor so the weights
 * cache keys them by the checkpoint and converts each checkpoint once.
 */
import { readFileSync } from 'node:fs';
import { OverlaySource, type OverlayRoute } from '../formats/overlay.js';
import type { TensorInfo, TensorSource } from '../formats/tensor.js';
import { UPSAMPLE_PHASE_TAPS } from '../onnx/ops.js';

export const Q8_SUFFIX = '#q8';
export const Q8_SCALE_SUFFIX = '#q8scale';

interface Quantized {
  q: Int8Array;
  scale: Float32Array;
}

/**
 * The largest int8 weight magnitude to use on this CPU. With VNNI (AVX-512 VNNI, AVX-VNNI, AMX)
 * onnxruntime's uint8 × int8 kernels sum products in int32, so weights use ±127. Without it (AVX2,
 * older AVX-512) MLAS adds pairs of uint8·int8 products in int16 (vpmaddubsw), which saturates
 * beyond 2·255·64: weights then use ±63 (onnxruntime's own "reduce range" advice). Unknown x86
 * CPUs (no /proc/cpuinfo) get the safe range; ARM's dot-product kernels do not saturate.
 */
export function int8WeightLimit(): number {
  if (process.arch === 'arm64') return 127;
  if (process.arch !== 'x64' && process.arch !== 'ia32') return 63;
  try {
    const flags = readFileSync('/proc/cpuinfo', 'utf8');
    return /\b(avx512_vnni|avx_vnni|amx_int8)\b/.test(flags) ? 127 : 63;
  } catch {
    return 63;
  }
}

/** [K, N] = the int8 matrix shape of a weight of `shape` (2-D Linear or 4-D Conv). */
export function int8MatrixShape(shape: readonly number[]): [number, number] {
  if (shape.length === 2) return [shape[1]!, shape[0]!];
  if (shape.length === 4) return [shape[1]! * shape[2]! * shape[3]!, shape[0]!];
  throw new Error(`int8 weights need a 2-D or 4-D tensor, got [${shape.join(',')}]`);
}

/**
 * Quantize one weight: per output channel, symmetric to ±`limit`, round to nearest, in the [K, N]
 * layout described above. Returned scales are never 0 (an all-zero channel gets scale 1).
 */
export function quantizeWeight(w: Float32Array, shape: readonly number[], limit = 127): Quantized {
  const [K, N] = int8MatrixShape(shape);
  const scale = new Float32Array(N);
  const q = new Int8Array(K * N);
  // Per output channel o the source row w[o·K … o·K+K) holds (ci, dy, dx) in that order.
  const ci = shape.length === 4 ? shape[1]! : K;
  const taps = shape.length === 4 ? shape[2]! * shape[3]! : 1;
  for (let o = 0; o < N; o++) {
    const row = o * K;
    let max = 0;
    for (let i = 0; i < K; i++) {
      const a = Math.abs(w[row + i]!);
      if (a > max) max = a;
    }
    const s = max > 0 ? max / limit : 1;
    scale[o] = s;
    const inv = 1 / s;
    for (let c = 0; c < ci; c++) {
      for (let t = 0; t < taps; t++) {
        const v = Math.round(w[row + c * taps + t]! * inv);
        q[(t * ci + c) * N + o] = v > limit ? limit : v < -limit ? -limit : v;
      }
    }
  }
  return { q, scale };
}

interface DerivedKey {
  base: string;
  /** Output channels [start, end) of the base tensor. */
  rows?: [number, number];
  /** The 2×2 kernel of output phase (row parity, column parity) of a 3×3 upsampling conv. */
  phase?: [number, number];
  part: 'q' | 'scale' | 'float';
}

const ROWS = /@rows=(\d+):(\d+)$/;
const PHASE = /@up2x=([01])([01])$/;

function splitKey(name: string): DerivedKey | undefined {
  let rest = name;
  let part: DerivedKey['part'] = 'float';
  if (rest.endsWith(Q8_SCALE_SUFFIX)) {
    part = 'scale';
    rest = rest.slice(0, -Q8_SCALE_SUFFIX.length);
  } else if (rest.endsWith(Q8_SUFFIX)) {
    part = 'q';
    rest = rest.slice(0, -Q8_SUFFIX.length);
  }
  const ph = PHASE.exec(rest);
  if (ph) return { base: rest.slice(0, ph.index), phase: [Number(ph[1]), Number(ph[2])], part };
  const m = ROWS.exec(rest);
  if (!m) return part === 'float' ? undefined : { base: rest, part };
  return { base: rest.slice(0, m.index), rows: [Number(m[1]), Number(m[2])], part };
}

/**
 * The 2×2 kernel [O, C, 2, 2] that output phase (a, c) of "nearest ×2 upsampling, then the 3×3
 * conv `w` [O, C, 3, 3]" applies to the input (ops.upsampleConv2x: each phase's taps are sums of
 * the 3×3 kernel's along each axis).
 */
export function upsamplePhaseKernel(
  w: Float32Array,
  shape: readonly number[],
  a: number,
  c: number,
): Float32Array {
  const [O, C] = shape as [number, number];
  const out = new Float32Array(O * C * 4);
  const rowTaps = UPSAMPLE_PHASE_TAPS[a]!;
  const colTaps = UPSAMPLE_PHASE_TAPS[c]!;
  for (let oc = 0; oc < O * C; oc++) {
    for (let u = 0; u < 2; u++) {
      for (let v = 0; v < 2; v++) {
        let sum = 0;
        for (let y = rowTaps[u]![0]; y < rowTaps[u]![1]; y++) {
          for (let x = colTaps[v]![0]; x < colTaps[v]![1]; x++) sum += w[oc * 9 + y * 3 + x]!;
        }
        out[oc * 4 + u * 2 + v] = sum;
      }
    }
  }
  return out;
}

/** A checkpoint plus the computed int8 weights of every 2-D/4-D float tensor in it. */
export class Int8WeightSource extends OverlaySource {
  /** The last quantized weight: q and scale are read one after the other. */
  private last?: { id: string; value: Quantized };

  constructor(
    base: TensorSource,
    /** Weight range ±limit (int8WeightLimit(): 127 with VNNI, else 63). */
    readonly limit = 127,
  ) {
    super(base, { owns: [base] });
  }

  protected route(name: string): OverlayRoute | undefined {
    const v = splitKey(name);
    if (!v) return { source: this.base, key: name };
    const shape = this.baseShape(v);
    if (!shape) return undefined;
    let info: TensorInfo;
    if (v.part === 'float') info = { name, dtype: 'F32', shape };
    else if (shape.length !== 2 && shape.length !== 4) return undefined;
    else {
      const [K, N] = int8MatrixShape(shape);
      info = v.part === 'q' ? { name, dtype: 'I8', shape: [K, N] } : { name, dtype: 'F32', shape: [N] };
    }
    const readFloat32 = async (): Promise<Float32Array> => {
      if (v.part === 'float') return (await this.baseValues(v)).slice();
      const { q, scale } = await this.quantized(v, shape);
      return v.part === 'scale' ? scale : Float32Array.from(q);
    };
    return {
      info,
      readFloat32,
      read: async () => {
        if (v.part === 'q') {
          const { q } = await this.quantized(v, shape);
          return { dtype: info.dtype, shape: info.shape, data: new Uint8Array(q.buffer) };
        }
        const values = await readFloat32();
        return { ...info, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
      },
      derivedFrom: () => this.base.location(v.base) ?? this.base.derivedFrom?.(v.base),
    };
  }

  /** Shape of the (row range of the) base tensor; undefined when absent or the range does not fit. */
  private baseShape(v: DerivedKey): number[] | undefined {
    const bi = this.base.info(v.base);
    if (!bi || bi.shape.length === 0) return undefined;
    if (v.phase) {
      const [O, C, kh, kw] = bi.shape;
      return bi.shape.length === 4 && kh === 3 && kw === 3 ? [O!, C!, 2, 2] : undefined;
    }
    if (!v.rows) return bi.shape;
    const [a, b] = v.rows;
    if (!(a < b && b <= bi.shape[0]!)) return undefined;
    return [b - a, ...bi.shape.slice(1)];
  }

  /** The float32 values of the (row range of the) base tensor. */
  private async baseValues(v: DerivedKey): Promise<Float32Array> {
    const all = await this.base.readFloat32(v.base);
    if (v.phase) return upsamplePhaseKernel(all, this.base.info(v.base)!.shape, ...v.phase);
    if (!v.rows) return all;
    const rowSize = all.length / this.base.info(v.base)!.shape[0]!;
    return all.subarray(v.rows[0] * rowSize, v.rows[1] * rowSize);
  }

  private async quantized(v: DerivedKey, shape: number[]): Promise<Quantized> {
    const id = `${v.base}@${v.rows?.join(':') ?? ''}@${v.phase?.join('') ?? ''}`;
    if (this.last?.id === id) return this.last.value;
    const value = quantizeWeight(await this.baseValues(v), shape, this.limit);
    this.last = { id, value };
    return value;
  }
}
