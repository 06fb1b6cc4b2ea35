/**
 * The UNet call's per-step hooks (pipeline/sample.ts), the seam ControlNet residuals and
 * hypernetwork K/V plug into: every pass of a job announces its plan, every UNet call shows its
 * inputs to the hooks first (and runs on what they leave there), every step is reported.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, type UnetStepHook } from '../../src/pipeline/generate.js';
import type { LoadedModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import { loadTinyModel } from '../helpers/tiny-model.js';

let model: LoadedModel;
beforeAll(async () => {
  model = await loadTinyModel();
});
afterAll(async () => {
  await model?.release();
});

const params = (extra: Record<string, unknown> = {}) =>
  withDefaults({
    prompt: 'a cube',
    width: 64,
    height: 64,
    steps: 3,
    seed: 11,
    sampler_name: 'Euler',
    ...extra,
  });

describe('per-step UNet hooks', () => {
  it('see each pass plan, every UNet call before it runs, and every step; hires has two passes', async () => {
    const log: string[] = [];
    const hook: UnetStepHook = {
      start: (plan) => void log.push(`start ${plan.steps}`),
      beforeUnet: (inputs) => void log.push(`unet ${inputs.x.dims.join('x')}`),
      afterStep: (info) => void log.push(`step ${info.i + 1}`),
    };
    await generate(
      model,
      params({ enable_hr: true, hr_scale: 2, hr_second_pass_steps: 2, denoising_strength: 0.7 }),
      'txt2img',
      {},
      { unetHooks: [hook] },
    );
    // Euler: one UNet call per step, cond and uncond of the image in one batch of 2.
    expect(log).toEqual([
      'start 3',
      'unet 2x4x8x8',
      'step 1',
      'unet 2x4x8x8',
      'step 2',
      'unet 2x4x8x8',
      'step 3',
      'start 2',
      'unet 2x4x16x16',
      'step 1',
      'unet 2x4x16x16',
      'step 2',
    ]);
  });

  it('the UNet runs on the inputs the hooks leave: a no-op hook changes nothing, an edit changes the image', async () => {
    const run = async (hooks: UnetStepHook[]) =>
      (await generate(model, params(), 'txt2img', {}, { unetHooks: hooks })).images[0]!.image.data;
    const plain = await run([]);
    const noop = await run([{ beforeUnet: () => undefined }]);
    expect(Buffer.from(noop).equals(Buffer.from(plain))).toBe(true);
    const edited = await run([
      {
        beforeUnet: (inputs) => {
          inputs.context = { data: inputs.context.data.map((v) => v * 0.5), dims: inputs.context.dims };
        },
      },
    ]);
    expect(Buffer.from(edited).equals(Buffer.from(plain))).toBe(false);
  });
});
