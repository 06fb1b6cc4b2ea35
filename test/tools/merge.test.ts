import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { castFloats, float32ArrayToTensor, toFloat32 } from '../../src/formats/dtype.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { detectModel } from '../../src/models/detect.js';
import { convertModel } from '../../src/tools/convert.js';
import { extractPart } from '../../src/tools/extract.js';
import { hashFile } from '../../src/tools/hash.js';
import { mergeModels } from '../../src/tools/merge.js';
import { UserError } from '../../src/util/errors.js';
import { withSource } from '../helpers/tensor-source.js';
import { matchedLoraFile } from '../helpers/golden-cases.js';
import { goldenPath } from '../helpers/golden.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-merge-'));
const cacheDir = join(dir, 'cache');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const A = goldenPath('tiny-sd', 'tiny-sd.safetensors');
const C = goldenPath('tiny-sd', 'tiny-sd-fp16.safetensors');
const B = join(dir, 'b.safetensors');
const PARTIAL = join(dir, 'partial-b.safetensors');
const INPAINT = join(dir, 'inpaint.safetensors');
const XL = join(dir, 'xl.safetensors');
const CONV_IN = 'model.diffusion_model.input_blocks.0.0.weight';

/** tiny-sd with some tensors replaced: `edit` returns the new tensor for a name, or undefined to keep it. */
async function variantOf(out: string, edit: (name: string, t: Tensor) => Tensor | undefined): Promise<void> {
  await withSource(A, async (src) => {
    const entries: [string, Tensor][] = [];
    for (const k of src.keys()) {
      const t = await src.read(k);
      entries.push([k, edit(k, t) ?? t]);
    }
    await writeSafetensors(out, entries, { format: 'pt' });
  });
}

beforeAll(async () => {
  // PARTIAL: a dozen of A's float tensors (UNet and text encoder), changed; B: A with them replaced.
  const replaced = new Map<string, Tensor>();
  await withSource(A, async (src) => {
    const floats = src.keys().filter((k) => src.info(k)?.dtype === 'F32' && k.includes('model'));
    // The input conv and a first ResBlock conv make the file a (partial) checkpoint to detection.
    const detected = [CONV_IN, 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight'];
    const picked = floats.filter((k, i) => detected.includes(k) || i % Math.ceil(floats.length / 12) === 0);
    expect(picked.some((k) => k.startsWith('model.diffusion_model.'))).toBe(true);
    expect(picked.some((k) => k.startsWith('cond_stage_model.'))).toBe(true);
    for (const k of picked) {
      const v = toFloat32(await src.read(k));
      const w = v.map((x, i) => x * 1.1 + 0.01 * Math.sin(i));
      replaced.set(k, float32ArrayToTensor(w, src.info(k)!.shape, 'F32'));
    }
  });
  expect(replaced.size).toBeGreaterThan(0);
  await writeSafetensors(PARTIAL, [...replaced], { format: 'pt' });
  await variantOf(B, (k) => replaced.get(k));
  // An inpainting model: A with 5 more input channels (values derived from A's own weights).
  await variantOf(INPAINT, (k, t) => {
    if (k !== CONV_IN) return undefined;
    const [o, cin, kh, kw] = t.shape as [number, number, number, number];
    const src = toFloat32(t);
    const out = new Float32Array(o * 9 * kh * kw);
    for (let i = 0; i < o; i++) {
      for (let c = 0; c < 9; c++) {
        for (let j = 0; j < kh * kw; j++) {
          out[(i * 9 + c) * kh * kw + j] = src[(i * cin + (c % cin)) * kh * kw + j]! * (c < 4 ? 1 : -0.5);
        }
      }
    }
    return float32ArrayToTensor(out, [o, 9, kh, kw], 'F32');
  });
  // A minimal SDXL-shaped checkpoint.
  const z = (shape: number[]): Tensor => ({
    dtype: 'F32',
    shape,
    data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4),
  });
  await writeSafetensors(XL, [
    ['model.diffusion_model.input_blocks.0.0.weight', z([8, 4, 3, 3])],
    ['model.diffusion_model.input_blocks.1.0.in_layers.2.weight', z([8, 8, 3, 3])],
    ['model.diffusion_model.label_emb.0.0.weight', z([8, 2816])],
    ['conditioner.embedders.1.model.token_embedding.weight', z([10, 16])],
    ['conditioner.embedders.1.model.ln_final.weight', z([16])],
  ]);
});

const f = Math.fround;
const SKIP = 'cond_stage_model.transformer.text_model.embeddings.position_ids';

describe('mergeModels', () => {
  it('weighted sum: A·(1−M) + B·M on every "model" key, float32 per-op rounding; other keys from A', async () => {
    const out = join(dir, 'ws.safetensors');
    const alpha = 0.3;
    const r = await mergeModels({ a: A, b: B }, out, { mode: 'weighted-sum', alpha, cacheDir });
    expect(r.isInpainting).toBe(false);
    await withSource(A, (a) =>
      withSource(B, (b) =>
        withSource(out, async (m) => {
          expect(m.keys()).toEqual(a.keys());
          let changed = 0;
          for (const k of a.keys()) {
            const av = toFloat32(await a.read(k));
            const bv = toFloat32(await b.read(k));
            const mv = toFloat32(await m.read(k));
            expect(m.info(k)!.dtype).toBe(a.info(k)!.dtype);
            const merged = k.includes('model') && k !== SKIP;
            for (let i = 0; i < av.length; i++) {
              const want = merged ? f(f(f(1 - alpha) * av[i]!) + f(f(alpha) * bv[i]!)) : av[i]!;
              if (mv[i] !== want) expect.fail(`${k}[${i}]: ${mv[i]} != ${want}`);
            }
            if (merged && av.some((x, i) => x !== bv[i])) changed++;
          }
          expect(changed).toBeGreaterThan(0);
        }),
      ),
    );
  });

  it('add difference: A + (B − C)·M, dtypes promoted (F32 with F16 -> F32)', async () => {
    const out = join(dir, 'ad.safetensors');
    const alpha = 0.75;
    await mergeModels({ a: A, b: B, c: C }, out, { mode: 'add-difference', alpha, cacheDir });
    await withSource(A, (a) =>
      withSource(B, (b) =>
        withSource(C, (c) =>
          withSource(out, async (m) => {
            for (const k of a.keys()) {
              const merged = k.includes('model') && k !== SKIP;
              const av = toFloat32(await a.read(k));
              const bv = toFloat32(await b.read(k));
              const cv = toFloat32(await c.read(k));
              const mv = toFloat32(await m.read(k));
              for (let i = 0; i < av.length; i++) {
                const want = merged ? f(av[i]! + f(f(alpha) * f(bv[i]! - cv[i]!))) : av[i]!;
                if (mv[i] !== want) expect.fail(`${k}[${i}]: ${mv[i]} != ${want}`);
              }
            }
          }),
        ),
      ),
    );
  });

  it('add difference: a key missing from C is a zero difference (A kept), as A1111 does', async () => {
    // C holds only some tensors: where it has the key, A + (B − C)·M; elsewhere B − C is zeros.
    const partialC = PARTIAL;
    const out = join(dir, 'ad-partial.safetensors');
    const alpha = 0.5;
    await mergeModels({ a: A, b: B, c: partialC }, out, { mode: 'add-difference', alpha, cacheDir });
    let fromC = 0;
    let keptA = 0;
    await withSource(A, (a) =>
      withSource(B, (b) =>
        withSource(partialC, (c) =>
          withSource(out, async (m) => {
            for (const k of a.keys()) {
              const av = toFloat32(await a.read(k));
              const mv = toFloat32(await m.read(k));
              const merged = k.includes('model') && k !== SKIP && c.has(k);
              if (merged) {
                const bv = toFloat32(await b.read(k));
                const cv = toFloat32(await c.read(k));
                for (let i = 0; i < av.length; i++) {
                  const want = f(av[i]! + f(f(alpha) * f(bv[i]! - cv[i]!)));
                  if (mv[i] !== want) expect.fail(`${k}[${i}]: ${mv[i]} != ${want}`);
                }
                fromC++;
              } else {
                expect(Buffer.from(mv.buffer).equals(Buffer.from(av.buffer)), k).toBe(true);
                keptA++;
              }
            }
          }),
        ),
      ),
    );
    expect(fromC).toBeGreaterThan(0);
    expect(keptA).toBeGreaterThan(fromC);
  });

  it("mixed dtypes round where torch rounds: M·B in B's fp16, the sum in float32", async () => {
    const out = join(dir, 'mixed.safetensors');
    const alpha = 0.3;
    await mergeModels({ a: A, b: C }, out, { mode: 'weighted-sum', alpha, cacheDir });
    // Round a whole array to fp16 and back (one conversion per tensor, not per value).
    const h = (xs: Float32Array) => toFloat32(float32ArrayToTensor(xs, [xs.length], 'F16'));
    await withSource(A, (a) =>
      withSource(C, (c) =>
        withSource(out, async (m) => {
          for (const k of a.keys()) {
            if (!k.includes('model') || k === SKIP) continue;
            expect(m.info(k)!.dtype).toBe('F32');
            const av = toFloat32(await a.read(k));
            const cv = toFloat32(await c.read(k));
            const mv = toFloat32(await m.read(k));
            const mb = h(cv.map((x) => f(f(alpha) * x)));
            for (let i = 0; i < av.length; i++) {
              const want = f(f(f(1 - alpha) * av[i]!) + mb[i]!);
              if (mv[i] !== want) expect.fail(`${k}[${i}]: ${mv[i]} != ${want}`);
            }
          }
        }),
      ),
    );
  });

  it('records the recipe as A1111 does (sd_merge_recipe, sd_merge_models with hashes)', async () => {
    const out = join(dir, 'recipe.safetensors');
    // A fresh hash cache: both inputs are hashed, with progress reported up to their full size.
    const hashed = new Map<string, number>();
    const r = await mergeModels({ a: A, b: B }, out, {
      mode: 'weighted-sum',
      alpha: 0.5,
      cacheDir: join(dir, 'fresh-cache'),
      discard: 'model_ema',
      onHashProgress: (file, done, total) => {
        expect(done).toBeLessThanOrEqual(total);
        hashed.set(file, done);
      },
    });
    expect(hashed).toEqual(new Map([A, B].map((p) => [p, statSync(p).size])));
    const recipe = JSON.parse(r.metadata.sd_merge_recipe!) as Record<string, unknown>;
    const models = JSON.parse(r.metadata.sd_merge_models!) as Record<
      string,
      { name: string; legacy_hash: string }
    >;
    const ha = await hashFile(A, { cacheDir });
    const hb = await hashFile(B, { cacheDir });
    expect(r.metadata.format).toBe('pt');
    expect(recipe).toMatchObject({
      type: 'webui',
      primary_model_hash: ha.sha256,
      secondary_model_hash: hb.sha256,
      tertiary_model_hash: null,
      interp_method: 'Weighted sum',
      multiplier: 0.5,
      save_as_half: false,
      discard_weights: 'model_ema',
      is_inpainting: false,
      is_instruct_pix2pix: false,
    });
    expect(models[ha.sha256]).toMatchObject({ name: 'tiny-sd.safetensors', legacy_hash: ha.legacy });
    expect(models[hb.sha256]).toMatchObject({ name: 'b.safetensors', legacy_hash: hb.legacy });
    expect(r.metadata.sd_merge_recipe).toContain('"type": "webui"');
    // The inputs' own metadata is carried over (A1111's "copy metadata fields"), B's over A's.
    const [ma, mb] = await Promise.all([A, B].map((p) => withSource(p, async (s) => s.metadata)));
    expect(Object.keys(ma!).length).toBeGreaterThan(1);
    expect(r.metadata).toMatchObject({ ...ma, ...mb, format: 'pt' });
    await withSource(out, async (m) => expect(m.metadata).toEqual(r.metadata));
  });

  it('inpainting A with a normal B mixes input channels 0..3 and keeps the rest; the reverse is refused', async () => {
    const out = join(dir, 'inpaint-merge.safetensors');
    const alpha = 0.4;
    const r = await mergeModels({ a: INPAINT, b: B }, out, { mode: 'weighted-sum', alpha, cacheDir });
    expect(r.isInpainting).toBe(true);
    await withSource(INPAINT, (a) =>
      withSource(B, (b) =>
        withSource(out, async (m) => {
          expect(detectModel(m).variant).toBe('inpaint');
          const av = toFloat32(await a.read(CONV_IN));
          const bv = toFloat32(await b.read(CONV_IN));
          const mv = toFloat32(await m.read(CONV_IN));
          const [o, , kh, kw] = a.info(CONV_IN)!.shape as [number, number, number, number];
          const k = kh * kw;
          for (let i = 0; i < o; i++) {
            for (let c = 0; c < 9; c++) {
              for (let j = 0; j < k; j++) {
                const ai = av[(i * 9 + c) * k + j]!;
                const want = c < 4 ? f(f(f(1 - alpha) * ai) + f(f(alpha) * bv[(i * 4 + c) * k + j]!)) : ai;
                if (mv[(i * 9 + c) * k + j] !== want) expect.fail(`[${i},${c},${j}]`);
              }
            }
          }
        }),
      ),
    );
    expect(JSON.parse(r.metadata.sd_merge_recipe!).is_inpainting).toBe(true);
    await expect(
      mergeModels({ a: B, b: INPAINT }, join(dir, 'bad.safetensors'), {
        mode: 'weighted-sum',
        alpha,
        cacheDir,
      }),
    ).rejects.toThrow(/A must be the inpainting model/);
  });

  it("an inpainting A keeps its own dtype for the input conv (merged in place, as A1111's a[:, 0:4] = …)", async () => {
    const conv1 = 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight';
    const t = (dtype: 'F16' | 'F32', shape: number[], seed: number) =>
      float32ArrayToTensor(
        Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, (_, i) => Math.sin(i * 0.37 + seed)),
        shape,
        dtype,
      );
    const a16 = join(dir, 'inpaint16.safetensors');
    const b32 = join(dir, 'normal32.safetensors');
    await writeSafetensors(a16, [
      [CONV_IN, t('F16', [8, 9, 3, 3], 1)],
      [conv1, t('F16', [8, 8, 3, 3], 2)],
    ]);
    await writeSafetensors(b32, [
      [CONV_IN, t('F32', [8, 4, 3, 3], 3)],
      [conv1, t('F32', [8, 8, 3, 3], 4)],
    ]);
    const out = join(dir, 'inpaint16-merged.safetensors');
    const alpha = 0.25;
    const r = await mergeModels({ a: a16, b: b32 }, out, { mode: 'weighted-sum', alpha, cacheDir });
    expect(r.isInpainting).toBe(true);
    await withSource(a16, (a) =>
      withSource(b32, (b) =>
        withSource(out, async (m) => {
          expect(m.info(CONV_IN)!.dtype).toBe('F16');
          expect(m.info(conv1)!.dtype).toBe('F32'); // a whole-tensor sum promotes
          const av = await a.readFloat32(CONV_IN);
          const bv = await b.readFloat32(CONV_IN);
          const mv = await m.readFloat32(CONV_IN);
          const h = (x: number) => toFloat32(float32ArrayToTensor(new Float32Array([x]), [1], 'F16'))[0]!;
          for (let i = 0; i < 8; i++) {
            for (let c = 0; c < 9; c++) {
              for (let j = 0; j < 9; j++) {
                const ai = av[(i * 9 + c) * 9 + j]!;
                // (1−M)·A rounds to fp16, M·B stays fp32, the sum is fp32, stored into fp16 A.
                const want =
                  c < 4 ? h(f(h(f(f(1 - alpha) * ai)) + f(f(alpha) * bv[(i * 4 + c) * 9 + j]!))) : ai;
                if (mv[(i * 9 + c) * 9 + j] !== want)
                  expect.fail(`[${i},${c},${j}] ${mv[(i * 9 + c) * 9 + j]} != ${want}`);
              }
            }
          }
        }),
      ),
    );
  });

  it('--fp16, --bake-vae and --discard', async () => {
    const vae = join(dir, 'vae-b.safetensors');
    await extractPart(B, 'vae', vae);
    const out = join(dir, 'fp16-baked.safetensors');
    await mergeModels({ a: A, b: B }, out, {
      mode: 'weighted-sum',
      alpha: 0.5,
      fp16: true,
      bakeVae: vae,
      discard: '^cond_stage_model\\.',
      cacheDir,
    });
    await withSource(A, (a) =>
      withSource(vae, (v) =>
        withSource(out, async (m) => {
          expect(m.keys()).toEqual(a.keys().filter((k) => !k.startsWith('cond_stage_model.')));
          for (const k of m.keys()) {
            const want = k.startsWith('first_stage_model.')
              ? castFloats(await v.read(k.slice('first_stage_model.'.length)), 'F16')
              : k.includes('model')
                ? undefined
                : await a.read(k);
            const got = await m.read(k);
            if (k.includes('model')) expect(got.dtype, k).toBe('F16');
            if (want) expect(Buffer.from(got.data).equals(Buffer.from(want.data)), k).toBe(true);
          }
        }),
      ),
    );
  });

  it('--fp16 halves float32 only, as A1111 to_half does: BF16 inputs stay BF16', async () => {
    const bf16 = join(dir, 'a-bf16.safetensors');
    // A small checkpoint (a dozen tensors) keeps this quick.
    await convertModel(PARTIAL, bf16, {
      dtype: 'bf16',
    });
    const outs = [join(dir, 'bf16-ws.safetensors'), join(dir, 'bf16-noin.safetensors')];
    await mergeModels({ a: bf16, b: bf16 }, outs[0]!, {
      mode: 'weighted-sum',
      alpha: 0.5,
      fp16: true,
      cacheDir,
    });
    await mergeModels({ a: bf16 }, outs[1]!, { mode: 'no-interp', alpha: 0, fp16: true, cacheDir });
    const want = await withSource(bf16, async (s) => detectModel(s).dtypes);
    expect(want.BF16).toBeGreaterThan(0);
    for (const out of outs)
      await withSource(out, async (m) => expect(detectModel(m).dtypes, out).toEqual(want));
  });

  it('no interpolation with --fp16 halves A; keys missing from B are copied from A', async () => {
    const out = join(dir, 'half.safetensors');
    await mergeModels({ a: A }, out, { mode: 'no-interp', alpha: 0, fp16: true, cacheDir });
    await withSource(out, async (m) => {
      expect(detectModel(m).dtypes).toEqual({ F16: 912, I64: 1 });
      expect(JSON.parse(m.metadata.sd_merge_recipe!)).toMatchObject({
        interp_method: 'No interpolation',
        secondary_model_hash: null,
      });
    });
    // B missing keys: merge A with a partial checkpoint (only 12 tensors): the rest stay A's.
    const partial = PARTIAL;
    const out2 = join(dir, 'partial.safetensors');
    await mergeModels({ a: A, b: partial }, out2, { mode: 'weighted-sum', alpha: 1, cacheDir });
    await withSource(A, (a) =>
      withSource(partial, (p) =>
        withSource(out2, async (m) => {
          for (const k of a.keys()) {
            const want = p.has(k) ? await p.read(k) : await a.read(k);
            expect(Buffer.from((await m.read(k)).data).equals(Buffer.from(want.data)), k).toBe(true);
          }
        }),
      ),
    );
  });

  it('refuses SD1 with SDXL, non-checkpoints and bad options with a UserError, leaving no file', async () => {
    const out = join(dir, 'refused.safetensors');
    await expect(
      mergeModels({ a: A, b: XL }, out, { mode: 'weighted-sum', alpha: 0.5, cacheDir }),
    ).rejects.toThrow(/different architectures/);
    await expect(
      mergeModels({ a: A, b: matchedLoraFile() }, out, {
        mode: 'weighted-sum',
        alpha: 0.5,
        cacheDir,
      }),
    ).rejects.toThrow(/lora file, not a checkpoint/);
    await expect(mergeModels({ a: A, b: B }, out, { mode: 'add-difference', alpha: 0.5 })).rejects.toThrow(
      /third model/,
    );
    await expect(mergeModels({ a: A, b: B }, out, { mode: 'weighted-sum', alpha: NaN })).rejects.toThrow(
      UserError,
    );
    await expect(
      mergeModels({ a: A, b: B }, out, { mode: 'weighted-sum', alpha: 0.5, discard: '(' }),
    ).rejects.toThrow(/regular expression/);
    await expect(
      mergeModels({ a: A, b: B }, out, { mode: 'weighted-sum', alpha: 0.5, bakeVae: B, cacheDir }),
    ).rejects.toThrow(/not a VAE/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});
