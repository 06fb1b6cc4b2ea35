// The shared overlay TensorSource (formats/overlay.ts) through the views built on it: renamed keys,
// LoRA-patched weights and int8 weights over a real safetensors file. What every consumer relies on:
// stored tensors keep their file location (weights placement maps them in place), computed ones have
// none but name the stored tensor they come from, and a missing name is an error naming it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PatchedTensorSource } from '../../src/adapters/patched-source.js';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { RenamedSource } from '../../src/formats/key-renames.js';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { Int8WeightSource, Q8_SUFFIX } from '../../src/runtime/quantize.js';

let dir: string;
let file: string;
const W = Float32Array.from({ length: 12 }, (_, i) => (i - 5) / 4);
const B = Float32Array.from([1, 2, 3]);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sdstudio-overlay-'));
  file = join(dir, 'base.safetensors');
  await writeSafetensors(file, [
    ['layer.weight', float32ArrayToTensor(W, [3, 4])],
    ['layer.bias', float32ArrayToTensor(B, [3])],
  ]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withBase<T>(f: (base: TensorSource) => Promise<T>): Promise<T> {
  const base = await openSafetensors(file);
  try {
    return await f(base);
  } finally {
    await base.close();
  }
}

describe('overlay TensorSource', () => {
  it('renamed keys: stored tensors keep their location; unknown names are missing', async () => {
    await withBase(async (base) => {
      const s = new RenamedSource(base, new Map([['new.weight', 'layer.weight']]));
      expect(s.keys()).toEqual(['new.weight']);
      expect(s.has('new.weight')).toBe(true);
      expect(s.has('layer.weight')).toBe(false);
      expect(s.info('new.weight')).toEqual({ name: 'new.weight', dtype: 'F32', shape: [3, 4] });
      expect(s.location('new.weight')).toEqual(base.location('layer.weight'));
      expect(await s.readFloat32('new.weight')).toEqual(W);
      await expect(s.read('layer.bias')).rejects.toThrow(/"layer\.bias" is not in/);
    });
  });

  it('patched weights: computed tensors have no location; the rest reads through', async () => {
    await withBase(async (base) => {
      const patched = Float32Array.from(W, (v) => v + 1);
      const s = new PatchedTensorSource(base, new Map([['layer.weight', { shape: [3, 4], data: patched }]]));
      expect(s.patchedKeys()).toEqual(['layer.weight']);
      expect(s.keys()).toEqual(base.keys());
      expect(s.location('layer.weight')).toBeUndefined();
      expect(s.derivedFrom('layer.weight')).toBeUndefined();
      expect(s.location('layer.bias')).toEqual(base.location('layer.bias'));
      expect(await s.readFloat32('layer.weight')).toEqual(patched);
      expect((await s.read('layer.weight')).data.byteLength).toBe(48);
      expect(await s.readFloat32('layer.bias')).toEqual(B);
      expect(() => new PatchedTensorSource(base, new Map([['nope', { shape: [1], data: B }]]))).toThrow(
        /nope is not in/,
      );
    });
  });

  it('int8 weights over patched weights: quantized from the patch, never claimed as the file', async () => {
    await withBase(async (base) => {
      const plain = new Int8WeightSource(base);
      const key = `layer.weight${Q8_SUFFIX}`;
      expect(plain.info(key)).toEqual({ name: key, dtype: 'I8', shape: [4, 3] });
      expect(plain.location(key)).toBeUndefined();
      expect(plain.derivedFrom(key)).toEqual(base.location('layer.weight'));
      expect(plain.has('layer.bias#q8')).toBe(false);
      await expect(plain.read('missing#q8')).rejects.toThrow(/"missing#q8" is not in/);

      const patched = Float32Array.from(W, (v) => v * 2);
      const over = new PatchedTensorSource(
        base,
        new Map([['layer.weight', { shape: [3, 4], data: patched }]]),
      );
      const q = new Int8WeightSource(over);
      expect(q.derivedFrom(key)).toBeUndefined();
      // Doubling every weight doubles the per-channel scales and leaves the int8 values as they were.
      const [s0, s1] = [
        await plain.readFloat32(`layer.weight#q8scale`),
        await q.readFloat32(`layer.weight#q8scale`),
      ];
      s1.forEach((v, i) => expect(v).toBeCloseTo(2 * s0[i]!, 6));
      expect((await q.read(key)).data).toEqual((await plain.read(key)).data);
    });
  });
});
