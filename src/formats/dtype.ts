/**
 * Element-type conversions over raw little-endian tensor bytes.
 * Float rounding is IEEE-754 round-to-nearest-even, as torch's `.half()` / `.bfloat16()` do.
 */
import { DTYPE_BYTES, numel, type DType, type Tensor } from './tensor.js';

export const FLOAT_DTYPES: readonly DType[] = ['F64', 'F32', 'F16', 'BF16'];

export function isFloatDType(d: DType): boolean {
  return d === 'F64' || d === 'F32' || d === 'F16' || d === 'BF16';
}

// Scratch views for bit-casting one value.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → IEEE half bits (RNE, subnormals, overflow → ±inf, NaN stays NaN). */
export function float32ToFloat16Bits(x: number): number {
  f32[0] = x;
  return f32BitsToF16Bits(u32[0]!);
}

function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) {
    // inf stays inf; NaN keeps a quiet payload bit so it never collapses to inf.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the full significand and round to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1) === 1)) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and reaches inf at the top).
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1;
  return sign | h;
}

/** IEEE half bits → float32 value (exact). */
export function float16BitsToFloat32(h: number): number {
  return F16_TABLE[h & 0xffff]!;
}

function halfToFloatSlow(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** All 65536 half values: a table lookup is the fastest decoder in JS. */
const F16_TABLE: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) t[i] = halfToFloatSlow(i);
  return t;
})();

/** float32 → bfloat16 bits (RNE, overflow → ±inf, NaN stays NaN). */
export function float32ToBF16Bits(x: number): number {
  f32[0] = x;
  return f32BitsToBF16Bits(u32[0]!);
}

function f32BitsToBF16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    return ((bits >>> 16) | 0x40) & 0xffff;
  }
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** bfloat16 bits → float32 value (exact). */
export function bf16BitsToFloat32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

function checkTensorBytes(t: Tensor): number {
  const n = numel(t.shape);
  if (t.data.byteLength !== n * DTYPE_BYTES[t.dtype]) {
    throw new Error(
      `tensor data is ${t.data.byteLength} bytes but ${t.dtype}${JSON.stringify(t.shape)} needs ${n * DTYPE_BYTES[t.dtype]}`,
    );
  }
  return n;
}

/** A typed-array view over the bytes when aligned, else over an aligned copy. */
function aligned(data: Uint8Array, bytes: number): ArrayBuffer {
  if (data.byteOffset % bytes === 0) return data.buffer as ArrayBuffer;
  return data.slice().buffer as ArrayBuffer;
}

function view<T>(data: Uint8Array, bytes: number, make: (b: ArrayBuffer, off: number, len: number) => T): T {
  const buf = aligned(data, bytes);
  const off = buf === data.buffer ? data.byteOffset : 0;
  return make(buf, off, data.byteLength / bytes);
}

/** Decode any tensor into float32 values (integers converted, bool → 0/1). */
export function toFloat32(t: Tensor): Float32Array {
  const n = checkTensorBytes(t);
  const d = t.data;
  switch (t.dtype) {
    case 'F32': {
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(d);
      return out;
    }
    case 'F16': {
      const src = view(d, 2, (b, o, l) => new Uint16Array(b, o, l));
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = F16_TABLE[src[i]!]!;
      return out;
    }
    case 'BF16': {
      const src = view(d, 2, (b, o, l) => new Uint16Array(b, o, l));
      const out = new Float32Array(n);
      const outBits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) outBits[i] = src[i]! << 16;
      return out;
    }
    case 'F64':
      return Float32Array.from(view(d, 8, (b, o, l) => new Float64Array(b, o, l)));
    case 'I64': {
      const src = view(d, 8, (b, o, l) => new BigInt64Array(b, o, l));
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'I32':
      return Float32Array.from(view(d, 4, (b, o, l) => new Int32Array(b, o, l)));
    case 'I16':
      return Float32Array.from(view(d, 2, (b, o, l) => new Int16Array(b, o, l)));
    case 'I8':
      return Float32Array.from(new Int8Array(d.buffer, d.byteOffset, n));
    case 'U8':
      return Float32Array.from(d);
    case 'BOOL': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = d[i] ? 1 : 0;
      return out;
    }
  }
}

/** Encode float32 values as a tensor of any dtype (floats round to nearest even, integers truncate). */
export function float32ArrayToTensor(data: Float32Array, shape: number[], dtype: DType = 'F32'): Tensor {
  const n = numel(shape);
  if (data.length !== n) throw new Error(`${data.length} values do not fill shape ${JSON.stringify(shape)}`);
  const srcBits = new Uint32Array(data.buffer, data.byteOffset, n);
  switch (dtype) {
    case 'F32':
      return {
        dtype,
        shape: [...shape],
        data: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + n * 4)),
      };
    case 'F16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(srcBits[i]!);
      return { dtype, shape: [...shape], data: new Uint8Array(out.buffer) };
    }
    case 'BF16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32BitsToBF16Bits(srcBits[i]!);
      return { dtype, shape: [...shape], data: new Uint8Array(out.buffer) };
    }
    case 'F64':
      return { dtype, shape: [...shape], data: new Uint8Array(Float64Array.from(data).buffer) };
    default:
      // Integer targets: truncation toward zero, as convertTensor does.
      return convertTensor(float32ArrayToTensor(data, shape, 'F32'), dtype);
  }
}

/**
 * Convert a tensor to another dtype. Float targets round to nearest even; an
 * integer target truncates toward zero (as torch's `.to(int)`), bool is `x != 0`.
 * F64 → F16/BF16 goes through float32 (double rounding is negligible for weights, same as torch on CPU).
 */
export function convertTensor(t: Tensor, to: DType): Tensor {
  if (t.dtype === to) return t;
  if (isFloatDType(to)) {
    return float32ArrayToTensor(toFloat32(t), t.shape, to);
  }
  const n = checkTensorBytes(t);
  // Exact source values for integer targets (I64 must not pass through float32).
  const values: (i: number) => number | bigint = integerReader(t, n);
  const shape = [...t.shape];
  switch (to) {
    case 'I64': {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        const v = values(i);
        out[i] = typeof v === 'bigint' ? v : BigInt(Number.isFinite(v) ? Math.trunc(v) : 0);
      }
      return { dtype: to, shape, data: new Uint8Array(out.buffer) };
    }
    case 'BOOL': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = values(i);
        out[i] = (typeof v === 'bigint' ? v !== 0n : v !== 0) ? 1 : 0;
      }
      return { dtype: to, shape, data: out };
    }
    default: {
      const Ctor = { I32: Int32Array, I16: Int16Array, I8: Int8Array, U8: Uint8Array }[to as 'I32'];
      const out = new Ctor(n);
      for (let i = 0; i < n; i++) {
        const v = values(i);
        out[i] =
          typeof v === 'bigint' ? Number(BigInt.asIntN(32, v)) : Number.isFinite(v) ? Math.trunc(v) : 0;
      }
      return { dtype: to, shape, data: new Uint8Array(out.buffer) };
    }
  }
}

function integerReader(t: Tensor, n: number): (i: number) => number | bigint {
  if (t.dtype === 'I64') {
    const src = view(t.data, 8, (b, o) => new BigInt64Array(b, o, n));
    return (i) => src[i]!;
  }
  if (t.dtype === 'F64') {
    const src = view(t.data, 8, (b, o) => new Float64Array(b, o, n));
    return (i) => src[i]!;
  }
  const f = toFloat32(t);
  return (i) => f[i]!;
}

/**
 * Convert float tensors to `to` and return every other tensor untouched — what "save as fp16"
 * means for a checkpoint: `position_ids` and other integer buffers stay integers.
 */
export function castFloats(t: Tensor, to: DType): Tensor {
  if (!isFloatDType(t.dtype) || !isFloatDType(to)) return t;
  return convertTensor(t, to);
}
