import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { convertTensor, toFloat32 } from '../../src/formats/dtype.js';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { detectModel } from '../../src/models/detect.js';
import { convertModel, isScheduleBuffer } from '../../src/tools/convert.js';
import { extractPart } from '../../src/tools/extract.js';
import { UserError } from '../../src/util/errors.js';
import { withSource } from '../helpers/tensor-source.js';
import { maliciousFiles } from '../helpers/golden-cases.js';
import { goldenPath } from '../helpers/golden.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-convert-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');
const tinyFp16 = goldenPath('tiny-sd', 'tiny-sd-fp16.safetensors');
const tinyCkpt = goldenPath(
  'formats',
  (JSON.parse(readFileSync(goldenPath('formats', 'tiny_sd_ckpt.json'), 'utf8')) as { file: string }).file,
);

/** Every tensor of `a` equals the tensor of the same name in `b`, byte for byte (same dtype and shape). */
async function expectIdentical(a: string, b: string): Promise<void> {
  await withSource(a, (sa) =>
    withSource(b, async (sb) => {
      expect(sa.keys()).toEqual(sb.keys());
      for (const k of sa.keys()) {
        const ta = await sa.read(k);
        const tb = await sb.read(k);
        expect(ta.dtype, k).toBe(tb.dtype);
        expect(ta.shape, k).toEqual(tb.shape);
        expect(Buffer.from(ta.data).equals(Buffer.from(tb.data)), k).toBe(true);
      }
    }),
  );
}

describe('convertModel', () => {
  it('fp32 -> fp16 equals the golden fp16 checkpoint bit for bit (position_ids stay I64)', async () => {
    const out = join(dir, 'fp16.safetensors');
    const r = await convertModel(tiny, out, { dtype: 'fp16' });
    expect(r.dropped).toBe(0);
    await expectIdentical(out, tinyFp16);
    // The whole file too: same header (metadata, layout order, padding) as the golden's writer.
    expect(readFileSync(out).equals(readFileSync(tinyFp16))).toBe(true);
  });

  it('a .ckpt (state_dict unwrapped) converts to the same tensors as its safetensors twin', async () => {
    const out = join(dir, 'from-ckpt.safetensors');
    await convertModel(tinyCkpt, out);
    await expectIdentical(out, tinyFp16);
    const s = await openSafetensors(out);
    expect(s.metadata.format).toBe('pt');
    await s.close();
  });

  it('bf16 rounds floats only, the DDPM schedule buffers excepted; --no-vae drops the VAE', async () => {
    const out = join(dir, 'bf16.safetensors');
    await convertModel(tiny, out, { dtype: 'bf16', noVae: true });
    await withSource(tiny, (src) =>
      withSource(out, async (conv) => {
        const kept = src.keys().filter((k) => !k.startsWith('first_stage_model.'));
        expect(conv.keys()).toEqual(kept);
        for (const k of kept) {
          const t = await src.read(k);
          const c = await conv.read(k);
          if (t.dtype === 'F32' && !isScheduleBuffer(k)) {
            expect(c.dtype).toBe('BF16');
            expect(Buffer.from(c.data).equals(Buffer.from(convertTensor(t, 'BF16').data)), k).toBe(true);
          } else {
            expect(c.dtype).toBe(t.dtype);
            expect(Buffer.from(c.data).equals(Buffer.from(t.data))).toBe(true);
          }
        }
      }),
    );
  });

  it('--prune drops EMA and junk keys and keeps the rest; float position_ids become integers again', async () => {
    const input = join(dir, 'with-ema.safetensors');
    const f32 = (values: number[], shape: number[]): Tensor => ({
      dtype: 'F32',
      shape,
      data: new Uint8Array(new Float32Array(values).buffer),
    });
    await withSource(tiny, async (src) => {
      const keep = [
        'model.diffusion_model.out.2.bias',
        'first_stage_model.post_quant_conv.bias',
        'alphas_cumprod',
      ];
      const entries: [string, Tensor][] = [];
      for (const k of keep) entries.push([k, await src.read(k)]);
      entries.push(['model_ema.diffusion_modelout2bias', f32([1, 2, 3, 4], [4])]);
      entries.push(['model_ema.num_updates', { dtype: 'I64', shape: [], data: new Uint8Array(8) }]);
      entries.push(['embedding_manager.embedder.x', f32([1], [1])]);
      entries.push([
        'cond_stage_model.transformer.text_model.embeddings.position_ids',
        f32([0, 1, 2.0000002], [1, 3]),
      ]);
      await writeSafetensors(input, entries);
    });
    const out = join(dir, 'pruned.safetensors');
    const r = await convertModel(input, out, { prune: true });
    expect(r.dropped).toBe(3);
    await withSource(out, async (s) => {
      expect(s.keys()).toEqual([
        'alphas_cumprod',
        'cond_stage_model.transformer.text_model.embeddings.position_ids',
        'first_stage_model.post_quant_conv.bias',
        'model.diffusion_model.out.2.bias',
      ]);
      const ids = await s.read('cond_stage_model.transformer.text_model.embeddings.position_ids');
      expect(ids.dtype).toBe('I64');
      expect([...new BigInt64Array(ids.data.slice().buffer)]).toEqual([0n, 1n, 2n]);
    });
  });

  it("SD 2.1 Turbo's SGM text tower gets the ldm names, as A1111 renames it on load", async () => {
    const z = (shape: number[]): Tensor => ({
      dtype: 'F32',
      shape,
      data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4),
    });
    const sgm = 'conditioner.embedders.0.model.';
    const input = join(dir, 'turbo-sgm.safetensors');
    await writeSafetensors(input, [
      ['model.diffusion_model.input_blocks.0.0.weight', z([8, 4, 3, 3])],
      ['model.diffusion_model.input_blocks.1.0.in_layers.2.weight', z([8, 8, 3, 3])],
      [`${sgm}ln_final.weight`, z([1024])],
      [`${sgm}token_embedding.weight`, z([4, 1024])],
    ]);
    const out = join(dir, 'turbo-ldm.safetensors');
    await convertModel(input, out);
    await withSource(out, async (s) => {
      expect(s.keys()).toEqual([
        'cond_stage_model.model.ln_final.weight',
        'cond_stage_model.model.token_embedding.weight',
        'model.diffusion_model.input_blocks.0.0.weight',
        'model.diffusion_model.input_blocks.1.0.in_layers.2.weight',
      ]);
      expect(detectModel(s).architecture).toBe('sd2');
    });
  });

  it('bad input: one clear UserError and no output file left behind', async () => {
    await expect(convertModel(join(dir, 'missing.ckpt'), join(dir, 'x.safetensors'))).rejects.toThrow(
      UserError,
    );
    await expect(convertModel(tiny, join(dir, 'out.ckpt'))).rejects.toThrow(/\.safetensors/);
    const malicious = maliciousFiles();
    expect(malicious.length).toBeGreaterThan(0);
    for (const m of malicious)
      await expect(convertModel(m.path, join(dir, 'm.safetensors')), m.file).rejects.toThrow(UserError);
    await expect(convertModel(tiny, join(dir, 'no-such-dir', 'x.safetensors'))).rejects.toThrow(UserError);
    expect(
      readdirSync(dir).filter((f) => f.includes('.tmp-') || f === 'x.safetensors' || f === 'm.safetensors'),
    ).toEqual([]);
  });
});

describe('extractPart', () => {
  it('vae: first_stage_model. stripped, detected as a VAE with the checkpoint VAE config, bytes unchanged', async () => {
    const out = join(dir, 'vae.safetensors');
    await extractPart(tiny, 'vae', out);
    await withSource(tiny, (src) =>
      withSource(out, async (vae) => {
        const info = detectModel(vae);
        expect(info.kind).toBe('vae');
        expect(info.config.vae).toEqual(detectModel(src).config.vae);
        const names = src.keys().filter((k) => k.startsWith('first_stage_model.'));
        expect(vae.keys()).toEqual(names.map((k) => k.slice('first_stage_model.'.length)).sort());
        for (const k of names) {
          const a = await src.read(k);
          const b = await vae.read(k.slice('first_stage_model.'.length));
          expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
        }
      }),
    );
  });

  it('unet: bare ldm names, same UNet config; text-encoder: HF CLIPTextModel names, same config', async () => {
    const unet = join(dir, 'unet.safetensors');
    const te = join(dir, 'te.safetensors');
    await extractPart(tinyCkpt, 'unet', unet);
    await extractPart(tinyCkpt, 'text-encoder', te);
    await withSource(tinyCkpt, (src) =>
      withSource(unet, (u) =>
        withSource(te, async (t) => {
          const full = detectModel(src);
          const ui = detectModel(u);
          expect(u.keys().every((k) => !k.startsWith('model.'))).toBe(true);
          expect(ui.config.unet).toEqual(full.config.unet);
          expect(ui.components).toEqual({ unet: full.components.unet });
          const ti = detectModel(t);
          expect(t.keys().every((k) => k.startsWith('text_model.'))).toBe(true);
          expect(ti.config.text_encoder).toEqual(full.config.text_encoder);
          expect(ti.components).toEqual({ text_encoder: full.components.text_encoder });
          const k = 'text_model.final_layer_norm.weight';
          expect(toFloat32(await t.read(k))).toEqual(
            toFloat32(await src.read('cond_stage_model.transformer.' + k)),
          );
        }),
      ),
    );
  });

  it('a part the file does not have, or an unknown part, is a UserError', async () => {
    await expect(
      extractPart(join(dir, 'vae.safetensors'), 'unet', join(dir, 'u2.safetensors')),
    ).rejects.toThrow(/no unet/);
    await expect(extractPart(tiny, 'clip' as never, join(dir, 'u3.safetensors'))).rejects.toThrow(UserError);
    expect(existsSync(join(dir, 'u2.safetensors'))).toBe(false);
  });
});

describe('extractPart: OpenCLIP text towers become CLIPTextModel names', () => {
  it('splits the packed in_proj into q/k/v, transposes the projection, keeps every value', async () => {
    const w = 8;
    const p = 'cond_stage_model.model.';
    let seed = 1;
    const rnd = (shape: number[]): Tensor => {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = new Float32Array(n);
      for (let i = 0; i < n; i++) v[i] = ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
      return { dtype: 'F32', shape, data: new Uint8Array(v.buffer) };
    };
    const input = join(dir, 'openclip.safetensors');
    const entries: [string, Tensor][] = [
      [`${p}token_embedding.weight`, rnd([20, w])],
      [`${p}positional_embedding`, rnd([5, w])],
      [`${p}ln_final.weight`, rnd([w])],
      [`${p}ln_final.bias`, rnd([w])],
      [`${p}text_projection`, rnd([w, 6])],
      [`${p}logit_scale`, rnd([])],
    ];
    for (const l of [0, 1]) {
      const r = `${p}transformer.resblocks.${l}.`;
      entries.push(
        [`${r}attn.in_proj_weight`, rnd([3 * w, w])],
        [`${r}attn.in_proj_bias`, rnd([3 * w])],
        [`${r}attn.out_proj.weight`, rnd([w, w])],
        [`${r}attn.out_proj.bias`, rnd([w])],
        [`${r}ln_1.weight`, rnd([w])],
        [`${r}ln_1.bias`, rnd([w])],
        [`${r}ln_2.weight`, rnd([w])],
        [`${r}ln_2.bias`, rnd([w])],
        [`${r}mlp.c_fc.weight`, rnd([4 * w, w])],
        [`${r}mlp.c_fc.bias`, rnd([4 * w])],
        [`${r}mlp.c_proj.weight`, rnd([w, 4 * w])],
        [`${r}mlp.c_proj.bias`, rnd([w])],
      );
    }
    await writeSafetensors(input, entries);
    const out = join(dir, 'openclip-hf.safetensors');
    await extractPart(input, 'text-encoder', out);
    const byName = new Map(entries);
    await withSource(out, async (s) => {
      const info = detectModel(s);
      expect(info.config.text_encoder).toMatchObject({
        layout: 'hf-clip',
        vocab_size: 20,
        max_position_embeddings: 5,
        hidden_size: w,
        num_hidden_layers: 2,
        intermediate_size: 4 * w,
      });
      const f = async (k: string) => toFloat32(await s.read(k));
      const src = (k: string) => toFloat32(byName.get(p + k)!);
      for (const l of [0, 1]) {
        const packed = src(`transformer.resblocks.${l}.attn.in_proj_weight`);
        const bias = src(`transformer.resblocks.${l}.attn.in_proj_bias`);
        for (const [j, name] of ['q_proj', 'k_proj', 'v_proj'].entries()) {
          const base = `text_model.encoder.layers.${l}.self_attn.${name}.`;
          expect(await f(base + 'weight')).toEqual(packed.slice(j * w * w, (j + 1) * w * w));
          expect(await f(base + 'bias')).toEqual(bias.slice(j * w, (j + 1) * w));
        }
        expect(await f(`text_model.encoder.layers.${l}.mlp.fc2.weight`)).toEqual(
          src(`transformer.resblocks.${l}.mlp.c_proj.weight`),
        );
      }
      const proj = src('text_projection');
      const t = await f('text_projection.weight');
      expect(s.info('text_projection.weight')!.shape).toEqual([6, w]);
      for (let i = 0; i < w; i++) for (let j = 0; j < 6; j++) expect(t[j * w + i]).toBe(proj[i * 6 + j]);
      expect(s.has('logit_scale')).toBe(false);
    });
  });

  it('a packed in_proj that is not 3 equal parts, or a projection that is not a matrix, is a UserError', async () => {
    const p = 'cond_stage_model.model.';
    const z = (shape: number[]): Tensor => ({
      dtype: 'F32',
      shape,
      data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4),
    });
    for (const [name, bad] of [
      ['transformer.resblocks.0.attn.in_proj_weight', z([7, 8])],
      ['text_projection', z([8])],
    ] as const) {
      const input = join(dir, `bad-openclip-${name.length}.safetensors`);
      await writeSafetensors(input, [
        [`${p}token_embedding.weight`, z([20, 8])],
        [p + name, bad],
      ]);
      const out = join(dir, `bad-openclip-out-${name.length}.safetensors`);
      await expect(extractPart(input, 'text-encoder', out), name).rejects.toThrow(/cannot convert it/);
      expect(existsSync(out)).toBe(false);
    }
  });
});
