/** Damaged or unsupported adapter files are UserErrors with a message that names the problem. */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadHypernetwork } from '../../src/adapters/hypernetwork.js';
import { buildLayerTable } from '../../src/adapters/lora-keys.js';
import { loadNetwork } from '../../src/adapters/lora.js';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { openModel } from '../../src/formats/open.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { UserError } from '../../src/util/errors.js';
import { goldenPath } from '../helpers/golden.js';
import { adapterPath, casesOf, closeAll, openCached } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-adapters-bad-'));
afterAll(async () => {
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

const checkpoint = () => casesOf('lora_apply')[0]!.checkpoint as string;

async function loadLoraFile(path: string) {
  const ckpt = await openCached(adapterPath(checkpoint()));
  const file = await openModel(path);
  try {
    return await loadNetwork(file, buildLayerTable(ckpt));
  } finally {
    await file.close();
  }
}

function t(shape: number[], fill: number): Tensor {
  return float32ArrayToTensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill), shape);
}

describe('bad LoRA files', () => {
  it('a truncated file is a UserError', async () => {
    const src = adapterPath(casesOf('lora_apply')[0]!.adapter as string);
    const bytes = readFileSync(src);
    const p = join(dir, 'truncated.safetensors');
    writeFileSync(p, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expect(loadLoraFile(p)).rejects.toBeInstanceOf(UserError);
  });

  it('NaN in a tensor is refused with the tensor named', async () => {
    const p = join(dir, 'nan.safetensors');
    const key = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
    const ckpt = await openCached(adapterPath(checkpoint()));
    const w = ckpt.info(
      'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight',
    )!.shape;
    await writeSafetensors(p, [
      [`${key}.lora_down.weight`, t([2, w[1]!], NaN)],
      [`${key}.lora_up.weight`, t([w[0]!, 2], 1)],
    ]);
    await expect(loadLoraFile(p)).rejects.toThrow(/lora_down.weight holds NaN/);
  });

  it('a LoRA on a layer of unsupported type fails the network as A1111 does, with a UserError', async () => {
    const p = join(dir, 'layernorm.safetensors');
    const key = 'lora_te_text_model_encoder_layers_0_layer_norm1';
    await writeSafetensors(p, [
      [`${key}.lora_down.weight`, t([2, 4], 0.1)],
      [`${key}.lora_up.weight`, t([4, 2], 0.1)],
    ]);
    await expect(loadLoraFile(p)).rejects.toThrow(/unsupported type LayerNorm/);
  });

  it('keys no network type accepts are named', async () => {
    const p = join(dir, 'unknown.safetensors');
    await writeSafetensors(p, [['lora_te_text_model_encoder_layers_0_mlp_fc1.something', t([2], 1)]]);
    await expect(loadLoraFile(p)).rejects.toThrow(/no network type accepts the keys/);
  });
});

describe('bad hypernetwork files', () => {
  const hnFile = () => adapterPath(casesOf('hypernetwork')[0]!.file as string);

  it('a truncated .pt is a UserError', async () => {
    const bytes = readFileSync(hnFile());
    const p = join(dir, 'truncated.pt');
    writeFileSync(p, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
    await expect(loadHypernetwork(p)).rejects.toBeInstanceOf(UserError);
  });

  it('a checkpoint is not a hypernetwork', async () => {
    const p = join(dir, 'ckpt.pt');
    copyFileSync(goldenPath('tiny-sd', 'tiny-sd.safetensors'), p);
    await expect(loadHypernetwork(p)).rejects.toBeInstanceOf(UserError);
  });
});
