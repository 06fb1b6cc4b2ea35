/**
 * How close float16 arithmetic must come to the float32 goldens. The goldens' README expects
 * ~1e-3 relative for float16 compute; measured on the tiny checkpoint: UNet eps 1.1e-3 rel L2 on
 * the CPU provider (float16 weights and activations, float32 kernels) and 5.6e-3 on webgpu, whose
 * shaders also accumulate in float16. The bounds leave room for other drivers and still fail a
 * wrong graph (a misplaced op is off by 0.1–1).
 */
import type { Tolerance } from './golden.js';

export const FLOAT16_TOLERANCE: Tolerance = { max_abs: Infinity, max_abs_rel: 0.05, rel_l2: 0.02 };

/** The tolerance of a float16 run: float16's, in place of the golden's float32 one. */
export const float16Tolerance = (): Tolerance => FLOAT16_TOLERANCE;
