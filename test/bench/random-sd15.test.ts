import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ldmCheckpointLayout,
  SCHEDULE_BUFFERS,
  SD15_ARCH,
  TINY_SD_ARCH,
  type LdmArch,
} from '../../bench/ldm-layout.js';
import { NormalRng, writeRandomCheckpoint } from '../../bench/random-sd15.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { goldenPath } from '../helpers/golden.js';

const tmp = mkdtempSync(join(tmpdir(), 'sdstudio-bench-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('ldm checkpoint layout', () => {
  it('is exactly the tiny-sd golden checkpoint tree (names, dtypes, shapes) for its config', async () => {
    const src = await openSafetensors(goldenPath('tiny-sd', 'tiny-sd.safetensors'));
    try {
      const ours = new Map(ldmCheckpointLayout(TINY_SD_ARCH).map((s) => [s.name, s]));
      const theirs = src.keys();
      expect([...ours.keys()].sort()).toEqual(theirs);
      for (const name of theirs) {
        const info = src.info(name)!;
        expect({ name, dtype: ours.get(name)!.dtype, shape: ours.get(name)!.shape }).toEqual({
          name,
          dtype: info.dtype,
          shape: info.shape,
        });
      }
    } finally {
      await src.close();
    }
  });

  it('gives SD 1.5 its published parameter counts', () => {
    const count = (prefix: string) =>
      ldmCheckpointLayout(SD15_ARCH)
        .filter((s) => s.name.startsWith(prefix) && s.dtype === 'F32')
        .reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    // UNet 859.52M, VAE 83.65M, CLIP ViT-L/14 text 123.06M (diffusers / ldm model summaries).
    expect(count('model.diffusion_model.')).toBe(859_520_964);
    expect(count('first_stage_model.')).toBe(83_653_863);
    expect(count('cond_stage_model.')).toBe(123_060_480);
  });
});

describe('random checkpoint', () => {
  // A small architecture (same tree) so the test writes a few MB, not 4 GB.
  const small: LdmArch = {
    ...TINY_SD_ARCH,
    clip: { ...TINY_SD_ARCH.clip, vocab: 1000 },
  };

  it('writes a readable file whose schedule buffers equal the golden checkpoint', async () => {
    const path = join(tmp, 'small.safetensors');
    await writeRandomCheckpoint(path, small, { seed: 3 });
    const ours = await openSafetensors(path);
    const golden = await openSafetensors(goldenPath('tiny-sd', 'tiny-sd.safetensors'));
    try {
      for (const name of SCHEDULE_BUFFERS) {
        const a = await ours.readFloat32(name);
        const b = await golden.readFloat32(name);
        expect(a.length).toBe(b.length);
        // Both are float64 math rounded to float32: allow a couple of float32 ulps.
        const off = [...a.keys()].filter((i) => !(Math.abs(a[i]! - b[i]!) <= 2.5e-7 * Math.abs(b[i]!)));
        expect({ name, off }).toEqual({ name, off: [] });
      }
      const ids = new BigInt64Array(
        (await ours.read('cond_stage_model.transformer.text_model.embeddings.position_ids')).data.buffer,
      );
      expect([...ids].map(Number)).toEqual([...Array(77).keys()]);
    } finally {
      await ours.close();
      await golden.close();
    }
  });

  it('initialises conv/linear weights with std 1/sqrt(fan_in) and norm weights around 1', async () => {
    const path = join(tmp, 'stats.safetensors');
    await writeRandomCheckpoint(path, small, { seed: 5 });
    const src = await openSafetensors(path);
    try {
      const stats = async (name: string) => {
        const v = await src.readFloat32(name);
        let s = 0;
        let s2 = 0;
        let nonFinite = 0;
        for (const x of v) {
          if (!Number.isFinite(x)) nonFinite++;
          s += x;
          s2 += x * x;
        }
        expect(nonFinite).toBe(0);
        const mean = s / v.length;
        return { mean, std: Math.sqrt(s2 / v.length - mean * mean) };
      };
      // [64, 96, 3, 3]: fan_in 864, 55296 values.
      const w = await stats('model.diffusion_model.output_blocks.2.0.in_layers.2.weight');
      expect(Math.abs(w.mean)).toBeLessThan(0.002);
      expect(w.std).toBeCloseTo(1 / Math.sqrt(864), 3);
      const n = await stats('first_stage_model.decoder.mid.block_1.norm1.weight');
      expect(Math.abs(n.mean - 1)).toBeLessThan(0.05);
      // Residual output layers are half-scale.
      const r = await stats('model.diffusion_model.output_blocks.2.0.out_layers.3.weight');
      expect(r.std).toBeCloseTo(0.5 / Math.sqrt(64 * 9), 3);
    } finally {
      await src.close();
    }
  });

  it('is deterministic per seed and differs across seeds', async () => {
    const a = join(tmp, 'a.safetensors');
    const b = join(tmp, 'b.safetensors');
    await writeRandomCheckpoint(a, small, { seed: 7 });
    await writeRandomCheckpoint(b, small, { seed: 8 });
    const name = 'model.diffusion_model.input_blocks.0.0.weight';
    const [sa, sb] = [await openSafetensors(a), await openSafetensors(b)];
    try {
      const x = await sa.readFloat32(name);
      const again = new Float32Array(x.length);
      expect(x).not.toEqual(await sb.readFloat32(name));
      await writeRandomCheckpoint(b, small, { seed: 7 });
      const sc = await openSafetensors(b);
      again.set(await sc.readFloat32(name));
      await sc.close();
      expect(again).toEqual(x);
    } finally {
      await sa.close();
      await sb.close();
    }
  });

  it('draws standard normals (mean 0, variance 1, symmetric tails)', () => {
    const v = new Float32Array(200_001);
    new NormalRng(42).fillNormal(v, 0, 1);
    let s = 0;
    let s2 = 0;
    let beyond2 = 0;
    for (const x of v) {
      s += x;
      s2 += x * x;
      if (Math.abs(x) > 2) beyond2++;
    }
    expect(Math.abs(s / v.length)).toBeLessThan(0.01);
    expect(Math.abs(s2 / v.length - 1)).toBeLessThan(0.02);
    expect(beyond2 / v.length).toBeCloseTo(0.0455, 2);
  });
});
