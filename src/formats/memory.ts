/** A TensorSource over tensors already in memory (merge results, LoRA-patched weights, tests). */
import { toFloat32 } from './dtype.js';
import {
  DTYPE_BYTES,
  numel,
  type FileLocation,
  type Tensor,
  type TensorInfo,
  type TensorSource,
} from './tensor.js';

export class MemoryTensorSource implements TensorSource {
  readonly format = 'memory' as const;
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly tensors: Map<string, Tensor>;

  constructor(tensors: Map<string, Tensor>, opts: { path?: string; metadata?: Record<string, string> } = {}) {
    for (const [name, t] of tensors) {
      const expected = numel(t.shape) * DTYPE_BYTES[t.dtype];
      if (t.data.byteLength !== expected) {
        throw new Error(
          `tensor "${name}" has ${t.data.byteLength} bytes, ${t.dtype}${JSON.stringify(t.shape)} needs ${expected}`,
        );
      }
    }
    this.tensors = tensors;
    this.path = opts.path ?? '<memory>';
    this.metadata = opts.metadata ?? {};
  }

  keys(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo | undefined {
    const t = this.tensors.get(name);
    return t && { name, dtype: t.dtype, shape: [...t.shape] };
  }

  async read(name: string): Promise<Tensor> {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`tensor "${name}" is not in ${this.path}`);
    return t;
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return toFloat32(await this.read(name));
  }

  location(_name: string): FileLocation | undefined {
    return undefined;
  }

  async close(): Promise<void> {}
}
