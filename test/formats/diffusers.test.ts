import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ldmToUnet,
  ldmToVae,
  unetLayoutFromKeys,
  unetLayoutFromLdmKeys,
  unetToLdm,
  vaeLayoutFromKeys,
} from '../../src/formats/diffusers-names.js';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { openModel } from '../../src/formats/open.js';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor, TensorSource } from '../../src/formats/tensor.js';
import { readTorchFile } from '../../src/formats/torch.js';
import { UserError } from '../../src/util/errors.js';
import { goldenPath } from '../helpers/golden.js';
import { sha256 } from './golden-tensors.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-diffusers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const COMPONENTS = {
  unet: 'model.diffusion_model.',
  vae: 'first_stage_model.',
  text_encoder: 'cond_stage_model.transformer.',
};

describe('diffusers folder built from tiny-sd', () => {
  let tiny: TensorSource;
  const folder = join(dir, 'tiny-diffusers');
  const diffusersName = new Map<string, string>();

  beforeAll(async () => {
    tiny = await openSafetensors(goldenPath('tiny-sd', 'tiny-sd.safetensors'));
    const strip = (prefix: string) =>
      tiny
        .keys()
        .filter((k) => k.startsWith(prefix))
        .map((k) => k.slice(prefix.length));
    const unetLayout = unetLayoutFromLdmKeys(strip(COMPONENTS.unet));
    const vaeLayout = vaeLayoutFromKeys(strip(COMPONENTS.vae), true);
    for (const [sub, prefix] of Object.entries(COMPONENTS)) {
      mkdirSync(join(folder, sub), { recursive: true });
      const entries: [string, Tensor][] = [];
      for (const k of strip(prefix)) {
        const t = await tiny.read(prefix + k);
        let name = k;
        let shape = t.shape;
        if (sub === 'unet') name = ldmToUnet(k, unetLayout)!;
        if (sub === 'vae') {
          name = ldmToVae(k, vaeLayout);
          if (/mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(k)) shape = t.shape.slice(0, 2);
        }
        expect(name, k).toBeDefined();
        diffusersName.set(prefix + k, `${sub}/${name}`);
        entries.push([name, { ...t, shape }]);
      }
      const file = sub === 'text_encoder' ? 'model.safetensors' : 'diffusion_pytorch_model.safetensors';
      await writeSafetensors(join(folder, sub, file), entries);
    }
    writeFileSync(join(folder, 'text_encoder', 'config.json'), JSON.stringify({ hidden_act: 'quick_gelu' }));
    writeFileSync(join(folder, 'model_index.json'), '{}');
  });
  afterAll(async () => tiny.close());

  it('written names are diffusers names (UNet blocks, VAE up/down, resnets)', () => {
    const names = [...diffusersName.values()];
    expect(names).toContain('unet/conv_in.weight');
    expect(names).toContain('unet/time_embedding.linear_1.weight');
    expect(names.some((n) => /^unet\/up_blocks\.\d+\.upsamplers\.0\.conv\.weight$/.test(n))).toBe(true);
    expect(names.some((n) => /^unet\/down_blocks\.\d+\.resnets\.\d+\.time_emb_proj\.weight$/.test(n))).toBe(
      true,
    );
    expect(names.some((n) => /^vae\/decoder\.up_blocks\.\d+\.resnets\.\d+\.conv1\.weight$/.test(n))).toBe(
      true,
    );
    expect(names).toContain('vae/encoder.mid_block.attentions.0.to_q.weight');
    expect(names.every((n) => !/input_blocks|output_blocks|in_layers|\.block\.|attn_1/.test(n))).toBe(true);
  });

  it('openModel maps every tensor back to its ldm name with identical bytes', async () => {
    const src = await openModel(folder);
    try {
      expect(src.format).toBe('diffusers');
      const expected = tiny.keys().filter((k) => Object.values(COMPONENTS).some((p) => k.startsWith(p)));
      expect(src.keys()).toEqual(expected);
      const files = new Map<string, Buffer>();
      for (const k of expected) {
        expect(src.info(k), k).toEqual(tiny.info(k));
        const [a, b] = [await src.read(k), await tiny.read(k)];
        expect(a.shape, k).toEqual(b.shape);
        expect(sha256(a.data), k).toBe(sha256(b.data));
        const loc = src.location(k)!;
        if (!files.has(loc.path)) files.set(loc.path, readFileSync(loc.path));
        const raw = files.get(loc.path)!.subarray(loc.offset, loc.offset + loc.length);
        expect(sha256(raw), k).toBe(sha256(b.data));
      }
    } finally {
      await src.close();
    }
  });

  it('a folder holding only a diffusers VAE reads as a standalone ldm VAE', async () => {
    const src = await openModel(join(folder, 'vae'));
    try {
      const want = tiny
        .keys()
        .filter((k) => k.startsWith(COMPONENTS.vae))
        .map((k) => k.slice(COMPONENTS.vae.length));
      expect(src.keys()).toEqual(want);
    } finally {
      await src.close();
    }
  });
});

describe('folders that are not diffusers models', () => {
  it('a sub-folder named like a weight file is not read as one: a clear UserError', async () => {
    const odd = join(dir, 'odd');
    mkdirSync(join(odd, 'unet', 'diffusion_pytorch_model.safetensors'), { recursive: true });
    await expect(openModel(odd)).rejects.toThrow(UserError);
    await expect(openModel(odd)).rejects.toThrow(/no model weights/);
    // The readers themselves refuse a folder path with a UserError, not a read error.
    await expect(openSafetensors(join(odd, 'unet', 'diffusion_pytorch_model.safetensors'))).rejects.toThrow(
      /is not a file/,
    );
    await expect(readTorchFile(odd)).rejects.toThrow(/is not a file/);
  });
});

describe('UNet names against the ControlNet key map (diffusers convert_from_ckpt)', () => {
  it('maps every UNet-encoder name of key_map.json to its ldm name and back', () => {
    const keyMap = JSON.parse(
      readFileSync(goldenPath('controlnet', 'diffusers', 'key_map.json'), 'utf8'),
    ) as Record<string, string>;
    const pairs = Object.entries(keyMap)
      .filter(([ldm]) => /^control_model\.(input_blocks|middle_block|time_embed)\./.test(ldm))
      .map(([ldm, hf]) => [ldm.slice('control_model.'.length), hf] as const);
    expect(pairs.length).toBeGreaterThan(0);
    const layout = unetLayoutFromKeys(pairs.map(([, hf]) => hf));
    for (const [ldm, hf] of pairs) {
      expect(unetToLdm(hf, layout), hf).toBe(ldm);
      expect(ldmToUnet(ldm, layout), ldm).toBe(hf);
    }
  });
});

describe('OpenCLIP text encoders (SD2, SDXL)', () => {
  /** A 1-layer HF CLIP text model with width 4 and recognisable values. */
  async function writeHfClip(sub: string, withProjection: boolean, hiddenAct: string) {
    const d = join(dir, 'openclip', sub);
    mkdirSync(d, { recursive: true });
    let seed = 1;
    const t = (shape: number[]) =>
      float32ArrayToTensor(
        new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => seed++),
        shape,
      );
    const entries = new Map<string, Tensor>([
      ['text_model.embeddings.token_embedding.weight', t([10, 4])],
      ['text_model.embeddings.position_embedding.weight', t([3, 4])],
      ['text_model.embeddings.position_ids', { dtype: 'I64', shape: [1, 3], data: new Uint8Array(24) }],
      ['text_model.final_layer_norm.weight', t([4])],
      ['text_model.final_layer_norm.bias', t([4])],
    ]);
    for (const p of ['q', 'k', 'v', 'out']) {
      entries.set(`text_model.encoder.layers.0.self_attn.${p}_proj.weight`, t([4, 4]));
      entries.set(`text_model.encoder.layers.0.self_attn.${p}_proj.bias`, t([4]));
    }
    for (const [p, shape] of [
      ['layer_norm1.weight', [4]],
      ['layer_norm2.bias', [4]],
      ['mlp.fc1.weight', [8, 4]],
      ['mlp.fc2.weight', [4, 8]],
    ] as const) {
      entries.set(`text_model.encoder.layers.0.${p}`, t([...shape]));
    }
    if (withProjection) entries.set('text_projection.weight', t([2, 4]));
    await writeSafetensors(join(d, 'model.safetensors'), entries);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ hidden_act: hiddenAct }));
    return entries;
  }

  it('SD2 text_encoder becomes cond_stage_model.model.* with fused in_proj', async () => {
    const hf = await writeHfClip('text_encoder', false, 'gelu');
    const src = await openModel(join(dir, 'openclip'));
    try {
      const p = 'cond_stage_model.model.';
      expect(src.keys()).toContain(`${p}token_embedding.weight`);
      expect(src.keys()).toContain(`${p}positional_embedding`);
      expect(src.keys()).toContain(`${p}ln_final.weight`);
      expect(src.keys()).toContain(`${p}transformer.resblocks.0.ln_1.weight`);
      expect(src.keys()).toContain(`${p}transformer.resblocks.0.mlp.c_fc.weight`);
      expect(src.keys()).toContain(`${p}transformer.resblocks.0.mlp.c_proj.weight`);
      expect(src.keys()).toContain(`${p}transformer.resblocks.0.attn.out_proj.bias`);
      expect(src.keys().some((k) => k.includes('position_ids'))).toBe(false);
      const w = await src.readFloat32(`${p}transformer.resblocks.0.attn.in_proj_weight`);
      const parts = ['q', 'k', 'v'].map((x) =>
        Array.from(
          new Float32Array(
            hf.get(`text_model.encoder.layers.0.self_attn.${x}_proj.weight`)!.data.slice().buffer,
          ),
        ),
      );
      expect(src.info(`${p}transformer.resblocks.0.attn.in_proj_weight`)!.shape).toEqual([12, 4]);
      expect(Array.from(w)).toEqual(parts.flat());
      expect(src.info(`${p}transformer.resblocks.0.attn.in_proj_bias`)!.shape).toEqual([12]);
    } finally {
      await src.close();
    }
  });

  it('SDXL text_encoder_2 becomes conditioner.embedders.1.model.* with text_projection transposed', async () => {
    const hf = await writeHfClip('text_encoder_2', true, 'gelu');
    const src = await openModel(join(dir, 'openclip'));
    try {
      // text_encoder (from the previous test) now counts as SDXL's CLIP-L
      expect(src.keys()).toContain('conditioner.embedders.0.transformer.text_model.final_layer_norm.weight');
      const proj = src.info('conditioner.embedders.1.model.text_projection')!;
      expect(proj.shape).toEqual([4, 2]);
      const w = new Float32Array(hf.get('text_projection.weight')!.data.slice().buffer); // [2, 4]
      const got = await src.readFloat32('conditioner.embedders.1.model.text_projection'); // [4, 2]
      for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) expect(got[j * 2 + i]).toBe(w[i * 4 + j]);
    } finally {
      await src.close();
    }
  });
});

describe('bad diffusers folders', () => {
  it('refuses a folder with no weights', async () => {
    const d = join(dir, 'empty');
    mkdirSync(join(d, 'unet'), { recursive: true });
    await expect(openModel(d)).rejects.toBeInstanceOf(UserError);
  });

  it('refuses a UNet with names diffusers never writes', async () => {
    const d = join(dir, 'strange');
    mkdirSync(join(d, 'unet'), { recursive: true });
    await writeSafetensors(
      join(d, 'unet', 'diffusion_pytorch_model.safetensors'),
      new Map([['weird.weight', float32ArrayToTensor(new Float32Array([1]), [1])]]),
    );
    await expect(openModel(d)).rejects.toThrow(/unexpected UNet tensor "weird.weight"/);
  });
});
