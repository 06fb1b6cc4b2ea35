/**
 * The UNet arithmetic a user may choose. Kept apart from model.ts so front doors can check the
 * choice before the engine (onnxruntime) loads.
 */
import { UserError } from '../util/errors.js';

/**
 * 'fp32' is the reference; 'int8' is faster on the CPU provider and gives slightly different images
 * (the checkpoint's UNet weights are quantized once into the weights cache).
 */
export const UNET_PRECISIONS = ['fp32', 'int8'] as const;
export type UnetPrecisionChoice = (typeof UNET_PRECISIONS)[number];

/** A user's precision name → the choice, or a UserError naming the allowed values. */
export function unetPrecisionOf(name: string, what = '--precision'): UnetPrecisionChoice {
  const p = UNET_PRECISIONS.find((x) => x === name.trim().toLowerCase());
  if (!p) throw new UserError(`${what} must be ${UNET_PRECISIONS.join(' or ')} (got "${name}")`);
  return p;
}

/** The int8 UNet needs onnxruntime's CPU provider: refuse any other before anything loads. */
export function checkPrecisionProvider(precision: UnetPrecisionChoice, provider: string | undefined): void {
  if (precision === 'int8' && provider !== undefined && provider !== 'cpu') {
    throw new UserError(
      `the int8 UNet runs on the CPU provider only; use --provider cpu, or --precision fp32 with --provider ${provider}`,
    );
  }
}
