/**
 * TAESD previews: the ONNX decoder against a plain TypeScript reading of the upstream network
 * (madebyollin/taesd `Decoder`) on random weights saved under the upstream key names, and the
 * generation loop using it when the file is in the data folder and falling back when it is not.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertTensor } from '../../src/formats/dtype.js';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { buildTaesdDecoderGraph, taesdDecoderLayout } from '../../src/models/taesd.js';
import { generate } from '../../src/pipeline/generate.js';
import type { LoadedModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import {
  findTaesdDecoder,
  loadPreviewDecoder,
  previewModeOf,
  TaesdDecoder,
} from '../../src/pipeline/taesd.js';
import { UserError } from '../../src/util/errors.js';
import { buildZip, stateDictPickle } from '../formats/craft.js';
import { clipVocabPath, goldenPath, repoRoot } from '../helpers/golden.js';
import { loadTinyModel } from '../helpers/tiny-model.js';

// ---- the upstream decoder, written out independently of src/models/taesd.ts ----

/**
 * taesd.py `Decoder()` is nn.Sequential(Clamp, conv(4,64), ReLU, Block×3, Upsample, conv(no bias),
 * Block×3, Upsample, conv, Block×3, Upsample, conv, Block, conv(64,3)); list it by index.
 */
type Layer =
  | { kind: 'clamp' }
  | { kind: 'relu' }
  | { kind: 'up' }
  | { kind: 'conv'; index: number; cin: number; cout: number; bias: boolean }
  | { kind: 'block'; index: number };

function upstreamDecoder(latentChannels: number): Layer[] {
  const seq: Layer[] = [];
  const conv = (cin: number, cout: number, bias = true) =>
    seq.push({ kind: 'conv', index: seq.length, cin, cout, bias });
  const block = () => seq.push({ kind: 'block', index: seq.length });
  seq.push({ kind: 'clamp' });
  conv(latentChannels, 64);
  seq.push({ kind: 'relu' });
  for (let stage = 0; stage < 3; stage++) {
    block();
    block();
    block();
    seq.push({ kind: 'up' });
    conv(64, 64, false);
  }
  block();
  conv(64, 3);
  return seq;
}

/** Every state-dict entry of the decoder: name → shape. */
function upstreamKeys(latentChannels: number): Map<string, number[]> {
  const keys = new Map<string, number[]>();
  for (const l of upstreamDecoder(latentChannels)) {
    if (l.kind === 'conv') {
      keys.set(`${l.index}.weight`, [l.cout, l.cin, 3, 3]);
      if (l.bias) keys.set(`${l.index}.bias`, [l.cout]);
    } else if (l.kind === 'block') {
      for (const j of [0, 2, 4]) {
        keys.set(`${l.index}.conv.${j}.weight`, [64, 64, 3, 3]);
        keys.set(`${l.index}.conv.${j}.bias`, [64]);
      }
    }
  }
  return keys;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}

/** Random weights, scaled by fan-in so activations stay near unit size through 20 layers. */
function randomDecoder(latentChannels: number, seed: number): Map<string, Float32Array> {
  const normal = rng(seed);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of upstreamKeys(latentChannels)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const std = shape.length === 4 ? 1.0 / Math.sqrt(shape[1]! * 9) : 0.05;
    out.set(
      name,
      Float32Array.from({ length: n }, () => normal() * std),
    );
  }
  return out;
}

function toTensors(w: Map<string, Float32Array>, prefix = ''): Map<string, Tensor> {
  const shapes = upstreamKeys(w.get('1.weight')!.length / (64 * 9));
  return new Map(
    [...w].map(([k, v]) => [
      prefix + k,
      { dtype: 'F32', shape: shapes.get(k)!, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) },
    ]),
  );
}

interface Img {
  c: number;
  h: number;
  w: number;
  d: Float64Array;
}

function conv3x3(x: Img, weight: Float32Array, bias: Float32Array | undefined, cout: number): Img {
  const { c, h, w } = x;
  const d = new Float64Array(cout * h * w);
  for (let o = 0; o < cout; o++) {
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        let acc = bias ? bias[o]! : 0;
        for (let i = 0; i < c; i++) {
          for (let ky = 0; ky < 3; ky++) {
            const sy = y + ky - 1;
            if (sy < 0 || sy >= h) continue;
            for (let kx = 0; kx < 3; kx++) {
              const sx = xx + kx - 1;
              if (sx < 0 || sx >= w) continue;
              acc += weight[((o * c + i) * 3 + ky) * 3 + kx]! * x.d[(i * h + sy) * w + sx]!;
            }
          }
        }
        d[(o * h + y) * w + xx] = acc;
      }
    }
  }
  return { c: cout, h, w, d };
}

const relu = (x: Img): Img => ({ ...x, d: x.d.map((v) => Math.max(0, v)) });

function upsample2x(x: Img): Img {
  const h = x.h * 2;
  const w = x.w * 2;
  const d = new Float64Array(x.c * h * w);
  for (let c = 0; c < x.c; c++)
    for (let y = 0; y < h; y++)
      for (let xx = 0; xx < w; xx++) d[(c * h + y) * w + xx] = x.d[(c * x.h + (y >> 1)) * x.w + (xx >> 1)]!;
  return { c: x.c, h, w, d };
}

/** The upstream forward pass for one latent [C, h, w], in float64. */
function referenceDecode(wts: Map<string, Float32Array>, latent: Img): Img {
  let x = latent;
  for (const l of upstreamDecoder(latent.c)) {
    if (l.kind === 'clamp') x = { ...x, d: x.d.map((v) => Math.tanh(v / 3) * 3) };
    else if (l.kind === 'relu') x = relu(x);
    else if (l.kind === 'up') x = upsample2x(x);
    else if (l.kind === 'conv')
      x = conv3x3(x, wts.get(`${l.index}.weight`)!, wts.get(`${l.index}.bias`), l.cout);
    else {
      const p = `${l.index}.conv`;
      let h = relu(conv3x3(x, wts.get(`${p}.0.weight`)!, wts.get(`${p}.0.bias`), 64));
      h = relu(conv3x3(h, wts.get(`${p}.2.weight`)!, wts.get(`${p}.2.bias`), 64));
      h = conv3x3(h, wts.get(`${p}.4.weight`)!, wts.get(`${p}.4.bias`), 64);
      x = { ...h, d: h.d.map((v, i) => Math.max(0, v + x.d[i]!)) }; // identity skip, fuse ReLU
    }
  }
  return x;
}

// ---- tests ----

const work = mkdtempSync(join(tmpdir(), 'sdstudio-taesd-'));
const cacheDir = join(work, 'cache');
const weights = randomDecoder(4, 1234);
const decoderFile = join(work, 'taesd_decoder.safetensors');

beforeAll(async () => {
  await writeSafetensors(decoderFile, toTensors(weights));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('TAESD decoder graph', () => {
  it('reads exactly the upstream state dict', async () => {
    const src = await openSafetensors(decoderFile);
    try {
      expect(taesdDecoderLayout(src)).toEqual({ prefix: '', latentChannels: 4 });
      const g = buildTaesdDecoderGraph(src);
      const read = [...g.params.values()].map((p) => p.key).sort();
      expect(read).toEqual([...upstreamKeys(4).keys()].sort());
    } finally {
      await src.close();
    }
  });

  it('matches a plain reading of the upstream network at 1e-4', async () => {
    const dec = await TaesdDecoder.load(decoderFile, { cacheDir });
    try {
      const [b, c, h, w] = [2, 4, 2, 3];
      const normal = rng(99);
      // Latents at SD scale, with outliers the Clamp has to tame.
      const latent = Float32Array.from(
        { length: b * c * h * w },
        (_, i) => normal() * (i % 17 === 0 ? 6 : 1),
      );
      const images = await dec.decode(latent, [b, c, h, w]);
      expect(images.map((im) => [im.width, im.height])).toEqual([
        [8 * w, 8 * h],
        [8 * w, 8 * h],
      ]);
      // The network's output, compared before the 8-bit conversion.
      const raw = await dec.decodeTensor(latent, [b, c, h, w]);
      const out = raw.data;
      expect(raw.dims).toEqual([b, 3, 8 * h, 8 * w]);
      const per = 3 * 64 * h * w;
      for (let i = 0; i < b; i++) {
        const ref = referenceDecode(weights, {
          c,
          h,
          w,
          d: Float64Array.from(latent.subarray(i * c * h * w, (i + 1) * c * h * w)),
        });
        let spread = 0;
        let maxRef = 0;
        for (const v of ref.d) maxRef = Math.max(maxRef, Math.abs(v));
        for (let k = 0; k < per; k++) {
          const got = out[i * per + k]!;
          expect(Number.isFinite(got)).toBe(true);
          spread = Math.max(spread, Math.abs(got - ref.d[k]!));
        }
        expect(maxRef).toBeGreaterThan(0.5); // the random network does not collapse to zero
        expect(spread).toBeLessThanOrEqual(1e-4 * Math.max(1, maxRef));
        // 8-bit image: 255·clamp(x, 0, 1) truncated
        const img = images[i]!;
        const n = 64 * h * w;
        for (let k = 0; k < n; k += 37) {
          for (let ch = 0; ch < 3; ch++) {
            const v = Math.min(1, Math.max(0, ref.d[ch * n + k]!));
            expect(Math.abs(img.data[k * 3 + ch]! - 255 * v)).toBeLessThanOrEqual(1.01);
          }
        }
      }
    } finally {
      await dec.release();
    }
  });

  it('loads the upstream .pth and fp16 .safetensors files to the same network', async () => {
    const shapes = upstreamKeys(4);
    const names = [...shapes.keys()];
    // .pth as torch saves it: a zip with data.pkl and one storage per tensor
    const pth = join(work, 'taesd_decoder.pth');
    writeFileSync(
      pth,
      buildZip([
        {
          name: 'archive/data.pkl',
          data: stateDictPickle(names.map((name) => ({ name, shape: shapes.get(name)! }))),
        },
        ...names.map((name, i) => {
          const v = weights.get(name)!;
          return { name: `archive/data/${i}`, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
        }),
        { name: 'archive/version', data: new TextEncoder().encode('3\n') },
      ]),
    );
    // fp16 weights, and the same values widened to fp32 (the conversion is exact)
    const half = new Map([...toTensors(weights)].map(([k, t]) => [k, convertTensor(t, 'F16')]));
    const widened = new Map([...half].map(([k, t]) => [k, convertTensor(t, 'F32')]));
    const f16File = join(work, 'f16', 'taesd_decoder.safetensors');
    const widenedFile = join(work, 'widened', 'taesd_decoder.safetensors');
    mkdirSync(join(work, 'f16'));
    mkdirSync(join(work, 'widened'));
    await writeSafetensors(f16File, half);
    await writeSafetensors(widenedFile, widened);

    const dims = [1, 4, 2, 2];
    const normal = rng(7);
    const latent = Float32Array.from({ length: 16 }, () => normal());
    const outputOf = async (path: string) => {
      const dec = await TaesdDecoder.load(path, { cacheDir });
      try {
        return (await dec.decodeTensor(latent, dims)).data;
      } finally {
        await dec.release();
      }
    };
    const maxDiff = (a: Float32Array, b: Float32Array) =>
      a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
    const [fp32, fromPth, fp16, fp16Widened] = [
      await outputOf(decoderFile),
      await outputOf(pth),
      await outputOf(f16File),
      await outputOf(widenedFile),
    ];
    expect(maxDiff(fromPth, fp32)).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(fp16, fp16Widened)).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(fp16, fp32)).toBeGreaterThan(0); // the fp16 file really holds other values
  });

  it('takes a whole-TAESD state dict (decoder.* keys) and refuses other files with a hint', async () => {
    const whole = new MemoryTensorSource(toTensors(weights, 'decoder.'), { path: 'taesd.pth' });
    expect(taesdDecoderLayout(whole)).toEqual({ prefix: 'decoder.', latentChannels: 4 });
    const g = buildTaesdDecoderGraph(whole);
    expect(g.params.size).toBe(upstreamKeys(4).size);
    const other = new MemoryTensorSource(
      new Map([['decoder.layers.0.weight', { dtype: 'F32', shape: [1], data: new Uint8Array(4) } as Tensor]]),
      { path: 'diffusion_pytorch_model.safetensors' },
    );
    expect(() => taesdDecoderLayout(other)).toThrow(UserError);
    expect(() => taesdDecoderLayout(other)).toThrow(/AutoencoderTiny/);
    const wrongShape = new Map(toTensors(weights));
    wrongShape.set('19.bias', { dtype: 'F32', shape: [4], data: new Uint8Array(16) });
    expect(() => buildTaesdDecoderGraph(new MemoryTensorSource(wrongShape))).toThrow(/19\.bias/);
  });

  it('maps A1111 show_progress_type values', () => {
    expect(previewModeOf('Full')).toBe('full');
    expect(previewModeOf('TAESD')).toBe('taesd');
    expect(previewModeOf('Approx cheap')).toBe('cheap');
    expect(previewModeOf('Approx NN')).toBe('cheap');
    expect(() => previewModeOf('sharp')).toThrow(UserError);
  });
});

describe('TAESD live previews in the generation loop', () => {
  let model: LoadedModel;
  const withFile = join(work, 'data-with');
  const without = join(work, 'data-without');
  beforeAll(async () => {
    mkdirSync(join(withFile, 'models', 'VAE-taesd'), { recursive: true });
    mkdirSync(without, { recursive: true });
    await writeSafetensors(
      join(withFile, 'models', 'VAE-taesd', 'taesd_decoder.safetensors'),
      toTensors(weights),
    );
    model = await loadTinyModel();
  });
  afterAll(async () => {
    await model?.release();
  });

  const params = withDefaults({ width: 64, height: 64, steps: 3, cfg_scale: 5, prompt: 'x', seed: 5 });

  async function run(taesd: Awaited<ReturnType<typeof loadPreviewDecoder>>) {
    const previews: { w: number; h: number; step: number }[] = [];
    const r = await generate(
      model,
      params,
      'txt2img',
      {},
      {
        previewEvery: 1,
        previewMode: 'taesd',
        taesd,
        onPreview: (p) => previews.push({ w: p.image.width, h: p.image.height, step: p.step }),
      },
    );
    return { previews, image: r.images[0]!.image };
  }

  it('decodes previews with TAESD when the file is in models/VAE-taesd', async () => {
    expect(findTaesdDecoder(withFile)).toMatch(/taesd_decoder\.safetensors$/);
    const warnings: string[] = [];
    const dec = await loadPreviewDecoder('taesd', withFile, { cacheDir, warn: (m) => warnings.push(m) });
    expect(dec).not.toBeNull();
    expect(warnings).toEqual([]);
    try {
      const { previews, image } = await run(dec);
      // full pixel size, decoded before the next UNet call: every step but the last
      expect(previews).toEqual([
        { w: 64, h: 64, step: 1 },
        { w: 64, h: 64, step: 2 },
      ]);
      // previews never change the result
      const plain = await generate(model, params, 'txt2img');
      expect(Buffer.from(image.data).equals(Buffer.from(plain.images[0]!.image.data))).toBe(true);
    } finally {
      await dec?.release();
    }
  });

  it('falls back to the cheap preview, with a warning, when the file is absent', async () => {
    expect(findTaesdDecoder(without)).toBeNull();
    const warnings: string[] = [];
    const dec = await loadPreviewDecoder('taesd', without, { cacheDir, warn: (m) => warnings.push(m) });
    expect(dec).toBeNull();
    expect(warnings.join('\n')).toMatch(/taesd_decoder\.safetensors/);
    const { previews } = await run(dec);
    expect(previews).toEqual([1, 2, 3].map((step) => ({ w: 8, h: 8, step })));
  });

  it('other modes load nothing', async () => {
    expect(await loadPreviewDecoder('cheap', withFile)).toBeNull();
  });
});

describe('sdstudio txt2img --live-preview', () => {
  const bin = join(repoRoot, 'bin', 'sdstudio.js');
  const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');

  function cli(args: string[], cwd: string): Promise<{ code: number; stderr: string }> {
    return new Promise((done) => {
      execFile(
        process.execPath,
        [
          bin,
          'txt2img',
          'a cube',
          '--steps',
          '2',
          '--width',
          '64',
          '--height',
          '64',
          '--model',
          tiny,
          ...args,
        ],
        { cwd, env: { ...process.env, SDSTUDIO_CLIP_VOCAB: clipVocabPath(), SDSTUDIO_CACHE: work } },
        (err, _stdout, stderr) =>
          done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
      );
    });
  }
  async function size(path: string): Promise<[number, number]> {
    const m = await sharp(path).metadata();
    return [m.width!, m.height!];
  }

  it('writes TAESD previews of the batch as one grid when the decoder is there, cheap ones otherwise', async () => {
    const dirWith = join(work, 'cli-with');
    mkdirSync(join(dirWith, 'models', 'VAE-taesd'), { recursive: true });
    await writeSafetensors(
      join(dirWith, 'models', 'VAE-taesd', 'taesd_decoder.safetensors'),
      toTensors(weights),
    );
    const dirWithout = join(work, 'cli-without');
    mkdirSync(dirWithout, { recursive: true });
    const [withTaesd, plain, asked] = await Promise.all([
      cli(['--batch-size', '2', '--live-preview', 'p.png'], dirWith),
      cli(['--batch-size', '2', '--live-preview', 'p.png'], dirWithout),
      cli(['--live-preview', 'p.png', '--preview-type', 'TAESD'], join(work, 'data-without')),
    ]);
    expect(withTaesd).toEqual({ code: 0, stderr: '' });
    expect(await size(join(dirWith, 'p.png'))).toEqual([128, 64]);
    expect(plain).toEqual({ code: 0, stderr: '' });
    expect(await size(join(dirWithout, 'p.png'))).toEqual([16, 8]);
    // asked for TAESD explicitly: says it is missing, and still previews
    expect(asked.code).toBe(0);
    expect(asked.stderr).toMatch(/warning: TAESD previews need taesd_decoder\.safetensors/);
    expect(await size(join(work, 'data-without', 'p.png'))).toEqual([8, 8]);
  });

  it('refuses preview flags without a file, and unknown preview types, before loading anything', async () => {
    const a = await cli(['--preview-every', '2'], work);
    expect(a.code).not.toBe(0);
    expect(a.stderr).toMatch(/--preview-every needs --live-preview/);
    const b = await cli(['--live-preview', 'p.png', '--preview-type', 'sharp'], work);
    expect(b.code).not.toBe(0);
    expect(b.stderr).toMatch(/unknown preview type "sharp"/);
  });
});
