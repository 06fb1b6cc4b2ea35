/**
 * Plain attention in query chunks (the fallback for providers without contrib ops) computes what
 * the whole score matrix computes; and the per-part session options pick the VAE's settings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { DEFAULT_ATTENTION_CHUNK, GraphBuilder } from '../../src/onnx/builder.js';
import { attention } from '../../src/onnx/ops.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { buildUNetGraph } from '../../src/models/unet.js';
import { createSession, f32 } from '../../src/runtime/session.js';
import { loadSd1, PART_SESSION_DEFAULTS } from '../../src/runtime/sd1.js';
import { prepareModel } from '../../src/runtime/weights.js';
import { goldenPath } from '../helpers/golden.js';
import { errors, TINY } from './golden.js';

const fp32Path = goldenPath(TINY, 'tiny-sd.safetensors');
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-chunks-test-'));
let fp32: TensorSource;

beforeAll(async () => {
  fp32 = await openSafetensors(fp32Path);
});

afterAll(async () => {
  await fp32.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));
const countOps = (g: GraphBuilder, op: string) => g.nodes.filter((n) => n.opType === op).length;

/** One attention graph (q, k, v inputs, no weights) with the given chunk size, run once. */
async function runAttention(chunk: number, tokens: number, heads: number, headDim: number) {
  const g = new GraphBuilder('attention', fp32, { contribOps: false, attentionChunk: chunk });
  const [q, k, v] = ['q', 'k', 'v'].map((n) => g.input(n, 'float32', ['b', 's', heads * headDim]));
  g.output(attention(g, q!, k!, v!, heads, headDim, 'plain', 'attn'), 'out');
  const session = await createSession(await prepareModel(g, 'test-attention', { cacheDir }), { threads: 2 });
  try {
    const dims = [1, tokens, heads * headDim];
    const n = tokens * heads * headDim;
    const res = await session.run({
      q: f32(wave(n, 0.37), dims),
      k: f32(wave(n, 0.11), dims),
      v: f32(wave(n, 0.53), dims),
    });
    return { data: res.out!.data as Float32Array, matMuls: countOps(g, 'MatMul') };
  } finally {
    await session.release();
  }
}

describe('chunked plain attention', () => {
  it(`over more than ${DEFAULT_ATTENTION_CHUNK} tokens equals the whole score matrix within 1e-5`, async () => {
    const tokens = 2 * DEFAULT_ATTENTION_CHUNK + 77; // two full chunks and a partial one
    const whole = await runAttention(0, tokens, 2, 8);
    const chunked = await runAttention(DEFAULT_ATTENTION_CHUNK, tokens, 2, 8);
    expect(chunked.matMuls).toBeGreaterThan(whole.matMuls);
    const e = errors(chunked.data, whole.data);
    expect(e.maxAbs).toBeLessThan(1e-5);
    expect(Number.isFinite(e.relL2)).toBe(true);
  });

  // Slots past the last query repeat it (GPU providers refuse empty tensors) and are cut off.
  for (const [tokens, chunk] of [
    [50, 64], // fewer tokens than a chunk: one real chunk, 15 repeated slots
    [1, 8], // a single query
    [64, 8], // every slot exactly full
    [131, 8], // more than 16 chunks' worth: the last slot takes the rest
  ] as const) {
    it(`${tokens} tokens in chunks of ${chunk} give the whole score matrix's result`, async () => {
      const whole = await runAttention(0, tokens, 2, 8);
      const chunked = await runAttention(chunk, tokens, 2, 8);
      expect(chunked.data.length).toBe(whole.data.length);
      expect(errors(chunked.data, whole.data).maxAbs).toBeLessThan(1e-5);
    });
  }

  it('the tiny UNet without contrib ops gives the same eps chunked and whole', async () => {
    const cfg = sd1ConfigFromTensors(fp32);
    const x = { data: wave(2 * 4 * 8 * 8, 1), dims: [2, 4, 8, 8] };
    const t = { data: new Float32Array([10, 900]), dims: [2] };
    const context = { data: wave(2 * 77 * cfg.unet.contextDim, 0.7), dims: [2, 77, cfg.unet.contextDim] };
    // 8×8 latent: 64 tokens at the top level, so a chunk of 16 splits its attention in four.
    const opts = { contribOps: false, attention: 'plain' as const };
    const built = (attentionChunk: number) => buildUNetGraph(fp32, cfg.unet, { ...opts, attentionChunk });
    expect(countOps(built(16), 'MatMul')).toBeGreaterThan(countOps(built(0), 'MatMul'));
    const eps = [];
    for (const attentionChunk of [0, 16]) {
      const m = await loadSd1(fp32Path, { cacheDir, ...opts, attentionChunk, threads: 2 });
      try {
        eps.push(await m.unet({ x, t, context }));
      } finally {
        await m.release();
      }
    }
    const e = errors(eps[1]!.data, eps[0]!.data);
    expect(e.maxAbs).toBeLessThan(1e-5);
    expect(Number.isFinite(e.relL2)).toBe(true);
  });

  it('a negative or fractional chunk size is refused', () => {
    expect(() => new GraphBuilder('g', fp32, { attentionChunk: -1 })).toThrow(/attentionChunk/);
    expect(() => new GraphBuilder('g', fp32, { attentionChunk: 1.5 })).toThrow(/attentionChunk/);
  });
});

describe('per-part session options', () => {
  it("the VAE and the fp32 UNet default to level 'all' without the memory pattern, the int8 UNet to 'extended' without it, text to the defaults", async () => {
    const m = await loadSd1(fp32Path, { cacheDir });
    const q = await loadSd1(fp32Path, { cacheDir, unetPrecision: 'int8' });
    try {
      expect(m.sessionOptions('vae')).toMatchObject({ optLevel: 'all', memPattern: false });
      expect(m.sessionOptions('unet')).toMatchObject({ optLevel: 'all', memPattern: false });
      expect(q.sessionOptions('unet')).toMatchObject({ optLevel: 'extended', memPattern: false });
      expect(m.sessionOptions('text').memPattern).toBeUndefined();
      expect(m.sessionOptions('text').optLevel).toBeUndefined(); // createSession's 'extended'
      expect(PART_SESSION_DEFAULTS.unet.optLevel).toBe('all');
    } finally {
      await m.release();
      await q.release();
    }
  });

  it('top-level options apply to every part and per-part ones win', async () => {
    const m = await loadSd1(fp32Path, {
      cacheDir,
      optLevel: 'basic',
      threads: 1,
      partSessions: { vae: { memPattern: true }, unet: { optLevel: 'extended' } },
    });
    try {
      expect(m.sessionOptions('vae')).toMatchObject({ optLevel: 'basic', memPattern: true, threads: 1 });
      expect(m.sessionOptions('unet')).toMatchObject({ optLevel: 'extended', threads: 1 });
      expect(m.sessionOptions('text')).toMatchObject({ optLevel: 'basic', threads: 1 });
    } finally {
      await m.release();
    }
  });
});
