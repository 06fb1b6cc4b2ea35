/**
 * Prompt → per-step text conditioning, as A1111's prompt_parser.get_learned_conditioning /
 * get_multicond_learned_conditioning and sd_hijack_clip do it: prompt-editing schedules, AND parts,
 * 75-token chunks with weights, textual-inversion vectors spliced into the token embeddings, clip
 * skip, emphasis ("Original": multiply, then restore the mean), chunks concatenated along tokens.
 * Results are cached per unique prompt text.
 */
import { tokenizeLine, type ChunkOptions, type PromptChunk } from '../prompt/chunking.js';
import { checkPromptChunks, checkPromptParts } from '../prompt/limits.js';
import { getMulticondPromptList } from '../prompt/multicond.js';
import { getLearnedConditioningPromptSchedules } from '../prompt/schedules.js';
import type { ClipTokenizer } from '../prompt/tokenizer.js';
import type { Sd1Model, TensorF32 } from '../runtime/sd1.js';
import type { ImageConditioning, ScheduledCond } from './denoiser.js';

/**
 * A textual-inversion embedding ready to splice: `vectors` rows of the text encoder's width (the
 * shape of prompt/embeddings.ts `Embedding`, so an EmbeddingDatabase's `loaded` map can be passed).
 */
export interface TextEmbedding {
  name: string;
  vectors: number;
  /** [vectors, width] row-major. */
  vec: Float32Array;
}

export interface ConditioningOptions {
  model: Pick<Sd1Model, 'tokenEmbeddings' | 'encodeEmbeddings' | 'config'>;
  tokenizer: ClipTokenizer;
  clipSkip: number;
  embeddings?: ReadonlyMap<string, TextEmbedding>;
  chunkOptions?: ChunkOptions;
}

export class Conditioner {
  private readonly cache = new Map<string, TensorF32>();
  /** Embeddings that appeared in an encoded prompt (for "TI hashes"). */
  readonly usedEmbeddings = new Set<string>();

  constructor(private readonly o: ConditioningOptions) {}

  private tokenize(text: string): PromptChunk<TextEmbedding>[] {
    const { chunks } = tokenizeLine<TextEmbedding>(
      text,
      this.o.tokenizer,
      this.o.embeddings ?? null,
      this.o.chunkOptions,
    );
    checkPromptChunks(chunks.length);
    return chunks;
  }

  /**
   * Encodes texts as one batch, as A1111's FrozenCLIPEmbedderWithCustomWords.forward: chunk i of every
   * text goes through the encoder together (missing chunks are empty ones) and emphasis restores the
   * mean over that whole batch. Returns one [77·chunks, W] tensor per text.
   */
  private async encodeBatch(texts: readonly string[]): Promise<TensorF32[]> {
    const width = this.o.model.config.text.width;
    const T = this.o.model.config.text.maxPositions;
    const tokenized = texts.map((t) => this.tokenize(t));
    const chunkCount = Math.max(...tokenized.map((c) => c.length));
    const empty = this.tokenize('')[0]!;
    const zs: Float32Array[] = texts.map(() => new Float32Array(chunkCount * T * width));
    for (let ci = 0; ci < chunkCount; ci++) {
      const batch = tokenized.map((chunks) => chunks[ci] ?? { ...empty, fixes: [] });
      const ids = new Int32Array(batch.length * T);
      batch.forEach((c, b) => ids.set(c.tokens, b * T));
      const emb = await this.o.model.tokenEmbeddings(ids, batch.length);
      batch.forEach((c, b) => {
        for (const fix of c.fixes) {
          this.usedEmbeddings.add(fix.embedding.name);
          const n = Math.min(fix.embedding.vectors, T - (fix.offset + 1));
          if (n > 0) emb.data.set(fix.embedding.vec.subarray(0, n * width), (b * T + fix.offset + 1) * width);
        }
      });
      const z = await this.o.model.encodeEmbeddings(emb, this.o.clipSkip);
      applyEmphasisOriginal(
        z.data,
        batch.map((c) => c.multipliers),
        width,
      );
      batch.forEach((_, b) =>
        zs[b]!.set(z.data.subarray(b * T * width, (b + 1) * T * width), ci * T * width),
      );
    }
    return zs.map((data) => ({ data, dims: [data.length / width, width] }));
  }

  /** The schedule of one prompt for `steps` steps (hires: first-pass steps and hires steps). */
  async schedule(prompt: string, steps: number, hiresSteps?: number): Promise<ScheduledCond[]> {
    const [entries] = getLearnedConditioningPromptSchedules([prompt], steps, hiresSteps ?? null);
    const key = (text: string) => `${this.o.clipSkip}\u0000${text}`;
    const missing = [...new Set(entries!.map(([, text]) => text).filter((t) => !this.cache.has(key(t))))];
    if (missing.length > 0) {
      const encoded = await this.encodeBatch(missing);
      missing.forEach((t, i) => this.cache.set(key(t), encoded[i]!));
    }
    return entries!.map(([endAtStep, text]) => ({ endAtStep, cond: this.cache.get(key(text))! }));
  }

  /** A prompt with its AND parts (each a schedule) and a negative prompt: one image's conditioning. */
  async forImage(
    prompt: string,
    negative: string,
    steps: number,
    hiresSteps?: number,
  ): Promise<ImageConditioning> {
    const multi = getMulticondPromptList([prompt]);
    checkPromptParts(multi.resIndexes[0]!.length);
    const parts = await Promise.all(
      multi.resIndexes[0]!.map(async ([index, weight]) => ({
        schedule: await this.schedule(multi.promptFlatList[index]!, steps, hiresSteps),
        weight,
      })),
    );
    return { parts, uncond: await this.schedule(negative, steps, hiresSteps) };
  }
}

/**
 * A1111 EmphasisOriginal: z[b, t, :] *= multiplier[b][t]; then z *= mean(z before) / mean(z after),
 * means over the whole batch tensor.
 */
export function applyEmphasisOriginal(
  z: Float32Array,
  multipliers: readonly (readonly number[])[],
  width: number,
): void {
  if (multipliers.every((m) => m.every((v) => v === 1))) return;
  const T = multipliers[0]!.length;
  let before = 0;
  for (let i = 0; i < z.length; i++) before += z[i]!;
  let after = 0;
  for (let b = 0; b < multipliers.length; b++) {
    for (let t = 0; t < T; t++) {
      const m = multipliers[b]![t]!;
      const base = (b * T + t) * width;
      for (let k = 0; k < width; k++) {
        z[base + k]! *= m;
        after += z[base + k]!;
      }
    }
  }
  const ratio = Math.fround(before / z.length) / Math.fround(after / z.length);
  for (let i = 0; i < z.length; i++) z[i]! *= ratio;
}
