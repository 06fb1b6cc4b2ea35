/**
 * SDXL's `vector` conditioning (sgm GeneralConditioner, 2-D outputs concatenated in embedder
 * order): the pooled text output, then each extra number n as timestep_embedding(n, d) =
 * [cos(n·f_0..d/2−1), sin(…)], f_i = exp(−ln(10000)·i/(d/2)) in float32 (ConcatTimestepEmbedderND,
 * the two numbers of a pair side by side). Base: original size (h, w), crop (top, left), target
 * size (h, w). Refiner: original size, crop, aesthetic score. d = 256 in the real models.
 */
import type { DiffusionConfig } from './config.js';

export interface SdxlSizes {
  /** (height, width) of the "original" image (A1111: the generated image's size). */
  originalSize: [number, number];
  /** (top, left) crop coordinates (A1111 `sdxl_crop_top`/`sdxl_crop_left`, default 0). */
  cropTopLeft: [number, number];
  /** (height, width) of the target (base model; A1111: the image's size). */
  targetSize?: [number, number];
  /** Aesthetic score (refiner; A1111 6.0 for the prompt, 2.5 for the negative). */
  aestheticScore?: number;
}

/** A1111's refiner aesthetic scores (`sdxl_refiner_high_aesthetic_score` / `…_low_…`). */
export const REFINER_AESTHETIC = { prompt: 6.0, negative: 2.5 } as const;

/** timestep_embedding of one number into `out` at `at` (width `dim`), float32 as torch computes it. */
export function numberEmbedding(n: number, dim: number, out: Float32Array, at: number): void {
  const half = dim / 2;
  const c = Math.fround(-Math.log(10000));
  for (let i = 0; i < half; i++) {
    const f = Math.fround(Math.exp(Math.fround(Math.fround(c * i) / half)));
    const arg = Math.fround(Math.fround(n) * f);
    out[at + i] = Math.cos(arg);
    out[at + half + i] = Math.sin(arg);
  }
}

/** The numbers of the vector after the pooled output, in sgm's embedder order. */
export function vectorNumbers(kind: 'base' | 'refiner', s: SdxlSizes): number[] {
  const [oh, ow] = s.originalSize;
  const [ct, cl] = s.cropTopLeft;
  if (kind === 'base') {
    const [th, tw] = s.targetSize ?? s.originalSize;
    return [oh, ow, ct, cl, th, tw];
  }
  return [oh, ow, ct, cl, s.aestheticScore ?? REFINER_AESTHETIC.prompt];
}

/**
 * y [B, pooled + numbers·d] for pooled outputs [B, P]. `zeroPooled` zeroes the pooled part (A1111
 * for an all-empty negative prompt: `force_zero_embeddings=['txt']`), keeping the size embeddings.
 */
export function sdxlVector(
  vector: NonNullable<DiffusionConfig['vector']>,
  pooled: { data: Float32Array; dims: number[] },
  sizes: SdxlSizes | readonly SdxlSizes[],
  zeroPooled = false,
): { data: Float32Array; dims: number[] } {
  const [b, P] = pooled.dims as [number, number];
  if (P !== vector.pooledDim) throw new Error(`pooled width ${P}, this model needs ${vector.pooledDim}`);
  const d = vector.sizeEmbedDim;
  const perRow = (r: number): SdxlSizes =>
    Array.isArray(sizes) ? (sizes as SdxlSizes[])[r]! : (sizes as SdxlSizes);
  const count = vector.kind === 'base' ? 6 : 5;
  const width = P + count * d;
  const out = new Float32Array(b * width);
  for (let r = 0; r < b; r++) {
    if (!zeroPooled) out.set(pooled.data.subarray(r * P, (r + 1) * P), r * width);
    vectorNumbers(vector.kind, perRow(r)).forEach((n, k) =>
      numberEmbedding(n, d, out, r * width + P + k * d),
    );
  }
  return { data: out, dims: [b, width] };
}
