/**
 * The saved level-'all' model (runtime/optimized-cache.ts): optimised once, loaded from the weights
 * cache afterwards, computing what the unoptimised graph computes; unfinished entries are not used.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { buildUNetGraph, UNET_IO } from '../../src/models/unet.js';
import { createOptimizedSession, graphFingerprint, isSavedModel } from '../../src/runtime/optimized-cache.js';
import { createSession, f32 } from '../../src/runtime/session.js';
import { prepareModel, sourceIdentity, WeightsCache } from '../../src/runtime/weights.js';
import { goldenPath } from '../helpers/golden.js';
import { errors, TINY } from './golden.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-optcache-test-'));
let src: TensorSource;

beforeAll(async () => {
  src = await openSafetensors(goldenPath(TINY, 'tiny-sd.safetensors'));
});

afterAll(async () => {
  await src.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));

async function tinyUNet() {
  const cfg = sd1ConfigFromTensors(src);
  const g = buildUNetGraph(src, cfg.unet, {});
  const prepared = await prepareModel(g, 'test-opt', { cacheDir });
  const identity = await sourceIdentity(
    src,
    [...g.params.values()].map((p) => p.key),
  );
  const feeds = {
    [UNET_IO.x]: f32(wave(2 * 4 * 16 * 16, 1), [2, 4, 16, 16]),
    [UNET_IO.t]: f32(new Float32Array([10, 900]), [2]),
    [UNET_IO.context]: f32(wave(2 * 77 * cfg.unet.contextDim, 0.7), [2, 77, cfg.unet.contextDim]),
  };
  return { prepared, identity: identity!, feeds };
}

describe('optimised-model cache', () => {
  it('optimises once, then loads the saved model, and both equal the unoptimised graph', async () => {
    const { prepared, identity, feeds } = await tinyUNet();
    expect(identity).toContain('tiny-sd.safetensors');
    const plain = await createSession(prepared, { threads: 2, optLevel: 'basic' });
    const ref = (await plain.run(feeds))[UNET_IO.eps]!.data as Float32Array;
    await plain.release();

    let notices = 0;
    const opts = { threads: 2 };
    const first = await createOptimizedSession(
      prepared,
      identity,
      'unet|test',
      opts,
      { cacheDir },
      () => notices++,
    );
    expect(first.status).toBe('created');
    expect(notices).toBe(1);
    const a = (await first.session.run(feeds))[UNET_IO.eps]!.data as Float32Array;
    await first.session.release();
    expect(await isSavedModel(first.entry)).toBe(true);
    expect(readdirSync(first.entry).sort()).toEqual(['index.json', 'model.onnx', 'weights.bin']);
    // The saved graph really is the NCHWc one.
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(join(first.entry, 'model.onnx')).includes('com.microsoft.nchwc')).toBe(true);

    const second = await createOptimizedSession(
      prepared,
      identity,
      'unet|test',
      opts,
      { cacheDir },
      () => notices++,
    );
    expect(second.status).toBe('hit');
    expect(second.entry).toBe(first.entry);
    expect(notices).toBe(1);
    const b = (await second.session.run(feeds))[UNET_IO.eps]!.data as Float32Array;
    await second.session.release();

    expect(errors(a, ref).maxAbs).toBeLessThan(1e-4);
    expect(Array.from(b)).toEqual(Array.from(a)); // the saved model is the same graph
    // Given lazily, the weights are placed only when the graph has to be optimised.
    let placed = 0;
    const lazy = async () => {
      placed++;
      return prepared;
    };
    const third = await createOptimizedSession(lazy, identity, 'unet|test', opts, { cacheDir });
    expect(third.status).toBe('hit');
    await third.session.release();
    expect(placed).toBe(0);
    // Another graph key (e.g. a UNet variant) is another entry.
    const other = await createOptimizedSession(prepared, identity, 'unet|other', opts, { cacheDir });
    expect(other.status).toBe('created');
    expect(other.entry).not.toBe(first.entry);
    await other.session.release();
    // No temporary folders are left behind.
    expect(readdirSync(cacheDir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  });

  it('does not use an entry whose completion marker is missing (a crash while saving)', async () => {
    const { prepared, identity } = await tinyUNet();
    const first = await createOptimizedSession(
      prepared,
      identity,
      'unet|crash',
      { threads: 2 },
      { cacheDir },
    );
    await first.session.release();
    rmSync(join(first.entry, 'index.json'));
    writeFileSync(join(first.entry, 'model.onnx'), 'not a model');
    // Not loaded: optimised again, and the broken folder is replaced by a complete entry.
    const again = await createOptimizedSession(
      prepared,
      identity,
      'unet|crash',
      { threads: 2 },
      { cacheDir },
    );
    expect(again.status).toBe('created');
    await again.session.release();
    expect(await isSavedModel(first.entry)).toBe(true);
    const third = await createOptimizedSession(
      prepared,
      identity,
      'unet|crash',
      { threads: 2 },
      { cacheDir },
    );
    expect(third.status).toBe('hit');
    await third.session.release();
  });

  it('counts saved models in the weights cache size limit', async () => {
    const dir = join(cacheDir, 'evict');
    mkdirSync(dir);
    const { prepared, identity } = await tinyUNet();
    const a = await createOptimizedSession(prepared, identity, 'unet|a', { threads: 2 }, { cacheDir: dir });
    await a.session.release();
    const b = await createOptimizedSession(
      prepared,
      identity,
      'unet|b',
      { threads: 2 },
      { cacheDir: dir, limitBytes: 1 },
    );
    await b.session.release();
    expect(existsSync(a.entry)).toBe(false); // least recently used, evicted
    expect(await isSavedModel(b.entry)).toBe(true); // the one just written is kept
    await new WeightsCache({ cacheDir: dir, limitBytes: 1 }).evict(b.entry);
    expect(existsSync(b.entry)).toBe(true);
  });

  it('runs unsaved at level extended when the cache cannot be written', async () => {
    const { prepared, identity, feeds } = await tinyUNet();
    const notAFolder = join(cacheDir, 'plain-file');
    writeFileSync(notAFolder, 'x');
    const r = await createOptimizedSession(
      prepared,
      identity,
      'unet|ro',
      { threads: 2 },
      { cacheDir: notAFolder },
    );
    expect(r.status).toBe('unsaved');
    expect((await r.session.run(feeds))[UNET_IO.eps]!.data.length).toBe(2 * 4 * 16 * 16);
    await r.session.release();
  });

  it('keys saved models by the graph itself: another graph, another fingerprint', () => {
    const cfg = sd1ConfigFromTensors(src);
    const a = graphFingerprint(buildUNetGraph(src, cfg.unet, {}));
    expect(graphFingerprint(buildUNetGraph(src, cfg.unet, {}))).toBe(a);
    expect(graphFingerprint(buildUNetGraph(src, cfg.unet, { tiling: true }))).not.toBe(a);
    expect(graphFingerprint(buildUNetGraph(src, cfg.unet, { attention: 'plain' }))).not.toBe(a);
  });

  it('removes temporary folders a stopped process left behind, once they are old', async () => {
    const dir = join(cacheDir, 'stale');
    mkdirSync(join(dir, '.tmp-opt-1-old'), { recursive: true });
    mkdirSync(join(dir, '.tmp-opt-2-new'), { recursive: true });
    const old = new Date(Date.now() - 24 * 3600 * 1000);
    utimesSync(join(dir, '.tmp-opt-1-old'), old, old);
    await new WeightsCache({ cacheDir: dir }).evict('');
    expect(existsSync(join(dir, '.tmp-opt-1-old'))).toBe(false);
    expect(existsSync(join(dir, '.tmp-opt-2-new'))).toBe(true); // may still be being written
  });
});
