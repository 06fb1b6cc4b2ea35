/**
 * Hypernetworks in the whole UNet of the tiny checkpoint (runtime/sd1.ts `unet({hypernetworks})`):
 * they reach self-attention (widths of the hidden state) and cross-attention (the context width)
 * separately, a width they lack leaves the UNet as it is, a zero multiplier (a graph input) gives
 * the plain UNet, and the int8 and float16 UNets and token merging run them too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadHypernetwork, type Hypernetwork } from '../../src/adapters/hypernetwork.js';
import type { UnetHypernetworks } from '../../src/models/hypernetwork-graph.js';
import { loadSd1, type Sd1Model, type TensorF32 } from '../../src/runtime/sd1.js';
import { goldenPath } from '../helpers/golden.js';
import { psnr } from '../helpers/psnr.js';
import { adapterPath, casesOf } from './helpers.js';

const ckpt = goldenPath('tiny-sd', 'tiny-sd.safetensors');
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-hn-unet-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const wave = (n: number, f: number, phase = 0) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + phase));

function maxDiff(a: TensorF32, b: TensorF32): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

/** The network restricted to some widths, as a one-network stack. */
function stackOf(hn: Hypernetwork, widths: (w: number) => boolean, multiplier: number, key: string) {
  const layers = new Map([...hn.layers].filter(([w]) => widths(w)));
  return { key, stack: [{ layers, multiplier }] } satisfies UnetHypernetworks;
}

describe('hypernetworks in the UNet (tiny checkpoint)', () => {
  // The hypernetwork with the most widths (the context's and a hidden state's).
  const c = casesOf('hypernetwork')
    .filter((x) => x.file)
    .sort(
      (a, b) =>
        (b.loaded_fields as { sizes: number[] }).sizes.length -
        (a.loaded_fields as { sizes: number[] }).sizes.length,
    )[0]!;

  const run = async (m: Sd1Model, hypernetworks?: UnetHypernetworks, tokenMergeRatio = 0) => {
    const cd = m.config.unet.contextDim;
    const x = wave(4 * 16 * 16, 1);
    return m.unet({
      x: {
        data: Float32Array.from({ length: 2 * x.length }, (_, i) => x[i % x.length]!),
        dims: [2, 4, 16, 16],
      },
      t: { data: new Float32Array([700, 700]), dims: [2] },
      context: { data: wave(2 * 77 * cd, 0.7), dims: [2, 77, cd] },
      tokenMergeRatio,
      ...(hypernetworks ? { hypernetworks } : {}),
    });
  };

  it('reaches self- and cross-attention by width; other widths and multiplier 0 leave it alone', async () => {
    const hn = await loadHypernetwork(adapterPath(c.file as string));
    const m = await loadSd1(ckpt, { cacheDir, threads: 2 });
    try {
      const cd = m.config.unet.contextDim;
      const widths = [...hn.layers.keys()];
      expect(widths).toContain(cd);
      expect(widths.some((w) => w !== cd)).toBe(true);
      const plain = await run(m);
      const all = await run(
        m,
        stackOf(hn, () => true, 1, 'all'),
      );
      const self = await run(
        m,
        stackOf(hn, (w) => w !== cd, 1, 'self'),
      );
      const cross = await run(
        m,
        stackOf(hn, (w) => w === cd, 1, 'cross'),
      );
      for (const [what, out] of [
        ['all', all],
        ['self-attention only', self],
        ['cross-attention only', cross],
      ] as const) {
        expect(out.data.every(Number.isFinite), what).toBe(true);
        expect(maxDiff(out, plain), what).toBeGreaterThan(1e-3);
      }
      expect(maxDiff(self, cross)).toBeGreaterThan(1e-3);
      // Multiplier 0 through the same graph: x + mlp(x)·0.
      expect(
        maxDiff(
          await run(
            m,
            stackOf(hn, () => true, 0, 'all'),
          ),
          plain,
        ),
      ).toBeLessThan(1e-5);
      // A width no attention layer has: nothing changes.
      const none = new Map([[cd + 16, hn.layers.get(cd)!]]);
      const odd = await run(m, { key: 'odd', stack: [{ layers: none, multiplier: 1 }] });
      expect(maxDiff(odd, plain)).toBeLessThan(1e-5);
      // Two networks stack in order: the same one twice at 0.5 is not the one at 1.
      const twice = await run(m, {
        key: 'twice',
        stack: [
          { layers: hn.layers, multiplier: 0.5 },
          { layers: hn.layers, multiplier: 0.5 },
        ],
      });
      expect(maxDiff(twice, all)).toBeGreaterThan(1e-4);
      expect(maxDiff(twice, plain)).toBeGreaterThan(1e-3);
      // With token merging the self-attention hypernetwork sees the merged tokens.
      const merged = await run(
        m,
        stackOf(hn, () => true, 1, 'all'),
        0.5,
      );
      expect(merged.data.every(Number.isFinite)).toBe(true);
      expect(psnr(merged.data, all.data)).toBeGreaterThan(20);

      // The int8 UNet and the float16 one (GPU providers' graph, here on CPU kernels) run them too.
      for (const unetPrecision of ['int8', 'fp16'] as const) {
        const other = await loadSd1(ckpt, { cacheDir, threads: 2, unetPrecision });
        try {
          const q = await run(
            other,
            stackOf(hn, () => true, 1, 'all'),
          );
          expect(psnr(q.data, all.data), unetPrecision).toBeGreaterThan(30);
          expect(maxDiff(q, await run(other)), unetPrecision).toBeGreaterThan(1e-3);
        } finally {
          await other.release();
        }
      }
    } finally {
      await m.release();
    }
  }, 420_000);
});
