/**
 * Token merging (A1111 "Token merging ratio"): the partition of the latent grid, the merge/unmerge
 * graph against a direct transcription of the tomesd algorithm, and the UNet with it on the tiny
 * checkpoint.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import { planTokenMerge, tokenMergeGraphInputs, tokenMergeInputs } from '../../src/models/token-merging.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { loadSd1, type Sd1Model, type TensorF32 } from '../../src/runtime/sd1.js';
import { goldenPath } from '../helpers/golden.js';
import { psnr } from '../helpers/psnr.js';
import { sharedModels } from '../helpers/shared-models.js';
import { TINY } from './golden.js';

const ckpt = goldenPath(TINY, 'tiny-sd.safetensors');
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-tome-test-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const wave = (n: number, f: number, phase = 0) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + phase));

describe('token merging partition', () => {
  it('puts one destination at the top-left of every whole 2×2 cell, the rest are sources', () => {
    const m = tokenMergeInputs(4, 4, 0.5);
    expect([...m.dst].map(Number)).toEqual([0, 2, 8, 10]);
    expect([...m.src].map(Number)).toEqual([1, 3, 4, 5, 6, 7, 9, 11, 12, 13, 14, 15]);
    expect(Number(m.r[0])).toBe(8);
  });

  it('leaves a last odd row and column to sources, and caps r at the source count', () => {
    const m = tokenMergeInputs(3, 5, 0.75);
    expect([...m.dst].map(Number)).toEqual([0, 2]);
    expect(m.src.length).toBe(13);
    expect(Number(m.r[0])).toBe(Math.floor(15 * 0.75));
    expect(Number(tokenMergeInputs(4, 4, 0.9).r[0])).toBe(12); // 14 wanted, 12 sources
    expect(Number(tokenMergeInputs(8, 8, 0.01).r[0])).toBe(0);
  });

  it('refuses a ratio outside 0 … 0.9', () => {
    expect(() => tokenMergeInputs(4, 4, 0.95)).toThrow(/0\.9/);
    expect(() => tokenMergeInputs(4, 4, -0.1)).toThrow(/ratio/);
    expect(() => tokenMergeInputs(4, 4, Number.NaN)).toThrow(/ratio/);
  });
});

/**
 * tomesd's bipartite soft matching written out directly (no randomness): cosine similarity of
 * every source to every destination, the r sources with the highest best similarity merged into
 * their best destination by mean (the destination itself included). Returns, per token, the value
 * its slot ends with after merge → unmerge, and the merged token count.
 */
function referenceMergeUnmerge(
  metric: Float32Array,
  values: Float32Array,
  B: number,
  N: number,
  C: number,
  src: number[],
  dst: number[],
  r: number,
): { out: Float32Array; kept: number } {
  const out = new Float32Array(B * N * C);
  const unit = (b: number, t: number) => {
    const v = metric.subarray((b * N + t) * C, (b * N + t + 1) * C);
    const norm = Math.hypot(...v);
    return Array.from(v, (x) => x / norm);
  };
  for (let b = 0; b < B; b++) {
    const dUnits = dst.map((d) => unit(b, d));
    const best = src.map((s) => {
      const u = unit(b, s);
      let bi = 0;
      let bv = -Infinity;
      dUnits.forEach((du, j) => {
        const sim = du.reduce((a, x, k) => a + x * u[k]!, 0);
        if (sim > bv) [bv, bi] = [sim, j];
      });
      return { s, sim: bv, d: bi };
    });
    const order = [...best].sort((p, q) => q.sim - p.sim);
    const group = new Map<number, number[]>(dst.map((d, j) => [j, [d]]));
    const singles: number[] = [];
    order.forEach((e, k) => (k < r ? group.get(e.d)!.push(e.s) : singles.push(e.s)));
    const row = (t: number) => values.subarray((b * N + t) * C, (b * N + t + 1) * C);
    for (const t of singles) out.set(row(t), (b * N + t) * C);
    for (const members of group.values()) {
      const mean = new Float32Array(C);
      for (const t of members) row(t).forEach((x, c) => (mean[c] += x / members.length));
      for (const t of members) out.set(mean, (b * N + t) * C);
    }
  }
  return { out, kept: N - r };
}

describe('token merging graph', () => {
  it('merges and unmerges as tomesd does', async () => {
    await checkAgainstReference(2, 4, 6, 5, [0.25, 0.5, 0.75]);
  });

  it('gives the same when the similarities are taken in chunks of sources, the last taking the rest', async () => {
    await checkAgainstReference(2, 4, 6, 5, [0.25, 0.5, 0.75], 4); // 18 sources: 5 chunks
    await checkAgainstReference(1, 10, 10, 5, [0.5], 2); // 75 sources: 31 chunks of 2, the last 13
  });
});

async function checkAgainstReference(
  B: number,
  H: number,
  W: number,
  C: number,
  ratios: number[],
  similarityChunk?: number,
) {
  const N = H * W;
  const g = new GraphBuilder('tome', new MemoryTensorSource(new Map()));
  const metric = g.input('metric', 'float32', [B, N, C]);
  const values = g.input('values', 'float32', [B, N, C]);
  const plan = planTokenMerge(g, metric, tokenMergeGraphInputs(g), 'tome', similarityChunk);
  const merged = plan.merge(values);
  g.output(merged, 'merged', 'float32', [B, 'm', C]);
  g.output(plan.unmerge(merged), 'restored', 'float32', [B, N, C]);
  const session = await ort.InferenceSession.create(
    encodeModel(
      g.toModel(() => {
        throw new Error('no params');
      }),
    ),
  );
  // Clustered metric so similarities differ clearly (no ties).
  const metricData = Float32Array.from(
    { length: B * N * C },
    (_, i) => 1 + Math.sin(i * 1.37) + ((i * 7) % 11) / 5,
  );
  const valueData = wave(B * N * C, 0.61, 0.3);
  for (const ratio of ratios) {
    const m = tokenMergeInputs(H, W, ratio);
    const r = Number(m.r[0]);
    const outs = await session.run({
      metric: new ort.Tensor('float32', metricData, [B, N, C]),
      values: new ort.Tensor('float32', valueData, [B, N, C]),
      tome_src: new ort.Tensor('int64', m.src, [m.src.length]),
      tome_dst: new ort.Tensor('int64', m.dst, [m.dst.length]),
      tome_r: new ort.Tensor('int64', m.r, [1]),
    });
    const ref = referenceMergeUnmerge(
      metricData,
      valueData,
      B,
      N,
      C,
      [...m.src].map(Number),
      [...m.dst].map(Number),
      r,
    );
    expect(outs.merged!.dims).toEqual([B, ref.kept, C]);
    const got = outs.restored!.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref.out[i]!));
    expect(worst).toBeLessThan(1e-5);
  }
  await session.release();
}

describe('UNet with token merging (tiny checkpoint)', () => {
  // One loaded model per precision / op set for the whole file (its sessions are reused).
  const models = sharedModels<Sd1Model>();
  afterAll(() => models.releaseAll());
  const run = async (
    ratio: number,
    precision: 'fp32' | 'int8' = 'fp32',
    h = 16,
    w = 16,
    contribOps?: boolean,
  ): Promise<TensorF32> => {
    const m = await models.get([precision, contribOps ?? null], () =>
      loadSd1(ckpt, { cacheDir, threads: 2, unetPrecision: precision, contribOps }),
    );
    const cd = m.config.unet.contextDim;
    const x = wave(4 * h * w, 1);
    return await m.unet({
      // One CFG step: both rows the same latent and timestep, their own contexts.
      x: {
        data: Float32Array.from({ length: 2 * x.length }, (_, i) => x[i % x.length]!),
        dims: [2, 4, h, w],
      },
      t: { data: new Float32Array([700, 700]), dims: [2] },
      context: { data: wave(2 * 77 * cd, 0.7), dims: [2, 77, cd] },
      tokenMergeRatio: ratio,
    });
  };

  it('with nothing to merge (r = 0) equals the plain UNet', async () => {
    const plain = await run(0);
    const none = await run(0.001); // the token-merging graph, 256 tokens · 0.001 → r = 0
    for (let i = 0; i < plain.data.length; i++)
      expect(Math.abs(none.data[i]! - plain.data[i]!)).toBeLessThan(1e-4);
  });

  it('changes the output a little at ratio 0.5, in fp32 and int8, on an odd-sized latent too', async () => {
    for (const [h, w] of [
      [16, 16],
      [9, 12],
    ] as const) {
      const plain = await run(0, 'fp32', h, w);
      const merged = await run(0.5, 'fp32', h, w);
      expect(merged.dims).toEqual(plain.dims);
      expect(merged.data.every(Number.isFinite)).toBe(true);
      const p = psnr(merged.data, plain.data);
      expect(p).toBeLessThan(80); // it did merge
      expect(p).toBeGreaterThan(30);
      expect(psnr((await run(0.5, 'int8', h, w)).data, plain.data)).toBeGreaterThan(30);
    }
  });

  it('runs on standard ONNX ops only (the graph other providers get) with the same result', async () => {
    const contrib = await run(0.5, 'fp32', 16, 16, true);
    const standard = await run(0.5, 'fp32', 16, 16, false);
    let worst = 0;
    for (let i = 0; i < contrib.data.length; i++)
      worst = Math.max(worst, Math.abs(standard.data[i]! - contrib.data[i]!));
    expect(worst).toBeLessThan(1e-4);
  });

  it('leaves a latent one token high alone (no 2×2 cell to merge into)', async () => {
    const plain = await run(0, 'fp32', 1, 16);
    const merged = await run(0.5, 'fp32', 1, 16);
    expect(merged.data).toEqual(plain.data);
  });

  it('refuses a ratio outside 0 … 0.9 with a clear error', async () => {
    await expect(run(0.95)).rejects.toThrow(/token merging ratio must be within 0 … 0.9/);
  });
});
