/**
 * The one tensor vocabulary every reader and writer in formats/ speaks.
 * Data is kept as raw little-endian bytes in the file's dtype; callers convert
 * explicitly (see dtype.ts) so nothing is upcast or copied behind their back.
 */

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
}

export interface Tensor {
  dtype: DType;
  shape: number[];
  /** Raw little-endian element bytes, exactly numel * DTYPE_BYTES[dtype] long. */
  data: Uint8Array;
}

/** Where a tensor's raw bytes sit in a file, contiguous and in its stored dtype (for ONNX external data). */
export interface FileLocation {
  path: string;
  offset: number;
  length: number;
}

/**
 * A set of named tensors read lazily from a model file (safetensors, ckpt, diffusers folder).
 * Names are always the single-file (ldm) names, whatever the file's own naming.
 */
export interface TensorSource {
  readonly path: string;
  readonly format: 'safetensors' | 'ckpt' | 'diffusers' | 'memory';
  /** safetensors `__metadata__` (kohya `ss_*` tags etc.); empty when the format has none. */
  readonly metadata: Record<string, string>;
  keys(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo | undefined;
  /** Raw bytes of one tensor; throws an Error naming the tensor if it is absent. */
  read(name: string): Promise<Tensor>;
  /** One tensor as float32 values (F16/BF16/F64/int upcast or converted). */
  readFloat32(name: string): Promise<Float32Array>;
  /** The tensor's bytes as a contiguous region of a file on disk, when they are stored that way. */
  location(name: string): FileLocation | undefined;
  /**
   * For a tensor computed from stored ones (e.g. quantized weights): where the tensor it is
   * derived from is stored, so caches of the computed bytes can recognise the checkpoint again.
   */
  derivedFrom?(name: string): FileLocation | undefined;
  close(): Promise<void>;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
