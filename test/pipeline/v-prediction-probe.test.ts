/**
 * How an SD 2.x checkpoint's prediction is decided (A1111 v1.10.1 sd_models_config): `--prediction`,
 * else the `<checkpoint>.yaml` sidecar, else — the only case detection leaves open — A1111's
 * `is_using_v_parameterization_for_sd2` probe: the UNet on x = 0.5, t = 999, a two-token 0.5
 * context; v when mean(UNet(x) − x) < −1. The probe is checked on the tiny-sd2 UNet with its output
 * layer set to a known constant on either side of the threshold.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { openModel } from '../../src/formats/open.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { diffusionConfigFromSource } from '../../src/models/family.js';
import { loadDiffusionModel, probeVPrediction, type Sd1Model } from '../../src/runtime/sd1.js';
import { GoldenSet } from '../engine/family-goldens.js';
import { goldenPath } from '../helpers/golden.js';

const gs = new GoldenSet('tiny-sd2');
const c = gs.cases.find((x) => x.kind === 'txt2img')!;
const OUT = 'model.diffusion_model.out.2';
const models: Sd1Model[] = [];
afterAll(async () => {
  for (const m of models) await m.release();
});

/** The tiny SD2 checkpoint in memory (no path, so no sidecar), its UNet output fixed at `bias` if given. */
async function source(bias?: number): Promise<MemoryTensorSource> {
  const src = await openModel(goldenPath(gs.set, c.checkpoint));
  const tensors = new Map<string, Tensor>();
  for (const k of src.keys()) tensors.set(k, await src.read(k));
  await src.close();
  if (bias !== undefined) {
    const w = tensors.get(`${OUT}.weight`)!;
    tensors.set(`${OUT}.weight`, { ...w, data: new Uint8Array(w.data.byteLength) });
    const b = tensors.get(`${OUT}.bias`)!;
    const values = new Float32Array(b.data.byteLength / 4).fill(bias);
    tensors.set(`${OUT}.bias`, { dtype: 'F32', shape: b.shape, data: new Uint8Array(values.buffer) });
  }
  return new MemoryTensorSource(tensors, { path: 'tiny-sd2-in-memory' });
}

describe('SD 2.x v or eps', () => {
  it('keys alone leave it open; the sidecar or --prediction decide it', async () => {
    const src = await source();
    const bare = diffusionConfigFromSource(src);
    expect(bare.predictionUnknown).toBe(true);
    const yamlPath = goldenPath(gs.set, c.config);
    const withYaml = diffusionConfigFromSource(src, { yamlPath });
    expect(withYaml.predictionUnknown).toBe(false);
    // The set's UNet cases say what the sidecar says.
    const prediction = gs.cases.find((x) => x.kind === 'unet')!.prediction as string;
    expect(withYaml.config.prediction).toBe(prediction);
    expect(withYaml.config.defaultSize).toBe(prediction === 'v' ? 768 : 512);
    const forced = diffusionConfigFromSource(src, { yamlPath, prediction: 'eps' });
    expect([forced.predictionUnknown, forced.config.prediction, forced.config.defaultSize]).toEqual([
      false,
      'eps',
      512,
    ]);
  });

  // UNet output ≡ bias, x = 0.5: mean(out − x) = bias − 0.5, v below −1.
  for (const [bias, v] of [
    [-5, true],
    [-0.6, true],
    [-0.4, false],
    [3, false],
  ] as const) {
    it(`the probe: UNet output ${bias} → ${v ? 'v' : 'eps'}`, async () => {
      const m = await loadDiffusionModel(await source(bias), {
        yamlPath: goldenPath(gs.set, c.config),
        threads: 1,
      });
      models.push(m);
      expect(await probeVPrediction(m)).toBe(v);
    });
  }
});
