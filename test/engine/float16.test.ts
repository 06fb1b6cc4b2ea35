/**
 * The float16 graphs (GraphOptions.float16, unetPrecision 'fp16'): their weights, and every golden
 * on the CPU provider, which runs them with float32 kernels between float16 tensors, at float16's
 * tolerance — so the graphs and their float16 weights are checked where no GPU (or webgpu adapter)
 * is: the CPU-form graph, and the one CUDA gets (contrib ops, GPU forms). webgpu.test.ts runs the
 * goldens on float16 arithmetic.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { numel } from '../../src/formats/tensor.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { buildUNetGraph } from '../../src/models/unet.js';
import { OnnxDataType } from '../../src/onnx/proto.js';
import { prepareModel } from '../../src/runtime/weights.js';
import { goldenPath } from '../helpers/golden.js';
import { conformanceSuite } from './conformance-suite.js';
import { float16Tolerance } from './float16-tolerance.js';
import { TINY } from './golden.js';

conformanceSuite({
  title: 'tiny-sd goldens (cpu, float16 graphs)',
  load: { threads: 2, unetPrecision: 'fp16' },
  tolerance: float16Tolerance,
});

// The graph the CUDA provider gets (float16, contrib ops, GPU forms), checked on CPU kernels.
conformanceSuite({
  title: 'tiny-sd goldens (cpu, the float16 graphs CUDA gets)',
  load: { threads: 2, unetPrecision: 'fp16', contribOps: true, cpuForms: false },
  tolerance: float16Tolerance,
});

describe('float16 UNet weights', () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-f16-test-'));
  afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

  it('are float16 initializers, referenced in place in an fp16 checkpoint', async () => {
    const src = await openSafetensors(goldenPath(TINY, 'tiny-sd-fp16.safetensors'));
    try {
      const g = buildUNetGraph(src, sd1ConfigFromTensors(src).unet, { precision: 'fp16' });
      const params = [...g.params.values()];
      expect(params.length).toBeGreaterThan(100);
      expect(params.every((p) => p.dtype === 'F16')).toBe(true);
      const prepared = await prepareModel(g, 'test-f16', { cacheDir });
      expect(prepared.placement).toBe('in-place');
    } finally {
      await src.close();
    }
  });

  it('from an fp32 checkpoint are converted once into the cache at two bytes per value', async () => {
    const src = await openSafetensors(goldenPath(TINY, 'tiny-sd.safetensors'));
    try {
      const g = buildUNetGraph(src, sd1ConfigFromTensors(src).unet, { precision: 'fp16' });
      const prepared = await prepareModel(g, 'test-f16', { cacheDir });
      expect(prepared.placement).toBe('cache');
      const values = [...g.params.values()].reduce((n, p) => n + numel(p.shape), 0);
      const size = statSync(join(prepared.cacheEntry!, 'weights.bin')).size;
      expect(size).toBeGreaterThanOrEqual(2 * values);
      expect(size).toBeLessThan(2.2 * values); // alignment padding only, not float32
      const model = g.toModel(() => ({ name: 'x', dims: [], dataType: OnnxDataType.FLOAT16 }));
      const floatInits = model.graph.initializer.filter((t) => t.dataType === OnnxDataType.FLOAT);
      // The only float32 constants: the timestep frequencies, GroupNorm's unit affine, Resize scales.
      expect(floatInits.every((t) => /freqs|ones|zeros|scales/.test(t.name))).toBe(true);
    } finally {
      await src.close();
    }
  });
});
