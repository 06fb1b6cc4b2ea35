/**
 * The ONNX graph ops the model builders use, in three files: ops/primitives.ts (elementwise,
 * activation and shape ops), ops/layers.ts (checkpoint layers: conv, linear, norms, attention,
 * upsampling) and ops/cpu-forms.ts (the CPU-provider forms those layers pick). Importers use
 * this file.
 */
export * from './ops/primitives.js';
export * from './ops/layers.js';
export { conv3x3Winograd, UPSAMPLE_PHASE_TAPS } from './ops/cpu-forms.js';
