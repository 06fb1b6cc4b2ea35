/**
 * Operations on latent batches [B, C, H, W] (flat Float32Arrays): torch.nn.functional.interpolate
 * in the modes A1111's latent upscalers use (align_corners=False), and the hires-fix crop.
 */
import { UserError } from '../util/errors.js';

export type InterpolateMode = 'nearest' | 'nearest-exact' | 'bilinear' | 'bicubic';

/** A1111 shared.latent_upscale_modes. The antialiased variants equal the plain ones when upscaling. */
export const LATENT_MODES: Record<string, { mode: InterpolateMode; antialias: boolean }> = {
  Latent: { mode: 'bilinear', antialias: false },
  'Latent (antialiased)': { mode: 'bilinear', antialias: true },
  'Latent (bicubic)': { mode: 'bicubic', antialias: false },
  'Latent (bicubic antialiased)': { mode: 'bicubic', antialias: true },
  'Latent (nearest)': { mode: 'nearest', antialias: false },
  'Latent (nearest-exact)': { mode: 'nearest-exact', antialias: false },
};

function cubicWeights(t: number): [number, number, number, number] {
  const A = -0.75; // torch's bicubic
  const c1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const c2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)];
}

/** Source taps and weights along one axis for every output position. */
function axisTaps(
  inSize: number,
  outSize: number,
  mode: InterpolateMode,
): { idx: Int32Array; w: Float32Array; taps: number } {
  const scale = inSize / outSize;
  const taps = mode === 'bicubic' ? 4 : mode === 'bilinear' ? 2 : 1;
  const idx = new Int32Array(outSize * taps);
  const w = new Float32Array(outSize * taps);
  const clampI = (i: number) => Math.min(inSize - 1, Math.max(0, i));
  for (let o = 0; o < outSize; o++) {
    if (mode === 'nearest') {
      idx[o] = Math.min(inSize - 1, Math.floor(o * scale));
      w[o] = 1;
    } else if (mode === 'nearest-exact') {
      idx[o] = Math.min(inSize - 1, Math.floor((o + 0.5) * scale));
      w[o] = 1;
    } else if (mode === 'bilinear') {
      const src = Math.max(0, (o + 0.5) * scale - 0.5);
      const i0 = Math.floor(src);
      const l = src - i0;
      idx[o * 2] = clampI(i0);
      idx[o * 2 + 1] = clampI(i0 + 1);
      w[o * 2] = 1 - l;
      w[o * 2 + 1] = l;
    } else {
      const src = (o + 0.5) * scale - 0.5;
      const i0 = Math.floor(src);
      const ws = cubicWeights(src - i0);
      for (let k = 0; k < 4; k++) {
        idx[o * 4 + k] = clampI(i0 - 1 + k);
        w[o * 4 + k] = ws[k]!;
      }
    }
  }
  return { idx, w, taps };
}

/** torch.nn.functional.interpolate(x, size=(outH, outW), mode) for x of shape [B, C, H, W]. */
export function interpolate(
  x: Float32Array,
  dims: readonly [number, number, number, number],
  outH: number,
  outW: number,
  mode: InterpolateMode,
): Float32Array {
  const [b, c, h, w] = dims;
  if (x.length !== b * c * h * w) throw new Error(`latent has ${x.length} values, expected ${b * c * h * w}`);
  if (!(outH > 0 && outW > 0) || b * c * outH * outW > 2 ** 30) {
    throw new UserError(`cannot resize a latent to ${outW}x${outH}; choose a positive, smaller hires size`);
  }
  const ty = axisTaps(h, outH, mode);
  const tx = axisTaps(w, outW, mode);
  // Separable: first along x into [bc, h, outW], then along y.
  const mid = new Float32Array(b * c * h * outW);
  for (let p = 0; p < b * c; p++) {
    for (let yy = 0; yy < h; yy++) {
      const row = (p * h + yy) * w;
      for (let ox = 0; ox < outW; ox++) {
        let acc = 0;
        for (let k = 0; k < tx.taps; k++)
          acc += x[row + tx.idx[ox * tx.taps + k]!]! * tx.w[ox * tx.taps + k]!;
        mid[(p * h + yy) * outW + ox] = acc;
      }
    }
  }
  const out = new Float32Array(b * c * outH * outW);
  for (let p = 0; p < b * c; p++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        let acc = 0;
        for (let k = 0; k < ty.taps; k++) {
          acc += mid[(p * h + ty.idx[oy * ty.taps + k]!) * outW + ox]! * ty.w[oy * ty.taps + k]!;
        }
        out[(p * outH + oy) * outW + ox] = acc;
      }
    }
  }
  return out;
}

/** samples[:, :, top:H-bottom, left:W-right]: A1111's hires-fix truncation. */
export function cropLatent(
  x: Float32Array,
  dims: readonly [number, number, number, number],
  top: number,
  bottom: number,
  left: number,
  right: number,
): { data: Float32Array; dims: [number, number, number, number] } {
  const [b, c, h, w] = dims;
  const nh = h - top - bottom;
  const nw = w - left - right;
  if (nh <= 0 || nw <= 0)
    throw new UserError('the hires fix crop leaves nothing of the image; choose a larger hires size');
  const out = new Float32Array(b * c * nh * nw);
  for (let p = 0; p < b * c; p++) {
    for (let y = 0; y < nh; y++) {
      const src = (p * h + top + y) * w + left;
      out.set(x.subarray(src, src + nw), (p * nh + y) * nw);
    }
  }
  return { data: out, dims: [b, c, nh, nw] };
}
