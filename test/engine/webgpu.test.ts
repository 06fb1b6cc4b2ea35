/**
 * The tiny-sd goldens through onnxruntime's webgpu provider (standard ONNX ops, plain chunked
 * attention, Resize + Conv upsampling): in float32 at the goldens' own tolerances, and with the
 * float16 UNet and text encoder GPU users run by default at float16's.
 */
import { describe } from 'vitest';
import { failMissingWebgpu, webgpuMissing, webgpuRequired } from '../helpers/webgpu.js';
import { conformanceSuite } from './conformance-suite.js';
import { float16Tolerance } from './float16-tolerance.js';

const missing = await webgpuMissing();
if (missing === undefined) {
  conformanceSuite({ title: 'tiny-sd goldens (webgpu, float32)', load: { provider: 'webgpu' } });
  conformanceSuite({
    title: 'tiny-sd goldens (webgpu, float16)',
    load: { provider: 'webgpu', unetPrecision: 'fp16' },
    tolerance: float16Tolerance,
  });
} else if (webgpuRequired) {
  failMissingWebgpu(missing);
} else {
  describe.skip(`tiny-sd goldens on webgpu (no adapter here: ${missing})`, () => {});
}
