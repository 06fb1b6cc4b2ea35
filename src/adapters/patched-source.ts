/**
 * The checkpoint with some tensors replaced by LoRA-patched float32 weights: a TensorSource overlay,
 * so the graph builders, the weights placement (runtime/weights.ts: the patched tensors become a
 * small inline overlay while the rest still points into the checkpoint) and the int8 quantizer all
 * read patched weights without knowing about LoRA.
 */
import { float32ArrayToTensor } from '../formats/dtype.js';
import { OverlaySource, type OverlayRoute } from '../formats/overlay.js';
import type { TensorSource } from '../formats/tensor.js';
import type { F32Tensor } from './lora-modules.js';

export class PatchedTensorSource extends OverlaySource {
  constructor(
    base: TensorSource,
    private readonly patched: ReadonlyMap<string, F32Tensor>,
    /** Close the base with this source (default: the caller keeps owning it). */
    ownsBase = false,
  ) {
    super(base, { owns: ownsBase ? [base] : [] });
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

  /** Patched tensors live in memory only: no file location (their cache entries are ephemeral). */
  protected route(name: string): OverlayRoute | undefined {
    const t = this.patched.get(name);
    if (!t) return { source: this.base, key: name };
    return {
      info: { name, dtype: 'F32', shape: [...t.shape] },
      read: async () => float32ArrayToTensor(t.data, [...t.shape]),
      readFloat32: async () => t.data,
    };
  }
}
