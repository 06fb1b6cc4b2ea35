/**
 * Applying prompt weights to the text encoder's output, as A1111's `sd_emphasis.py`:
 * - "Original": multiply each token's hidden state by its weight, then rescale the whole tensor so
 *   its mean is what it was before (keeps heavily weighted prompts from blowing up);
 * - "No norm": multiply only (A1111 suggests it for SDXL);
 * - "Ignore" / "None": leave the hidden states as they are.
 * Arithmetic is float32 per element like torch's; means are accumulated in float64.
 */
import type { EmphasisMode } from './chunking.js';

export type { EmphasisMode } from './chunking.js';

function mean(z: Float32Array): number {
  let s = 0;
  for (let i = 0; i < z.length; i++) s += z[i];
  return Math.fround(s / z.length);
}

/**
 * Weighted hidden states. `z` is `[batch, tokens, width]` row-major; `multipliers` has one weight per
 * token (`batch * tokens`, e.g. a chunk's 77 multipliers per batch row). Returns a new array.
 */
export function applyEmphasis(
  z: Float32Array,
  shape: readonly [batch: number, tokens: number, width: number],
  multipliers: ArrayLike<number>,
  mode: EmphasisMode = 'Original',
): Float32Array {
  const [batch, tokens, width] = shape;
  if (batch * tokens * width !== z.length)
    throw new Error(`applyEmphasis: shape [${shape.join(', ')}] does not match ${z.length} values`);
  if (multipliers.length !== batch * tokens)
    throw new Error(`applyEmphasis: ${multipliers.length} multipliers for ${batch * tokens} tokens`);
  if (mode === 'None' || mode === 'Ignore') return z.slice();

  const out = new Float32Array(z.length);
  for (let t = 0; t < batch * tokens; t++) {
    const m = Math.fround(multipliers[t]);
    const base = t * width;
    for (let c = 0; c < width; c++) out[base + c] = z[base + c] * m;
  }
  if (mode === 'No norm') return out;

  const originalMean = mean(z);
  const newMean = mean(out);
  // A zero mean after weighting would turn everything into NaN/Infinity; keep the weighted values then.
  if (newMean === 0 || !Number.isFinite(newMean)) return out;
  const ratio = Math.fround(originalMean / newMean);
  for (let i = 0; i < out.length; i++) out[i] = out[i] * ratio;
  return out;
}
