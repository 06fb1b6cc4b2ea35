/**
 * A TensorSource that has names, dtypes and shapes but no data: detection reads nothing else,
 * so synthetic layouts (SDXL, inpainting, upscalers) can be described without megabytes of bytes.
 */
import type { DType, FileLocation, Tensor, TensorInfo, TensorSource } from '../../src/formats/tensor.js';

export class ShapeSource implements TensorSource {
  readonly format = 'memory' as const;
  readonly path = '<shapes>';
  private readonly infos: Map<string, TensorInfo>;

  constructor(
    shapes: Record<string, number[]> | Map<string, { dtype: DType; shape: number[] }>,
    readonly metadata: Record<string, string> = {},
  ) {
    this.infos = new Map();
    const entries =
      shapes instanceof Map
        ? [...shapes]
        : Object.entries(shapes).map(([k, s]) => [k, { dtype: 'F32' as DType, shape: s }] as const);
    for (const [name, v] of entries) this.infos.set(name, { name, dtype: v.dtype, shape: v.shape });
  }

  /** The names and shapes of a real source, optionally edited. */
  static from(
    source: TensorSource,
    edit: (m: Map<string, { dtype: DType; shape: number[] }>) => void = () => {},
  ): ShapeSource {
    const m = new Map<string, { dtype: DType; shape: number[] }>();
    for (const k of source.keys()) {
      const i = source.info(k)!;
      m.set(k, { dtype: i.dtype, shape: i.shape });
    }
    edit(m);
    return new ShapeSource(m, source.metadata);
  }

  keys(): string[] {
    return [...this.infos.keys()].sort();
  }
  has(name: string): boolean {
    return this.infos.has(name);
  }
  info(name: string): TensorInfo | undefined {
    return this.infos.get(name);
  }
  read(name: string): Promise<Tensor> {
    return Promise.reject(new Error(`ShapeSource has no data (asked for ${name})`));
  }
  readFloat32(name: string): Promise<Float32Array> {
    return Promise.reject(new Error(`ShapeSource has no data (asked for ${name})`));
  }
  location(_name: string): FileLocation | undefined {
    return undefined;
  }
  async close(): Promise<void> {}
}
