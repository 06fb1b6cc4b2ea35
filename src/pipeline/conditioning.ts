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
  padAfterFirstEos,
  tokenizeLine,
  type ChunkOptions,
  type EmphasisMode,
  type PromptChunk,
} from '../prompt/chunking.js';
import { planConditioning, type ScheduledText } from '../prompt/conditioning.js';
import { applyEmphasis } from '../prompt/emphasis.js';
import { checkPromptChunks, checkPromptParts } from '../prompt/limits.js';
import { REFINER_AESTHETIC, sdxlVector } from '../models/sdxl-vector.js';
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
  /** A1111's `emphasis` setting; default "Original". */
  emphasis?: EmphasisMode;
  /** A1111's `sdxl_clip_l_skip`: clip skip applies to SDXL's CLIP-L (hidden_states[-N], no norm). */
  sdxlClipLSkip?: boolean;
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

  private get emphasis(): EmphasisMode {
    return this.o.emphasis ?? this.o.chunkOptions?.emphasis ?? 'Original';
  }

  private index?: EmbeddingIndex<TextEmbedding> | null;

  /** The embeddings indexed by token ids once per Conditioner. */
  private get embeddingIndex(): EmbeddingIndex<TextEmbedding> | null {
    if (this.index === undefined) {
      this.index = this.embeddings ? new EmbeddingIndex(this.embeddings, this.o.tokenizer) : null;
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
   * mean over that whole batch, per text tower; the towers' contexts are concatenated along
   * channels (SDXL), and the pooled output is the first chunk's. Returns one encoding per text.
   */
  private async encodeBatch(tokenized: readonly PromptChunk<TextEmbedding>[][]): Promise<Encoded[]> {
    const towers = this.o.model.config.towers;
    const T = towers[0]!.config.maxPositions;
    const widths = towers.map((t) => t.config.width);
    const width = widths.reduce((a, w) => a + w, 0);
    const chunkCount = Math.max(...tokenized.map((c) => c.length));
    const empty = this.emptyChunk();
    const zs: Float32Array[] = tokenized.map(() => new Float32Array(chunkCount * T * width));
    const pooled: (TensorF32 | undefined)[] = tokenized.map(() => undefined);
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
        const r = await this.o.model.encodeTower(emb, ids, this.o.clipSkip, ti, {
          sdxlClipLSkip: this.o.sdxlClipLSkip,
        });
        const weighted = applyEmphasis(
          r.context.data,
          [batch.length, T, tw],
          batch.flatMap((c) => c.multipliers),
          this.emphasis,
        );
        batch.forEach((_, b) => {
          for (let t = 0; t < T; t++) {
            zs[b]!.set(
              weighted.subarray((b * T + t) * tw, (b * T + t + 1) * tw),
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
   * A scheduled conditioning from an encoding; SDXL adds its vector `y` (models/sdxl-vector.ts:
   * pooled output and size embeddings), and an empty negative prompt gets zeros for its text parts
   * (A1111's `force_zero_embeddings=['txt']`).
   */
  private scheduled(endAtStep: number, e: Encoded, negative: boolean, zero: boolean): ScheduledCond {
    const v = this.o.model.config.vector;
    if (!v) return { endAtStep, cond: e.cond };
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
    const cond = zero ? { data: new Float32Array(e.cond.data.length), dims: e.cond.dims } : e.cond;
    return { endAtStep, cond, y: { data: y.data, dims: [y.data.length] } };
  }

  /** Encodes the texts of one planned schedule (those not cached, as one batch). */
  private async encodeSchedule(
    entries: readonly ScheduledText<TextEmbedding>[],
    negative: boolean,
    zero: boolean,
  ): Promise<ScheduledCond[]> {
    const key = (text: string) => `${this.o.clipSkip}\u0000${text}`;
    const missing = new Map<string, PromptChunk<TextEmbedding>[]>();
    for (const e of entries) if (!this.cache.has(key(e.text))) missing.set(e.text, e.chunks);
    if (missing.size > 0) {
      const encoded = await this.encodeBatch([...missing.values()]);
      [...missing.keys()].forEach((t, i) => this.cache.set(key(t), encoded[i]!));
    }
    return entries.map((e) => this.scheduled(e.endAtStep, this.cache.get(key(e.text))!, negative, zero));
  }

  /**
   * The schedule of one prompt for `steps` steps (hires: first-pass steps and hires steps); no AND
   * split. `negative`: a negative prompt (SDXL: its aesthetic score, and zeros when it is empty).
   */
  async schedule(
    prompt: string,
    steps: number,
    hiresSteps?: number,
    negative = false,
  ): Promise<ScheduledCond[]> {
    const zero = negative && prompt === '';
    return this.encodeSchedule(this.plan(prompt, steps, hiresSteps, true).parts[0]!.schedule, negative, zero);
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
      parts.push({ schedule: await this.encodeSchedule(part.schedule, false, false), weight: part.weight });
    }
    return { parts, uncond: await this.schedule(negative, steps, hiresSteps, true) };
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
