/** Elementwise latent arithmetic; each returns a fresh array so no sampler aliases its inputs. */

export function lin2(a: number, x: Float32Array, b: number, y: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < out.length; i++) out[i] = a * x[i]! + b * y[i]!;
  return out;
}

export function lin3(
  a: number,
  x: Float32Array,
  b: number,
  y: Float32Array,
  c: number,
  z: Float32Array,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < out.length; i++) out[i] = a * x[i]! + b * y[i]! + c * z[i]!;
  return out;
}

/** sum_k coeffs[k] * arrays[k] */
export function linN(coeffs: readonly number[], arrays: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(arrays[0]!.length);
  for (let k = 0; k < arrays.length; k++) {
    const c = coeffs[k]!;
    const a = arrays[k]!;
    for (let i = 0; i < out.length; i++) out[i] = out[i]! + c * a[i]!;
  }
  return out;
}

/** k-diffusion's to_d: the Karras ODE derivative (x - denoised) / sigma. */
export function toD(x: Float32Array, sigma: number, denoised: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  const inv = 1 / sigma;
  for (let i = 0; i < out.length; i++) out[i] = (x[i]! - denoised[i]!) * inv;
  return out;
}

/** k-diffusion's get_ancestral_step: the sigma to step down to and the noise to add back. */
export function ancestralStep(sigmaFrom: number, sigmaTo: number, eta = 1): [down: number, up: number] {
  if (!eta) return [sigmaTo, 0];
  const up = Math.min(
    sigmaTo,
    eta * Math.sqrt((sigmaTo ** 2 * (sigmaFrom ** 2 - sigmaTo ** 2)) / sigmaFrom ** 2),
  );
  return [Math.sqrt(sigmaTo ** 2 - up ** 2), up];
}

export function checkFinite(x: Float32Array, what: string): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]!)) throw new Error(`${what} produced a non-finite value at index ${i}`);
  }
}
