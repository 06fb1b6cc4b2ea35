/**
 * "Converting a 4 GB checkpoint must not need 8 GB of RAM", checked at a size a test can afford:
 * converting a 32 MiB file (32 tensors of 1 MiB) must never hold more than a few tensors' worth of
 * buffers. The figure is `process.memoryUsage().arrayBuffers` (where tensor bytes live) after a
 * forced GC at every progress step, so only buffers still referenced count; a reader that loads
 * the whole file, or a writer that collects the tensors before writing, holds ~32 MiB and fails.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { castFloats } from '../../src/formats/dtype.js';
import { openModel } from '../../src/formats/open.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor, TensorInfo } from '../../src/formats/tensor.js';
import { convertModel } from '../../src/tools/convert.js';
import { mergeModels } from '../../src/tools/merge.js';
import { buildZip, stateDictPickle } from '../formats/craft.js';

// A forced full GC that also frees dead buffers' memory before returning (V8 otherwise sweeps
// array buffers on a background thread, and the figure would lag behind).
setFlagsFromString('--expose-gc');
setFlagsFromString('--no-concurrent-array-buffer-sweeping');
const gc = runInNewContext('gc') as () => void;

const COUNT = 32;
const ELEMS = 256 * 1024; // 1 MiB of F32 per tensor
const TENSOR_BYTES = ELEMS * 4;
const FILE_BYTES = COUNT * TENSOR_BYTES;
/** Generous for "one tensor in, one out, plus I/O slack"; a quarter of the file. */
const LIMIT = FILE_BYTES / 4;

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-mem-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ST = join(dir, 'big.safetensors');
const CKPT = join(dir, 'big.ckpt');

/** Two small UNet layers (so detection calls the file a checkpoint, for merge), then the big ones. */
const infos: TensorInfo[] = [
  { name: 'model.diffusion_model.input_blocks.0.0.weight', dtype: 'F32', shape: [32, 4, 3, 3] },
  { name: 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight', dtype: 'F32', shape: [32, 32, 3, 3] },
  ...Array.from({ length: COUNT }, (_, i) => ({
    name: `model.diffusion_model.big.${i}.weight`,
    dtype: 'F32' as const,
    shape: [ELEMS / 64, 64],
  })),
];

function tensorData(i: number): Uint8Array {
  const v = new Float32Array(infos[i]!.shape.reduce((a, b) => a * b, 1));
  for (let j = 0; j < v.length; j++) v[j] = ((i * 7919 + j) % 2001) / 8 - 125;
  return new Uint8Array(v.buffer);
}

beforeAll(async () => {
  async function* gen(): AsyncGenerator<[string, Tensor]> {
    for (const [i, info] of infos.entries()) yield [info.name, { ...info, data: tensorData(i) }];
  }
  await writeSafetensors(ST, gen(), {}, { infos });
  const pkl = stateDictPickle(infos);
  writeFileSync(
    CKPT,
    buildZip([
      { name: 'archive/data.pkl', data: pkl },
      ...infos.map((_, i) => ({ name: `archive/data/${i}`, data: tensorData(i) })),
      { name: 'archive/version', data: new TextEncoder().encode('3\n') },
    ]),
  );
});

/** Run `job` with a probe for its progress callback; returns the most buffer bytes held at a probe. */
async function peakHeld(
  job: (probe: () => void) => Promise<unknown>,
): Promise<{ peak: number; probes: number }> {
  gc();
  const base = process.memoryUsage().arrayBuffers;
  let peak = 0;
  let probes = 0;
  await job(() => {
    gc();
    probes++;
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
  });
  return { peak, probes };
}

describe('streaming keeps memory at a few tensors, whatever the file size', () => {
  it('convert .safetensors -> fp16 and .ckpt -> .safetensors', async () => {
    for (const [input, dtype] of [
      [ST, 'fp16'],
      [CKPT, undefined],
    ] as const) {
      const out = join(dir, `out-${dtype ?? 'keep'}.safetensors`);
      const { peak, probes } = await peakHeld((probe) =>
        convertModel(input, out, { dtype, onProgress: probe }),
      );
      expect(probes, input).toBe(infos.length);
      expect(peak, `${input}: held ${peak} bytes`).toBeLessThan(LIMIT);
      // And the output is right (spot check: first and last tensor).
      const src = await openModel(out);
      try {
        for (const i of [0, infos.length - 1]) {
          const want: Tensor = { ...infos[i]!, data: tensorData(i) };
          const expected = dtype ? castFloats(want, 'F16') : want;
          const got = await src.read(infos[i]!.name);
          expect(got.dtype).toBe(expected.dtype);
          expect(Buffer.from(got.data).equals(Buffer.from(expected.data))).toBe(true);
        }
      } finally {
        await src.close();
      }
    }
  });

  it('merge (weighted sum of the two files)', async () => {
    const out = join(dir, 'merged.safetensors');
    const { peak, probes } = await peakHeld((probe) =>
      mergeModels({ a: ST, b: CKPT }, out, {
        mode: 'weighted-sum',
        alpha: 0.5,
        cacheDir: join(dir, 'cache'),
        onProgress: probe,
      }),
    );
    expect(probes).toBe(infos.length);
    // Merging holds A, B and the result as float32 for one tensor: still far below the file.
    expect(peak, `held ${peak} bytes`).toBeLessThan(LIMIT);
  });
});
