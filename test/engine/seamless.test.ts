/**
 * Seamless tiling (circular convolutions), sizes the UNet cannot halve evenly (A1111's skip
 * resize) and symlinked checkpoints, on the tiny checkpoint and on single ops checked against
 * plain loops.
 */
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { conv2d, resizeNearestLike } from '../../src/onnx/ops.js';
import { buildUNetGraph } from '../../src/models/unet.js';
import { loadSd1, type Sd1Model, type TensorF32 } from '../../src/runtime/sd1.js';
import { createSession, f32, runSession } from '../../src/runtime/session.js';
import { prepareModel } from '../../src/runtime/weights.js';
import { goldenPath } from '../helpers/golden.js';
import { sharedModels } from '../helpers/shared-models.js';
import { errors, TINY } from './golden.js';

const fp32Path = goldenPath(TINY, 'tiny-sd.safetensors');
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-seamless-test-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));
// The tiny checkpoint loaded once for the file (its plain and tiled sessions are reused).
const models = sharedModels<Sd1Model>();
afterAll(() => models.releaseAll());
const tinyModel = () => models.get('tiny-sd fp32', () => loadSd1(fp32Path, { cacheDir }));

const wave = (n: number, f = 1) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 * f) + 0.1);

function f32Tensor(values: Float32Array, shape: number[]): Tensor {
  return { dtype: 'F32', shape, data: new Uint8Array(values.buffer.slice(0)) };
}

async function runGraph(g: GraphBuilder, feeds: Record<string, TensorF32>, out: string): Promise<TensorF32> {
  const session = await createSession(await prepareModel(g, 'seamless-test', { cacheDir }));
  try {
    const ort = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, f32(v.data, v.dims)]));
    return (await runSession(session, ort, [out]))[out]!;
  } finally {
    await session.release();
  }
}

/** Roll [B, C, H, W] by (dy, dx) with wrap-around. */
function roll(t: TensorF32, dy: number, dx: number): TensorF32 {
  const [b, c, H, W] = t.dims as [number, number, number, number];
  const out = new Float32Array(t.data.length);
  for (let p = 0; p < b * c; p++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        out[p * H * W + ((y + dy) % H) * W + ((x + dx) % W)] = t.data[p * H * W + y * W + x]!;
  return { data: out, dims: t.dims };
}

describe('circular convolution', () => {
  for (const stride of [1, 2]) {
    it(`a 3×3 conv with stride ${stride} matches a plain loop with wrapped indices`, async () => {
      const [ci, co, H, W] = [3, 2, 5, 7];
      const weight = wave(co * ci * 9, 1.7);
      const bias = Float32Array.from([0.25, -0.5]);
      const src = new MemoryTensorSource(
        new Map([
          ['c.weight', f32Tensor(weight, [co, ci, 3, 3])],
          ['c.bias', f32Tensor(bias, [co])],
        ]),
      );
      const g = new GraphBuilder('conv', src, { circularPadding: true });
      const x = g.input('x', 'float32', [1, ci, H, W]);
      g.output(conv2d(g, x, 'c', ci, co, 3, { stride }), 'y');
      const input = { data: wave(ci * H * W), dims: [1, ci, H, W] };
      const y = await runGraph(g, { x: input }, 'y');
      const OH = Math.floor((H - 1) / stride) + 1;
      const OW = Math.floor((W - 1) / stride) + 1;
      expect(y.dims).toEqual([1, co, OH, OW]);
      const mod = (i: number, n: number) => ((i % n) + n) % n;
      const ref = new Float32Array(co * OH * OW);
      for (let o = 0; o < co; o++)
        for (let oy = 0; oy < OH; oy++)
          for (let ox = 0; ox < OW; ox++) {
            let s = bias[o]!;
            for (let i = 0; i < ci; i++)
              for (let ky = 0; ky < 3; ky++)
                for (let kx = 0; kx < 3; kx++) {
                  const iy = mod(oy * stride + ky - 1, H);
                  const ix = mod(ox * stride + kx - 1, W);
                  s += weight[((o * ci + i) * 3 + ky) * 3 + kx]! * input.data[(i * H + iy) * W + ix]!;
                }
            ref[(o * OH + oy) * OW + ox] = s;
          }
      expect(errors(y.data, ref).maxAbs).toBeLessThan(1e-5);
    });
  }
});

describe('seamless UNet and VAE', () => {
  const unetInputs = (m: Sd1Model, x: TensorF32) => ({
    x,
    t: { data: new Float32Array([600]), dims: [1] },
    context: { data: wave(77 * m.config.unet.contextDim, 0.3), dims: [1, 77, m.config.unet.contextDim] },
  });

  it('circular networks commute with wrap-around shifts; the zero-padded ones do not', async () => {
    const m = await tinyModel();
    const tiled = m.withTiling(true);
    {
      // The UNet halves three times: a shift by 8 latent pixels is a whole pixel at every level.
      const x = { data: wave(4 * 16 * 16), dims: [1, 4, 16, 16] };
      const gap = async (net: Sd1Model) => {
        const a = await net.unet(unetInputs(m, roll(x, 8, 8)));
        const b = roll(await net.unet(unetInputs(m, x)), 8, 8);
        return errors(a.data, b.data).maxAbs;
      };
      expect(await gap(tiled)).toBeLessThan(1e-4);
      expect(await gap(m)).toBeGreaterThan(1e-2);

      const z = { data: wave(4 * 6 * 5, 0.8), dims: [1, 4, 6, 5] };
      const vaeGap = async (net: Sd1Model) => {
        const a = await net.vaeDecode(roll(z, 2, 3));
        const b = roll(await net.vaeDecode(z), 16, 24);
        return errors(a.data, b.data).maxAbs;
      };
      expect(await vaeGap(tiled)).toBeLessThan(1e-4);
      expect(await vaeGap(m)).toBeGreaterThan(1e-2);
    }
  });

  it('low-memory tiles of a seamless image wrap around: closer to the circular pass than plain tiles', async () => {
    const m = await tinyModel();
    const tiled = m.withTiling(true);
    {
      const z = { data: wave(4 * 24 * 20, 0.5), dims: [1, 4, 24, 20] };
      const opts = { tile: 16, overlap: 4 };
      const whole = await tiled.vaeDecode(z);
      const tiles = await tiled.vaeDecode(z, opts);
      expect(tiles.dims).toEqual(whole.dims);
      // Tiles differ from a whole pass anyway (GroupNorm per tile); the wrap must not add to that.
      const seamErr = errors(tiles.data, whole.data).relL2;
      const plainErr = errors((await m.vaeDecode(z, opts)).data, (await m.vaeDecode(z)).data).relL2;
      const noWrapErr = errors((await m.vaeDecode(z, opts)).data, whole.data).relL2;
      expect(seamErr).toBeLessThan(2 * plainErr);
      expect(seamErr).toBeLessThan(noWrapErr);

      const image = { data: whole.data.map((v) => Math.max(-1, Math.min(1, v))), dims: whole.dims };
      const enc = (await tiled.vaeEncode(image)).mean;
      const encTiles = (await tiled.vaeEncode(image, undefined, opts)).mean;
      expect(encTiles.dims).toEqual(enc.dims);
      const encNoWrap = (await m.vaeEncode(image, undefined, opts)).mean;
      expect(errors(encTiles.data, enc.data).relL2).toBeLessThan(errors(encNoWrap.data, enc.data).relL2);
    }
  });
});

describe('sizes the UNet cannot halve evenly', () => {
  it('the skip resize is torch nearest interpolation to the skip size', async () => {
    const g = new GraphBuilder('resize', new MemoryTensorSource(new Map()));
    const x = g.input('x', 'float32', [1, 2, 'h', 'w']);
    const like = g.input('like', 'float32', [1, 3, 'H', 'W']);
    g.output(resizeNearestLike(g, x, like), 'y');
    for (const [h, w, H, W] of [
      [4, 6, 3, 5],
      [10, 12, 9, 11],
      [5, 3, 7, 8],
    ] as const) {
      const input = { data: wave(2 * h * w), dims: [1, 2, h, w] };
      const y = await runGraph(
        g,
        { x: input, like: { data: new Float32Array(3 * H * W), dims: [1, 3, H, W] } },
        'y',
      );
      expect(y.dims).toEqual([1, 2, H, W]);
      const ref = new Float32Array(2 * H * W);
      for (let c = 0; c < 2; c++)
        for (let oy = 0; oy < H; oy++)
          for (let ox = 0; ox < W; ox++) {
            const iy = Math.min(Math.floor((oy * h) / H), h - 1);
            const ix = Math.min(Math.floor((ox * w) / W), w - 1);
            ref[(c * H + oy) * W + ox] = input.data[(c * h + iy) * w + ix]!;
          }
      expect(errors(y.data, ref).maxAbs).toBe(0);
    }
  });

  it('a 9×11 latent runs; the resizing graph equals the plain one where sizes halve evenly', async () => {
    const m = await tinyModel();
    {
      const odd = await m.unet(unetInputs9x11(m));
      expect(odd.dims).toEqual([1, 4, 9, 11]);
      expect(odd.data.every(Number.isFinite)).toBe(true);

      const x = { data: wave(4 * 8 * 8), dims: [1, 4, 8, 8] };
      const inp = unetInputs9x11(m, x);
      const plain = await m.unet(inp);
      const g = buildUNetGraph(m.source, m.config.unet, {
        prefix: m.config.prefixes.unet,
        matchSkipSizes: true,
      });
      const resized = await runGraph(g, { x: inp.x, timesteps: inp.t, context: inp.context }, 'eps');
      // Not bit-equal: at level 'all' the Resize nodes change how convolutions are blocked.
      expect(errors(resized.data, plain.data).maxAbs).toBeLessThan(1e-5);
    }
  });
});

function unetInputs9x11(m: Sd1Model, x?: TensorF32) {
  const d = m.config.unet.contextDim;
  return {
    x: x ?? { data: wave(4 * 9 * 11), dims: [1, 4, 9, 11] },
    t: { data: new Float32Array([300]), dims: [1] },
    context: { data: wave(77 * d, 0.2), dims: [1, 77, d] },
  };
}

describe('symlinked checkpoints', () => {
  it('run in place through a link in another folder, like the file itself', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-link-'));
    const link = join(dir, 'linked.safetensors');
    symlinkSync(fp32Path, link);
    const direct = await tinyModel();
    const linked = await loadSd1(link, { cacheDir: join(dir, 'cache') });
    try {
      const inp = unetInputs9x11(direct, { data: wave(4 * 8 * 8), dims: [1, 4, 8, 8] });
      const a = await direct.unet(inp);
      const b = await linked.unet(inp);
      expect(errors(b.data, a.data).maxAbs).toBe(0);
      const prepared = await prepareModel(
        buildUNetGraph(linked.source, linked.config.unet, { prefix: linked.config.prefixes.unet }),
        'seamless-test',
        { cacheDir: join(dir, 'cache') },
      );
      expect(prepared.placement).toBe('in-place');
    } finally {
      await linked.release();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
