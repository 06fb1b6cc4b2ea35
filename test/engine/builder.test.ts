/**
 * The graph builder, weights placement and sessions: errors that name tensors, what onnxruntime
 * is handed, the weights cache's write-once/evict rules, providers and tiling.
 */
import { existsSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor, TensorSource } from '../../src/formats/tensor.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { decodeModel } from '../../src/onnx/proto.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { sd1WeightShapes } from '../../src/models/random-weights.js';
import { buildUNetGraph } from '../../src/models/unet.js';
import { buildVaeDecoderGraph } from '../../src/models/vae.js';
import { buildClipTextEncoderGraph } from '../../src/models/clip-text.js';
import { availableProviders, checkProvider, createSession } from '../../src/runtime/session.js';
import { loadSd1, type Sd1Model } from '../../src/runtime/sd1.js';
import { decodeTiled, tileStarts } from '../../src/runtime/tiling.js';
import { prepareModel, WeightsCache } from '../../src/runtime/weights.js';
import { UserError } from '../../src/util/errors.js';
import { goldenPath } from '../helpers/golden.js';
import { sharedModels } from '../helpers/shared-models.js';
import { errors, TINY } from './golden.js';

const fp32Path = goldenPath(TINY, 'tiny-sd.safetensors');
const fp16Path = goldenPath(TINY, 'tiny-sd-fp16.safetensors');
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-builder-test-'));
// The tiny checkpoint with default options, loaded once for the tests that only run it.
const models = sharedModels<Sd1Model>();
const tinyModel = () => models.get('tiny-sd fp32', () => loadSd1(fp32Path, { cacheDir }));
let fp32: TensorSource;
let tensors: Map<string, Tensor>;

beforeAll(async () => {
  fp32 = await openSafetensors(fp32Path);
  tensors = new Map();
  for (const k of fp32.keys()) tensors.set(k, await fp32.read(k));
});

afterAll(async () => {
  await models.releaseAll();
  await fp32.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

/** The tiny checkpoint in memory with one tensor removed or replaced. */
function altered(key: string, replacement?: Tensor): MemoryTensorSource {
  const m = new Map(tensors);
  if (replacement) m.set(key, replacement);
  else m.delete(key);
  return new MemoryTensorSource(m, { path: 'altered.safetensors' });
}

function pickKey(prefix: string, suffix: string): string {
  const k = [...tensors.keys()].find((n) => n.startsWith(prefix) && n.endsWith(suffix));
  if (!k) throw new Error(`tiny checkpoint has no ${prefix}…${suffix}`);
  return k;
}

describe('building from a damaged checkpoint', () => {
  const builders: [string, string, string, (s: TensorSource) => unknown][] = [
    [
      'UNet',
      'model.diffusion_model.',
      'attn2.to_k.weight',
      (s) => buildUNetGraph(s, sd1ConfigFromTensors(fp32).unet),
    ],
    [
      'VAE decoder',
      'first_stage_model.decoder.',
      'conv2.weight',
      (s) => buildVaeDecoderGraph(s, sd1ConfigFromTensors(fp32).vae),
    ],
    [
      'CLIP',
      'cond_stage_model.',
      'mlp.fc1.weight',
      (s) => buildClipTextEncoderGraph(s, sd1ConfigFromTensors(fp32).text),
    ],
  ];
  for (const [what, prefix, suffix, build] of builders) {
    it(`${what}: a missing tensor is named`, () => {
      const key = pickKey(prefix, suffix);
      expect(() => build(altered(key))).toThrow(UserError);
      expect(() => build(altered(key))).toThrow(`"${key}" is missing`);
    });
    it(`${what}: a wrongly shaped tensor is named with both shapes`, () => {
      const key = pickKey(prefix, suffix);
      const t = tensors.get(key)!;
      const wrong: Tensor = {
        dtype: 'F32',
        shape: [t.shape[0]! + 1, ...t.shape.slice(1)],
        data: new Uint8Array(t.data.byteLength + t.data.byteLength / t.shape[0]!),
      };
      expect(() => build(altered(key, wrong))).toThrow(`"${key}" has shape [${wrong.shape.join(',')}]`);
    });
  }
  it('loadSd1 reports a missing tensor by name', async () => {
    const key = pickKey('model.diffusion_model.', 'middle_block.1.proj_out.weight');
    const m = await loadSd1(altered(key), { cacheDir });
    await expect(m.open(['unet'])).rejects.toThrow(`"${key}" is missing`);
    await m.release();
  });
});

describe('ONNX model bytes', () => {
  it('fp32 safetensors params point into the checkpoint file in place', async () => {
    const g = buildVaeDecoderGraph(fp32, sd1ConfigFromTensors(fp32).vae);
    const pm = await prepareModel(g, 'test', { cacheDir });
    expect(pm.placement).toBe('in-place');
    expect(pm.externalFolder).toBe(realpathSync(goldenPath(TINY))); // ../shared may be a symlink
    const model = decodeModel(pm.bytes);
    const ext = model.graph.initializer.filter((t) => t.dataLocation === 1);
    expect(ext.length).toBe(g.params.size);
    for (const t of ext) {
      const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
      expect(kv.location).toBe('tiny-sd.safetensors');
      const key = [...g.params.values()].find((p) => p.name === t.name)!.key;
      const loc = fp32.location(key)!;
      expect(Number(kv.offset)).toBe(loc.offset);
      expect(Number(kv.length)).toBe(loc.length);
    }
    expect(model.opsetImport.some((o) => (o.domain ?? '') === '' && o.version >= 17)).toBe(true);
  });

  it('graph outputs can be renamed and duplicated names are refused', () => {
    const g = new GraphBuilder('t', fp32);
    const x = g.input('x', 'float32', ['n']);
    const y = g.op1('Relu', [x]);
    g.output(y, 'y');
    expect(() => g.output(y, 'y')).toThrow(/duplicate/);
  });
});

describe('weights cache', () => {
  it('converts an fp16 checkpoint once, reuses it, and never leaves a temporary entry', async () => {
    const dir = join(cacheDir, 'once');
    const src = await openSafetensors(fp16Path);
    try {
      const cfg = sd1ConfigFromTensors(src);
      const first = await prepareModel(buildVaeDecoderGraph(src, cfg.vae), 'test', { cacheDir: dir });
      expect(first.placement).toBe('cache');
      const again = await prepareModel(buildVaeDecoderGraph(src, cfg.vae), 'test', { cacheDir: dir });
      expect(again.placement).toBe('cache-hit');
      expect(again.cacheEntry).toBe(first.cacheEntry);
      expect(readdirSync(dir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
      // The converted weights run and equal the fp16 values upcast.
      const s = await createSession(again);
      await s.release();
    } finally {
      await src.close();
    }
  });

  it('recognises the same file bytes behind a wrapping source, and never reuses in-memory tensors', async () => {
    const dir = join(cacheDir, 'identity');
    const src = await openSafetensors(fp16Path);
    try {
      const cfg = sd1ConfigFromTensors(src);
      const wrapped = new PatchedSource(src, new Map());
      const a = await prepareModel(buildVaeDecoderGraph(wrapped, cfg.vae), 'id', { cacheDir: dir });
      const b = await prepareModel(buildVaeDecoderGraph(wrapped, cfg.vae), 'id', { cacheDir: dir });
      expect([a.placement, b.placement, a.ephemeral]).toEqual(['cache', 'cache-hit', false]);
      const key = src.keys().find((k) => k.endsWith('decoder.conv_in.weight'))!;
      const t = await src.read(key);
      const patched = new PatchedSource(
        src,
        new Map([
          [
            key,
            {
              dtype: 'F32',
              shape: t.shape,
              data: new Uint8Array(new Float32Array(t.shape.reduce((x, y) => x * y, 1)).buffer),
            },
          ],
        ]),
      );
      const c = await prepareModel(buildVaeDecoderGraph(patched, cfg.vae), 'id', { cacheDir: dir });
      expect(c.placement).toBe('cache');
      expect(c.ephemeral).toBe(true);
      expect(c.cacheEntry).not.toBe(a.cacheEntry);
    } finally {
      await src.close();
    }
  });

  it('evicts least recently used entries beyond the size limit, keeping the newest', async () => {
    const dir = join(cacheDir, 'evict');
    const src = await openSafetensors(fp16Path);
    try {
      const cfg = sd1ConfigFromTensors(src);
      const a = await prepareModel(buildVaeDecoderGraph(src, cfg.vae), 'a', { cacheDir: dir, limitBytes: 1 });
      const b = await prepareModel(buildVaeDecoderGraph(src, cfg.vae), 'b', { cacheDir: dir, limitBytes: 1 });
      expect(existsSync(b.cacheEntry!)).toBe(true);
      expect(existsSync(a.cacheEntry!)).toBe(false);
      const cache = new WeightsCache({ cacheDir: dir, limitBytes: 1 });
      await cache.evict(b.cacheEntry!);
      expect(existsSync(b.cacheEntry!)).toBe(true);
    } finally {
      await src.close();
    }
  });
});

/** A LoRA-like source: the fp32 checkpoint with some tensors replaced in memory. */
class PatchedSource implements TensorSource {
  readonly format = 'memory' as const;
  readonly path = 'patched';
  readonly metadata = {};
  constructor(
    private readonly base: TensorSource,
    private readonly patches: Map<string, Tensor>,
  ) {}
  keys() {
    return this.base.keys();
  }
  has(n: string) {
    return this.base.has(n);
  }
  info(n: string) {
    return this.base.info(n);
  }
  async read(n: string) {
    return this.patches.get(n) ?? this.base.read(n);
  }
  async readFloat32(n: string) {
    const p = this.patches.get(n);
    return p ? new Float32Array(p.data.slice().buffer) : this.base.readFloat32(n);
  }
  location(n: string) {
    return this.patches.has(n) ? undefined : this.base.location(n);
  }
  async close() {}
}

describe('patched weights', () => {
  it('stay in place with a small inline overlay and compute like a fully converted copy', async () => {
    const patches = new Map<string, Tensor>();
    for (const k of fp32.keys().filter((n) => n.includes('attn2.to_k.weight'))) {
      const v = new Float32Array(tensors.get(k)!.data.slice().buffer).map((x) => x * 1.5);
      patches.set(k, { dtype: 'F32', shape: tensors.get(k)!.shape, data: new Uint8Array(v.buffer) });
    }
    expect(patches.size).toBeGreaterThan(0);
    const patched = new PatchedSource(fp32, patches);
    const cfg = sd1ConfigFromTensors(fp32);
    const pm = await prepareModel(buildUNetGraph(patched, cfg.unet), 'test', { cacheDir });
    expect(pm.placement).toBe('in-place+overlay');
    const inline = decodeModel(pm.bytes).graph.initializer.filter((t) => t.rawData && t.rawData.length > 0);
    expect(inline.filter((t) => patches.has(t.name)).length).toBe(patches.size);

    const x = { data: Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.sin(i)), dims: [1, 4, 8, 8] };
    const t = { data: new Float32Array([300]), dims: [1] };
    const n = 77 * cfg.unet.contextDim;
    const context = {
      data: Float32Array.from({ length: n }, (_, i) => Math.cos(i)),
      dims: [1, 77, cfg.unet.contextDim],
    };
    const run = async (src: TensorSource) => {
      const m = await loadSd1(src, { cacheDir });
      const eps = await m.unet({ x, t, context });
      await m.release();
      return eps;
    };
    const overlaid = await run(patched);
    const copied = await run(new MemoryTensorSource(new Map([...tensors, ...patches])));
    const base = await run(fp32);
    expect(errors(overlaid.data, copied.data).maxAbs).toBe(0);
    expect(errors(overlaid.data, base.data).maxAbs).toBeGreaterThan(1e-4);
  });
});

describe('in-memory sources', () => {
  it('run from an ephemeral cache entry that is removed on release', async () => {
    const dir = join(cacheDir, 'ephemeral');
    const m = await loadSd1(new MemoryTensorSource(new Map(tensors), { path: 'merged in memory' }), {
      cacheDir: dir,
    });
    const z = { data: Float32Array.from({ length: 4 * 4 * 4 }, (_, i) => Math.sin(i)), dims: [1, 4, 4, 4] };
    const fromMemory = await m.vaeDecode(z);
    expect(readdirSync(dir).length).toBe(1);
    await m.release();
    expect(readdirSync(dir)).toEqual([]);
    const f = await loadSd1(fp32Path, { cacheDir: dir });
    const fromFile = await f.vaeDecode(z);
    await f.release();
    expect(errors(fromMemory.data, fromFile.data).maxAbs).toBe(0);
  });
});

describe('sessions', () => {
  it('cpu is available and unknown or missing providers are UserErrors that say what to do', () => {
    expect(availableProviders()).toContain('cpu');
    expect(() => checkProvider('tpu')).toThrow(UserError);
    for (const p of ['cuda', 'dml', 'coreml', 'webgpu'] as const) {
      if (!availableProviders().includes(p)) expect(() => checkProvider(p)).toThrow(/--provider cpu/);
    }
  });

  it('contrib ops (FusedMatMul, MultiHeadAttention) and standard ONNX ops agree on UNet and VAE', async () => {
    const cfg = sd1ConfigFromTensors(fp32);
    const x = {
      data: Float32Array.from({ length: 2 * 4 * 8 * 8 }, (_, i) => Math.sin(i)),
      dims: [2, 4, 8, 8],
    };
    const t = { data: new Float32Array([10, 900]), dims: [2] };
    const n = 2 * 77 * cfg.unet.contextDim;
    const context = {
      data: Float32Array.from({ length: n }, (_, i) => Math.cos(i)),
      dims: [2, 77, cfg.unet.contextDim],
    };
    const variants = [
      { contribOps: true, attention: 'mha' as const },
      { contribOps: true, attention: 'plain' as const },
      { contribOps: false, attention: 'mha' as const },
    ];
    const outs = [];
    for (const v of variants) {
      const m = await loadSd1(fp32Path, { cacheDir, ...v });
      outs.push({ eps: await m.unet({ x, t, context }), image: await m.vaeDecode(x) });
      await m.release();
    }
    for (const o of outs.slice(1)) {
      expect(errors(o.eps.data, outs[0]!.eps.data).relL2).toBeLessThan(1e-5);
      expect(errors(o.image.data, outs[0]!.image.data).relL2).toBeLessThan(1e-5);
    }
  });

  it('ControlNet residual and separate key/value inputs change the output only when used', async () => {
    const m = await tinyModel();
    {
      const cfg = m.config.unet;
      const x = { data: Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.sin(i)), dims: [1, 4, 8, 8] };
      const t = { data: new Float32Array([500]), dims: [1] };
      const context = {
        data: Float32Array.from({ length: 77 * cfg.contextDim }, (_, i) => Math.cos(i)),
        dims: [1, 77, cfg.contextDim],
      };
      const base = await m.unet({ x, t, context });
      // Zero residuals and k = v = context reproduce the plain UNet.
      const names = (await import('../../src/models/unet.js')).unetBlockNames(cfg);
      const nSkips = names.filter((n) => n.includes('.input_blocks.')).length;
      const skipDims: number[][] = [];
      let ch = cfg.modelChannels;
      let hw = 8;
      skipDims.push([1, ch, hw, hw]);
      cfg.channelMult.forEach((mult, level) => {
        for (let r = 0; r < cfg.numResBlocks; r++) {
          ch = mult * cfg.modelChannels;
          skipDims.push([1, ch, hw, hw]);
        }
        if (level < cfg.channelMult.length - 1) {
          hw /= 2;
          skipDims.push([1, ch, hw, hw]);
        }
      });
      expect(skipDims.length).toBe(nSkips);
      const zeros = (d: number[]) => ({ data: new Float32Array(d.reduce((a, b) => a * b, 1)), dims: d });
      const control = { skips: skipDims.map(zeros), middle: zeros([1, ch, hw, hw]) };
      const same = await m.unet({ x, t, context, control, contextK: context, contextV: context });
      expect(errors(same.data, base.data).maxAbs).toBeLessThan(1e-5);
      const bumped = {
        ...control,
        middle: { data: control.middle.data.map(() => 0.5), dims: control.middle.dims },
      };
      const other = await m.unet({ x, t, context, control: bumped });
      expect(errors(other.data, base.data).maxAbs).toBeGreaterThan(1e-3);
    }
  });
});

describe('bad inputs', () => {
  it('wrong dims or data lengths are UserErrors naming the input', async () => {
    const m = await tinyModel();
    {
      const ctxDim = m.config.unet.contextDim;
      const t = { data: new Float32Array([1]), dims: [1] };
      const context = { data: new Float32Array(77 * ctxDim), dims: [1, 77, ctxDim] };
      const x = (dims: number[]) => ({ data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims });
      await expect(m.unet({ x: x([1, 3, 8, 8]), t, context })).rejects.toThrow(
        /UNet x: expected dims \[\*, 4/,
      );
      await expect(m.unet({ x: x([2, 4, 8, 8]), t, context })).rejects.toThrow(/UNet timesteps/);
      await expect(
        m.unet({ x: { data: new Float32Array(3), dims: [1, 4, 8, 8] }, t, context }),
      ).rejects.toThrow(/need 256 values/);
      await expect(m.vaeDecode(x([1, 3, 8, 8]))).rejects.toThrow(UserError);
      await expect(m.vaeEncode(x([1, 3, 12, 16]))).rejects.toThrow(/multiple of 8/);
      await expect(m.tokenEmbeddings(new Int32Array(77).fill(99999), 1)).rejects.toThrow(
        /outside the vocabulary/,
      );
      await expect(m.encodeIds(new Int32Array(76), 1)).rejects.toThrow(/expected 1×77/);
      await expect(m.encodeIds(new Int32Array(77), 1, 0)).rejects.toThrow(/clip skip/);
      const z = { data: new Float32Array(4 * 4 * 4), dims: [1, 4, 4, 4] };
      await expect(m.vaeDecodeOutputs(z, ['first_stage_model.decoder.conv_in'])).rejects.toThrow(
        /debug: true/,
      );
    }
  });
});

describe('tiled VAE', () => {
  it('tiles cover the image with the requested overlap', () => {
    for (const [size, tile, overlap] of [
      [64, 64, 16],
      [100, 64, 16],
      [200, 48, 8],
      [17, 8, 3],
    ] as const) {
      const s = tileStarts(size, tile, overlap);
      expect(s[0]).toBe(0);
      expect(s[s.length - 1]! + Math.min(tile, size)).toBe(size);
      for (let i = 1; i < s.length; i++) expect(s[i - 1]! + tile - s[i]!).toBeGreaterThanOrEqual(overlap);
    }
  });

  it('blending tiles of a position-independent decoder reproduces the whole image', async () => {
    // A stand-in decoder that is exactly local (8× nearest upsampling of channel sums), so tiled == whole.
    const up = async (z: { data: Float32Array; dims: number[] }) => {
      const [b, c, h, w] = z.dims as [number, number, number, number];
      const out = new Float32Array(b * 3 * h * 8 * w * 8);
      for (let n = 0; n < b; n++)
        for (let k = 0; k < 3; k++)
          for (let y = 0; y < h * 8; y++)
            for (let x = 0; x < w * 8; x++) {
              let s = 0;
              for (let ci = 0; ci < c; ci++)
                s += z.data[((n * c + ci) * h + (y >> 3)) * w + (x >> 3)]! * (k + 1);
              out[((n * 3 + k) * h * 8 + y) * w * 8 + x] = s;
            }
      return { data: out, dims: [b, 3, h * 8, w * 8] };
    };
    const z = {
      data: Float32Array.from({ length: 2 * 4 * 20 * 28 }, (_, i) => Math.sin(i * 0.37)),
      dims: [2, 4, 20, 28],
    };
    const whole = await up(z);
    const tiled = await decodeTiled(z, up, { tile: 12, overlap: 4 });
    expect(tiled.dims).toEqual(whole.dims);
    expect(errors(tiled.data, whole.data).maxAbs).toBeLessThan(1e-5);
  });

  it('the real decoder tiled stays close to the whole decode and one tile is exact', async () => {
    const m = await tinyModel();
    {
      const z = {
        data: Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => Math.sin(i * 0.1)),
        dims: [1, 4, 16, 16],
      };
      const whole = await m.vaeDecode(z);
      const one = await m.vaeDecode(z, { tile: 16, overlap: 4 });
      expect(errors(one.data, whole.data).maxAbs).toBe(0);
      const tiled = await m.vaeDecode(z, { tile: 12, overlap: 4 });
      expect(tiled.dims).toEqual(whole.dims);
      expect(tiled.data.every(Number.isFinite)).toBe(true);
      const enc = await m.vaeEncode(whole, undefined, { tile: 8, overlap: 2 });
      expect(enc.mean.dims).toEqual([1, 4, 16, 16]);
    }
  });
});

describe('random full-architecture weights', () => {
  it('lists exactly the tensors the networks read, with their shapes', () => {
    const cfg = sd1ConfigFromTensors(fp32);
    const shapes = sd1WeightShapes(cfg);
    for (const [k, shape] of shapes) expect(fp32.info(k)?.shape, k).toEqual(shape);
    // Everything in the checkpoint but schedule buffers and position_ids is used.
    const unused = fp32.keys().filter((k) => !shapes.has(k) && k.includes('.'));
    expect(unused).toEqual(['cond_stage_model.transformer.text_model.embeddings.position_ids']);
  });
});
