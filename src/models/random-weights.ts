/**
 * Random SD 1.x checkpoints of any configuration, for benchmarks: the weight list comes from the
 * graph builders themselves (a ShapeRecorder source), values from a fast seeded generator with a
 * sane init (uniform with variance 1/fan_in for conv/linear weights, norms at 1, biases near 0),
 * so activations stay O(1) through the full-size network. Streams to disk tensor by tensor.
 */
import { writeSafetensors } from '../formats/safetensors.js';
import type { Tensor, TensorInfo } from '../formats/tensor.js';
import { numel } from '../formats/tensor.js';
import { ShapeRecorder } from '../onnx/builder.js';
import { buildClipTextEncoderGraph, buildClipTokenEmbeddingGraph } from './clip-text.js';
import type { Sd1Config } from './config.js';
import { buildUNetGraph } from './unet.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from './vae.js';

export type Sd1Part = 'unet' | 'vae' | 'text';

/** Every checkpoint tensor the networks of `parts` read, with its shape. */
export function sd1WeightShapes(
  cfg: Sd1Config,
  parts: Sd1Part[] = ['unet', 'vae', 'text'],
): Map<string, number[]> {
  const rec = new ShapeRecorder();
  if (parts.includes('unet')) buildUNetGraph(rec, cfg.unet, { prefix: cfg.prefixes.unet });
  if (parts.includes('vae')) {
    buildVaeDecoderGraph(rec, cfg.vae, { prefix: cfg.prefixes.vae });
    buildVaeEncoderGraph(rec, cfg.vae, { prefix: cfg.prefixes.vae });
  }
  if (parts.includes('text')) {
    buildClipTokenEmbeddingGraph(rec, cfg.text, cfg.prefixes.text);
    buildClipTextEncoderGraph(rec, cfg.text, cfg.prefixes.text);
  }
  return rec.shapes;
}

/** xorshift32 → uniform floats in [-1, 1): plenty for random benchmark weights, and fast. */
function uniformGenerator(seed: number): () => number {
  let s = (seed >>> 0) % 0xffffffff || 0x6d2b79f5;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2147483648 - 1;
  };
}

function fill(key: string, shape: number[], rand: () => number): Float32Array {
  const n = numel(shape);
  const out = new Float32Array(n);
  const leaf = key.slice(key.lastIndexOf('.') + 1);
  if (shape.length >= 2) {
    const fanIn = n / shape[0]!;
    // Uniform on [-a, a] has variance a²/3: a = √(3/fan_in) gives variance 1/fan_in.
    // Token/position tables: small values like trained CLIP embeddings.
    const a = key.includes('embedding') ? 0.02 * Math.sqrt(3) : Math.sqrt(3 / fanIn);
    for (let i = 0; i < n; i++) out[i] = rand() * a;
  } else if (leaf === 'weight') {
    for (let i = 0; i < n; i++) out[i] = 1 + 0.05 * rand();
  } else {
    for (let i = 0; i < n; i++) out[i] = 0.02 * rand();
  }
  return out;
}

/** Write a random fp32 checkpoint with every tensor the given parts need. */
export async function writeRandomSd1Checkpoint(
  path: string,
  cfg: Sd1Config,
  parts: Sd1Part[] = ['unet', 'vae', 'text'],
  seed = 1,
): Promise<void> {
  const shapes = sd1WeightShapes(cfg, parts);
  const infos: TensorInfo[] = [...shapes].map(([name, shape]) => ({ name, dtype: 'F32', shape }));
  const rand = uniformGenerator(seed);
  async function* entries(): AsyncGenerator<[string, Tensor]> {
    for (const info of infos) {
      const data = fill(info.name, info.shape, rand);
      yield [info.name, { dtype: 'F32', shape: info.shape, data: new Uint8Array(data.buffer) }];
    }
  }
  await writeSafetensors(path, entries(), { generator: 'sdstudio random weights' }, { infos });
}
