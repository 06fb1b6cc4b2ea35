/**
 * The tiny-sd goldens through onnxruntime's webgpu provider (standard ONNX ops, plain chunked
 * attention, Resize + Conv upsampling, two-pass GroupNorm): in float32 at the goldens' own
 * tolerances, and with the float16 UNet and text encoder GPU users run by default at float16's.
 * Also token merging there (its merge sums run in float32: webgpu's ScatterND adds no float16).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSd1, type UNetInputs } from '../../src/runtime/sd1.js';
import { goldenPath } from '../helpers/golden.js';
import { psnr } from '../helpers/psnr.js';
import { failMissingWebgpu, webgpuMissing, webgpuRequired } from '../helpers/webgpu.js';
import { conformanceSuite } from './conformance-suite.js';
import { float16Tolerance } from './float16-tolerance.js';
import { TINY } from './golden.js';

const missing = await webgpuMissing();
if (missing === undefined) {
  conformanceSuite({ title: 'tiny-sd goldens (webgpu, float32)', load: { provider: 'webgpu' } });
  conformanceSuite({
    title: 'tiny-sd goldens (webgpu, float16)',
    load: { provider: 'webgpu', unetPrecision: 'fp16' },
    tolerance: float16Tolerance,
  });

  describe('token merging on webgpu', () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-webgpu-test-'));
    afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));
    const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));

    it('at ratio 0.5 stays close to the CPU float32 UNet, in float32 and float16', async () => {
      const inputs: UNetInputs = {
        x: { data: wave(2 * 4 * 16 * 16, 0.3), dims: [2, 4, 16, 16] },
        t: { data: new Float32Array([500, 500]), dims: [2] },
        context: { data: wave(2 * 77 * 64, 0.7), dims: [2, 77, 64] },
      };
      const ckpt = goldenPath(TINY, 'tiny-sd.safetensors');
      const eps = async (opts: Parameters<typeof loadSd1>[1], ratio: number) => {
        const m = await loadSd1(ckpt, { cacheDir, ...opts });
        try {
          return (await m.unet({ ...inputs, tokenMergeRatio: ratio })).data;
        } finally {
          await m.release();
        }
      };
      const reference = await eps({ threads: 2 }, 0);
      for (const unetPrecision of ['fp32', 'fp16'] as const) {
        const merged = await eps({ provider: 'webgpu', unetPrecision }, 0.5);
        expect(merged.every(Number.isFinite)).toBe(true);
        expect(psnr(merged, reference), unetPrecision).toBeGreaterThan(30);
      }
    });
  });
} else if (webgpuRequired) {
  failMissingWebgpu(missing);
} else {
  describe.skip(`tiny-sd goldens on webgpu (no adapter here: ${missing})`, () => {});
}
