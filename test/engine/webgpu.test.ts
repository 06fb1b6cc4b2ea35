/**
 * The tiny-sd goldens through onnxruntime's webgpu provider (standard ONNX ops, plain chunked
 * attention, Resize + Conv upsampling): float32 at the goldens' own tolerances.
 */
import { describe } from 'vitest';
import { failMissingWebgpu, webgpuMissing, webgpuRequired } from '../helpers/webgpu.js';
import { conformanceSuite } from './conformance-suite.js';

const missing = await webgpuMissing();
if (missing === undefined) {
  conformanceSuite({ title: 'tiny-sd goldens (webgpu, float32)', load: { provider: 'webgpu' } });
} else if (webgpuRequired) {
  failMissingWebgpu(missing);
} else {
  describe.skip(`tiny-sd goldens on webgpu (no adapter here: ${missing})`, () => {});
}
