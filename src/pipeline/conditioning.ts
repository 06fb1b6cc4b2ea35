/**
 * Prompt → per-step text conditioning, as A1111's prompt_parser.get_learned_conditioning /
 * get_multicond_learned_conditioning and sd_hijack_clip do it: prompt-editing schedules, AND parts,
 * 75-token chunks with weights, textual-inversion vectors spliced into the token embeddings, clip
 * skip, emphasis ("Original": multiply, then restore the mean), chunks concatenated along tokens.
 * Results are cached per unique prompt text.
 */
import { padAfterFirstEos, tokenizeLine, type ChunkOptions, type PromptChunk } from '../prompt/chunking.js';
import { checkPromptChunks, checkPromptParts } from '../prompt/limits.js';
import { REFINER_AESTHETIC, sdxlVector } from '../models/sdxl-vector.js';
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
  /** SDXL embeddings: the rows for each text tower (prompt/embeddings.ts `Embedding.parts`). */
  parts?: { clip_l: { vectors: number; vec: Float32Array }; clip_g: { vectors: number; vec: Float32Array } };
}

/** What the Conditioner needs of a model (runtime/diffusion-model.ts). */
export type ConditioningModel = Pick<Sd1Model, 'tokenEmbeddings' | 'encodeTower' | 'config'>;

export interface ConditioningOptions {
  model: ConditioningModel;
  tokenizer: ClipTokenizer;
  clipSkip: number;
  embeddings?: ReadonlyMap<string, TextEmbedding>;
  chunkOptions?: ChunkOptions;
  /**
   * SDXL: the image size (height, width) the vector's original and target sizes take (A1111: the
   * pass's image size) and the crop (A1111 `sdxl_crop_top` / `sdxl_crop_left`, default 0, 0).
   */
  sdxl?: { size: [number, number]; crop?: [number, number] };
}

/** A text's encoding: the context [77·chunks, W] and (SDXL) the pooled output of its first chunk. */
interface Encoded {
  cond: TensorF32;
  pooled?: TensorF32;
}

/** The rows of an embedding for one tower, or undefined when it does not fit that tower. */
function embeddingRows(
  e: TextEmbedding,
  towers: number,
  tower: number,
  width: number,
): Float32Array | undefined {
  if (towers === 2) {
    const part = e.parts ? (tower === 0 ? e.parts.clip_l : e.parts.clip_g) : undefined;
    return part && part.vec.length === part.vectors * width ? part.vec : undefined;
  }
  return e.vec.length === e.vectors * width ? e.vec : undefined;
}

export class Conditioner {
  private readonly cache = new Map<string, Encoded>();
  /** Embeddings that appeared in an encoded prompt (for "TI hashes"). */
  readonly usedEmbeddings = new Set<string>();
  /** Embeddings this model cannot use (another family's width): their names stay plain words, as A1111 skips them. */
  readonly skippedEmbeddings: string[] = [];
  private readonly embeddings: ReadonlyMap<string, TextEmbedding> | null;

  constructor(private readonly o: ConditioningOptions) {
    const towers = o.model.config.towers;
    if (!o.embeddings) this.embeddings = null;
    else {
      const fits = new Map<string, TextEmbedding>();
      for (const [name, e] of o.embeddings) {
        const ok = towers.every((t, i) => embeddingRows(e, towers.length, i, t.config.width) !== undefined);
        if (ok) fits.set(name, e);
        else this.skippedEmbeddings.push(name);
      }
      this.embeddings = fits;
    }
  }

  private tokenize(text: string): PromptChunk<TextEmbedding>[] {
    const { chunks } = tokenizeLine<TextEmbedding>(
      text,
      this.o.tokenizer,
      this.embeddings,
      this.o.chunkOptions,
    );
    checkPromptChunks(chunks.length);
    return chunks;
  }

  /**
   * Encodes texts as one batch, as A1111's FrozenCLIPEmbedderWithCustomWords.forward: chunk i of every
   * text goes through the encoder together (missing chunks are empty ones) and emphasis restores the
   * mean over that whole batch, per text tower; the towers' contexts are concatenated along
   * channels (SDXL), and the pooled output is the first chunk's. Returns one encoding per text.
   */
  private async encodeBatch(texts: readonly string[]): Promise<Encoded[]> {
    const towers = this.o.model.config.towers;
    const T = towers[0]!.config.maxPositions;
    const widths = towers.map((t) => t.config.width);
    const width = widths.reduce((a, w) => a + w, 0);
    const tokenized = texts.map((t) => this.tokenize(t));
    const chunkCount = Math.max(...tokenized.map((c) => c.length));
    const empty = this.tokenize('')[0]!;
    const zs: Float32Array[] = texts.map(() => new Float32Array(chunkCount * T * width));
    const pooled: (TensorF32 | undefined)[] = texts.map(() => undefined);
    for (let ci = 0; ci < chunkCount; ci++) {
      const batch = tokenized.map((chunks) => chunks[ci] ?? { ...empty, fixes: [] });
      let offset = 0;
      for (let ti = 0; ti < towers.length; ti++) {
        const tower = towers[ti]!;
        const tw = widths[ti]!;
        const ids = new Int32Array(batch.length * T);
        batch.forEach((c, b) =>
          ids.set(padAfterFirstEos(c.tokens, this.o.tokenizer.eos, tower.padId), b * T),
        );
        const emb = await this.o.model.tokenEmbeddings(ids, batch.length, ti);
        batch.forEach((c, b) => {
          for (const fix of c.fixes) {
            this.usedEmbeddings.add(fix.embedding.name);
            const rows = embeddingRows(fix.embedding, towers.length, ti, tw)!;
            const n = Math.min(fix.embedding.vectors, T - (fix.offset + 1));
            if (n > 0) emb.data.set(rows.subarray(0, n * tw), (b * T + fix.offset + 1) * tw);
          }
        });
        const r = await this.o.model.encodeTower(emb, ids, this.o.clipSkip, ti);
        applyEmphasisOriginal(
          r.context.data,
          batch.map((c) => c.multipliers),
          tw,
        );
        batch.forEach((_, b) => {
          for (let t = 0; t < T; t++) {
            zs[b]!.set(
              r.context.data.subarray((b * T + t) * tw, (b * T + t + 1) * tw),
              (ci * T + t) * width + offset,
            );
          }
          if (ci === 0 && r.pooled) {
            const P = r.pooled.dims[1]!;
            pooled[b] = { data: r.pooled.data.slice(b * P, (b + 1) * P), dims: [1, P] };
          }
        });
        offset += tw;
      }
    }
    return zs.map((data, i) => {
      const cond = { data, dims: [data.length / width, width] };
      return pooled[i] ? { cond, pooled: pooled[i] } : { cond };
    });
  }

  /**
   * SDXL's vector for a text (models/sdxl-vector.ts): pooled output and size embeddings; an empty
   * negative prompt gets zeros for its text parts (A1111's `force_zero_embeddings=['txt']`).
   */
  private withVector(e: Encoded, negative: boolean, zero: boolean): Omit<ScheduledCond, 'endAtStep'> {
    const v = this.o.model.config.vector;
    if (!v) return { cond: e.cond };
    const size = this.o.sdxl?.size ?? [1024, 1024];
    const y = sdxlVector(
      v,
      e.pooled!,
      {
        originalSize: size,
        cropTopLeft: this.o.sdxl?.crop ?? [0, 0],
        targetSize: size,
        aestheticScore: negative ? REFINER_AESTHETIC.negative : REFINER_AESTHETIC.prompt,
      },
      zero,
    );
    // A fresh object per schedule: the vector depends on the pass's size, and a refiner's
    // conditioning may be attached to it (TextCond.alt).
    const data = zero ? new Float32Array(e.cond.data.length) : e.cond.data;
    return { cond: { data, dims: e.cond.dims, y: { data: y.data, dims: [y.data.length] } } };
  }

  /** The schedule of one prompt for `steps` steps (hires: first-pass steps and hires steps). */
  async schedule(
    prompt: string,
    steps: number,
    hiresSteps?: number,
    negative = false,
  ): Promise<ScheduledCond[]> {
    const [entries] = getLearnedConditioningPromptSchedules([prompt], steps, hiresSteps ?? null);
    const key = (text: string) => `${this.o.clipSkip}\u0000${text}`;
    const missing = [...new Set(entries!.map(([, text]) => text).filter((t) => !this.cache.has(key(t))))];
    if (missing.length > 0) {
      const encoded = await this.encodeBatch(missing);
      missing.forEach((t, i) => this.cache.set(key(t), encoded[i]!));
    }
    // SDXL: an empty negative prompt conditions on zeros (sgm's force_zero_embeddings, as A1111 asks).
    const zero = negative && prompt === '';
    return entries!.map(([endAtStep, text]) => ({
      endAtStep,
      ...this.withVector(this.cache.get(key(text))!, negative, zero),
    }));
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
    return { parts, uncond: await this.schedule(negative, steps, hiresSteps, true) };
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
