/**
 * The UNet arithmetic a user may choose: part of the request contract, so front doors and infotext
 * reading check the choice before the engine (onnxruntime) loads.
 */
import { UserError } from '../util/errors.js';

/**
 * 'fp32' is the reference and the CPU default; 'fp16' (UNet and text encoder in float16, the VAE
 * in float32) is what GPU providers run by default, as A1111 does; 'int8' is faster on the CPU
 * provider. Both give slightly different images from fp32.
 */
export const UNET_PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type UnetPrecisionChoice = (typeof UNET_PRECISIONS)[number];

/** A user's precision name → the choice, or a UserError naming the allowed values. */
export function unetPrecisionOf(name: string, what = '--precision'): UnetPrecisionChoice {
  const p = UNET_PRECISIONS.find((x) => x === name.trim().toLowerCase());
  if (!p) throw new UserError(`${what} must be ${UNET_PRECISIONS.join(', ')} (got "${name}")`);
  return p;
}

/** The precision used when the user names none: float16 on GPU providers, float32 on the CPU. */
export function defaultPrecision(provider: string | undefined): UnetPrecisionChoice {
  return provider === undefined || provider === 'cpu' ? 'fp32' : 'fp16';
}

/** Whether `precision` can run on `provider` (undefined = the CPU default). */
export function precisionRunsOn(precision: UnetPrecisionChoice, provider: string | undefined): boolean {
  const cpu = provider === undefined || provider === 'cpu';
  return precision === 'int8' ? cpu : precision === 'fp16' ? !cpu : true;
}

/**
 * int8 needs onnxruntime's CPU provider; fp16 needs a GPU provider (the CPU one would compute it in
 * float32 between float16 tensors: slower than fp32, no better). Refused before anything loads.
 */
export function checkPrecisionProvider(precision: UnetPrecisionChoice, provider: string | undefined): void {
  if (precisionRunsOn(precision, provider)) return;
  if (precision === 'int8') {
    throw new UserError(
      `the int8 UNet runs on the CPU provider only; use --provider cpu, or --precision fp16 or fp32 with --provider ${provider}`,
    );
  }
  throw new UserError(
    'fp16 needs a GPU provider (--provider cuda, webgpu, dml or coreml); on the CPU use --precision fp32 or int8',
  );
}
