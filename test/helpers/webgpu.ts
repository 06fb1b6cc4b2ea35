/**
 * Whether onnxruntime's webgpu provider can start here. CI installs Mesa's software Vulkan driver
 * (lavapipe) so the GPU path runs on a machine without a GPU, and sets SDSTUDIO_REQUIRE_WEBGPU=1
 * when webgpu-probe.ts starts the provider: then a missing adapter fails the suites instead of
 * skipping them.
 */
import ort from 'onnxruntime-node';
import { it } from 'vitest';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { MemoryTensorSource } from '../../src/formats/memory.js';

/** Why a webgpu session cannot be created here, or undefined when it can. */
export async function webgpuMissing(): Promise<string | undefined> {
  const g = new GraphBuilder('probe', new MemoryTensorSource(new Map()), { contribOps: false });
  const x = g.input('x', 'float32', [4]);
  g.output(g.op1('Add', [x, x], {}, { name: 'twice' }), 'y', 'float32', [4]);
  try {
    const s = await ort.InferenceSession.create(
      encodeModel(
        g.toModel(() => {
          throw new Error('the probe has no params');
        }),
      ),
      {
        executionProviders: ['webgpu'],
        logSeverityLevel: 4,
      },
    );
    await s.release();
    return undefined;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}

export const webgpuRequired = process.env.SDSTUDIO_REQUIRE_WEBGPU === '1';

/** A test that fails, saying why, where webgpu is required but cannot start. */
export function failMissingWebgpu(why: string): void {
  it('starts the webgpu provider (SDSTUDIO_REQUIRE_WEBGPU=1)', () => {
    throw new Error(`webgpu is required here but cannot start: ${why}`);
  });
}
