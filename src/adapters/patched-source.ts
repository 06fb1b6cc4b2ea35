/**
 * The checkpoint with some tensors replaced by LoRA-patched float32 weights: a TensorSource overlay,
 * so the graph builders, the weights placement (runtime/weights.ts: the patched tensors become a
 * small inline overlay while the rest still points into the checkpoint) and the int8 quantizer all
 * read patched weights without knowing about LoRA.
 */
import { float32ArrayToTensor } from '../formats/dtype.js';
import type { FileLocation, Tensor, TensorInfo, TensorSource } from '../formats/tensor.js';
import type { F32Tensor } from './lora-modules.js';

export class PatchedTensorSource implements TensorSource {
  readonly path: string;
  readonly format: TensorSource['format'];
  readonly metadata: Record<string, string>;

  constructor(
    private readonly base: TensorSource,
    private readonly patched: ReadonlyMap<string, F32Tensor>,
    /** Close the base with this source (default: the caller keeps owning it). */
    private readonly ownsBase = false,
  ) {
    this.path = base.path;
    this.format = base.format;
    this.metadata = base.metadata;
    for (const [k, t] of patched) {
      const info = base.info(k);
      if (!info) throw new Error(`patched tensor ${k} is not in ${base.path}`);
      if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i]))
        throw new Error(`patched tensor ${k} has shape [${t.shape}], the checkpoint's is [${info.shape}]`);
    }
  }

  /** Names of the replaced tensors. */
  patchedKeys(): string[] {
    return [...this.patched.keys()];
  }

  keys(): string[] {
    return this.base.keys();
  }
  has(name: string): boolean {
    return this.base.has(name);
  }
  info(name: string): TensorInfo | undefined {
    const t = this.patched.get(name);
    return t ? { name, dtype: 'F32', shape: [...t.shape] } : this.base.info(name);
  }
  async read(name: string): Promise<Tensor> {
    const t = this.patched.get(name);
    return t ? float32ArrayToTensor(t.data, [...t.shape]) : this.base.read(name);
  }
  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.patched.get(name);
    return t ? t.data : this.base.readFloat32(name);
  }
  /** Patched tensors live in memory only: no file location (their cache entries are ephemeral). */
  location(name: string): FileLocation | undefined {
    return this.patched.has(name) ? undefined : this.base.location(name);
  }
  derivedFrom(name: string): FileLocation | undefined {
    if (this.patched.has(name)) return undefined;
    return this.base.derivedFrom?.(name);
  }
  async close(): Promise<void> {
    if (this.ownsBase) await this.base.close();
  }
}
