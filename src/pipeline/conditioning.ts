/**
 * Prompt → per-step text conditioning, as A1111's prompt_parser.get_learned_conditioning /
 * get_multicond_learned_conditioning and sd_hijack_clip do it: prompt-editing schedules, AND parts,
 * 75-token chunks with weights, textual-inversion vectors spliced into the token embeddings, clip
 * skip, emphasis (A1111's `emphasis` setting: "Original" multiplies and restores the mean, "No norm"
 * only multiplies, "Ignore" drops the weights, "None" leaves brackets as text), chunks concatenated
 * along tokens. Results are cached per unique prompt text.
 */
import {
  EmbeddingIndex,
  tokenizeLine,
  type ChunkOptions,
  type EmphasisMode,
  type PromptChunk,
} from '../prompt/chunking.js';
import { planConditioning, type ScheduledText } from '../prompt/conditioning.js';
import { applyEmphasis } from '../prompt/emphasis.js';
import { checkPromptChunks, checkPromptParts } from '../prompt/limits.js';
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
  /** A1111's `emphasis` setting; default "Original". */
  emphasis?: EmphasisMode;
}

export class Conditioner {
  private readonly cache = new Map<string, TensorF32>();
  /** Embeddings that appeared in an encoded prompt (for "TI hashes"). */
  readonly usedEmbeddings = new Set<string>();

  constructor(private readonly o: ConditioningOptions) {}

  private get emphasis(): EmphasisMode {
    return this.o.emphasis ?? this.o.chunkOptions?.emphasis ?? 'Original';
  }

  private index?: EmbeddingIndex<TextEmbedding> | null;

  /** The embeddings indexed by token ids once per Conditioner. */
  private get embeddingIndex(): EmbeddingIndex<TextEmbedding> | null {
    if (this.index === undefined) {
      this.index = this.o.embeddings ? new EmbeddingIndex(this.o.embeddings, this.o.tokenizer) : null;
    }
    return this.index;
  }

  /** The one prompt planner (`prompt/conditioning`): AND parts, schedules and chunks of a prompt. */
  private plan(prompt: string, steps: number, hiresSteps: number | undefined, negative: boolean) {
    const plan = planConditioning<TextEmbedding>(prompt, {
      ...this.o.chunkOptions,
      emphasis: this.emphasis,
      tokenizer: this.o.tokenizer,
      embeddings: this.embeddingIndex,
      steps,
      hiresSteps: hiresSteps ?? null,
      negative,
    });
    checkPromptParts(plan.parts.length);
    for (const part of plan.parts) for (const e of part.schedule) checkPromptChunks(e.chunks.length);
    return plan;
  }

  private emptyChunk(): PromptChunk<TextEmbedding> {
    return tokenizeLine<TextEmbedding>('', this.o.tokenizer, null, this.o.chunkOptions).chunks[0]!;
  }

  /**
   * Encodes texts as one batch, as A1111's FrozenCLIPEmbedderWithCustomWords.forward: chunk i of every
   * text goes through the encoder together (missing chunks are empty ones) and emphasis restores the
   * mean over that whole batch. Returns one [77·chunks, W] tensor per text.
   */
  private async encodeBatch(tokenized: readonly PromptChunk<TextEmbedding>[][]): Promise<TensorF32[]> {
    const width = this.o.model.config.text.width;
    const T = this.o.model.config.text.maxPositions;
    const chunkCount = Math.max(...tokenized.map((c) => c.length));
    const empty = this.emptyChunk();
    const zs: Float32Array[] = tokenized.map(() => new Float32Array(chunkCount * T * width));
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
      const weighted = applyEmphasis(
        z.data,
        [batch.length, T, width],
        batch.flatMap((c) => c.multipliers),
        this.emphasis,
      );
      batch.forEach((_, b) =>
        zs[b]!.set(weighted.subarray(b * T * width, (b + 1) * T * width), ci * T * width),
      );
    }
    return zs.map((data) => ({ data, dims: [data.length / width, width] }));
  }

  /** Encodes the texts of one planned schedule (those not cached, as one batch). */
  private async encodeSchedule(entries: readonly ScheduledText<TextEmbedding>[]): Promise<ScheduledCond[]> {
    const key = (text: string) => `${this.o.clipSkip}\u0000${text}`;
    const missing = new Map<string, PromptChunk<TextEmbedding>[]>();
    for (const e of entries) if (!this.cache.has(key(e.text))) missing.set(e.text, e.chunks);
    if (missing.size > 0) {
      const encoded = await this.encodeBatch([...missing.values()]);
      [...missing.keys()].forEach((t, i) => this.cache.set(key(t), encoded[i]!));
    }
    return entries.map((e) => ({ endAtStep: e.endAtStep, cond: this.cache.get(key(e.text))! }));
  }

  /** The schedule of one prompt for `steps` steps (hires: first-pass steps and hires steps); no AND split. */
  async schedule(prompt: string, steps: number, hiresSteps?: number): Promise<ScheduledCond[]> {
    return this.encodeSchedule(this.plan(prompt, steps, hiresSteps, true).parts[0]!.schedule);
  }

  /** A prompt with its AND parts (each a schedule) and a negative prompt: one image's conditioning. */
  async forImage(
    prompt: string,
    negative: string,
    steps: number,
    hiresSteps?: number,
  ): Promise<ImageConditioning> {
    const plan = this.plan(prompt, steps, hiresSteps, false);
    const parts = [];
    for (const part of plan.parts) {
      parts.push({ schedule: await this.encodeSchedule(part.schedule), weight: part.weight });
    }
    return { parts, uncond: await this.schedule(negative, steps, hiresSteps) };
  }
}

/**
 * A1111 EmphasisOriginal in place: z[b, t, :] *= multiplier[b][t]; then z *= mean(z before) /
 * mean(z after), means over the whole batch tensor (prompt/emphasis.ts `applyEmphasis`).
 */
export function applyEmphasisOriginal(
  z: Float32Array,
  multipliers: readonly (readonly number[])[],
  width: number,
): void {
  const T = multipliers[0]!.length;
  z.set(applyEmphasis(z, [multipliers.length, T, width], multipliers.flat(), 'Original'));
}
