/**
 * From a prompt as typed to what the text encoder receives, in A1111's order: extra-network tags are
 * cut out and the prompt is split on AND (both for positive prompts only; A1111 leaves a negative
 * prompt's tags and ANDs as text), each part gets its prompt-editing schedule, and each scheduled text
 * is chunked with its weights. The pipeline encodes every chunk,
 * applies `applyEmphasis`, and switches texts at the listed steps.
 */
import {
  EmbeddingIndex,
  tokenizeLine,
  type ChunkEmbedding,
  type ChunkOptions,
  type ChunkTokenizer,
  type EmbeddingLookup,
  type PromptChunk,
} from './chunking.js';
import { parseExtraNetworks, type ExtraNetworkParams } from './extra-networks.js';
import { getMulticondPromptList } from './multicond.js';
import { condAtStep } from '../sampling/denoisers.js';
import { getPromptSchedule } from './schedules.js';

export interface ScheduledText<E extends ChunkEmbedding = ChunkEmbedding> {
  /** Use this text up to and including this step. */
  endAtStep: number;
  text: string;
  chunks: PromptChunk<E>[];
  tokenCount: number;
}

export interface ConditioningPart<E extends ChunkEmbedding = ChunkEmbedding> {
  /** AND weight (1 for a negative prompt). */
  weight: number;
  schedule: ScheduledText<E>[];
}

export interface ConditioningPlan<E extends ChunkEmbedding = ChunkEmbedding> {
  /** The extra-network tags that were removed. */
  networks: ExtraNetworkParams[];
  parts: ConditioningPart<E>[];
}

export interface PlanOptions<E extends ChunkEmbedding = ChunkEmbedding> extends ChunkOptions {
  tokenizer: ChunkTokenizer;
  embeddings?: EmbeddingLookup<E> | EmbeddingIndex<E> | null;
  steps: number;
  /** Hires pass: `steps` is then the first pass's step count. */
  hiresSteps?: number | null;
  useOldScheduling?: boolean;
  /** A negative prompt: no AND split and no extra-network tags, as in A1111. */
  negative?: boolean;
}

/** Plan the conditioning of one prompt. */
export function planConditioning<E extends ChunkEmbedding = ChunkEmbedding>(
  prompt: string,
  opts: PlanOptions<E>,
): ConditioningPlan<E> {
  const { prompt: stripped, networks } = opts.negative
    ? { prompt, networks: [] }
    : parseExtraNetworks(prompt);
  const parts: [string, number][] = opts.negative
    ? [[stripped, 1.0]]
    : (() => {
        const { resIndexes, promptFlatList } = getMulticondPromptList([stripped]);
        return resIndexes[0].map(([i, w]) => [promptFlatList[i], w] as [string, number]);
      })();
  // Index the embeddings once for all texts of this prompt.
  const embeddings =
    opts.embeddings && !(opts.embeddings instanceof EmbeddingIndex)
      ? new EmbeddingIndex(opts.embeddings, opts.tokenizer)
      : opts.embeddings;
  const lines = new Map<string, { chunks: PromptChunk<E>[]; tokenCount: number }>();
  const encode = (text: string) => {
    let hit = lines.get(text);
    if (!hit) lines.set(text, (hit = tokenizeLine(text, opts.tokenizer, embeddings, opts)));
    return hit;
  };
  return {
    networks,
    parts: parts.map(([text, weight]) => ({
      weight,
      schedule: getPromptSchedule(text, opts.steps, opts.hiresSteps, opts.useOldScheduling).map(
        ([endAtStep, t]) => {
          const { chunks, tokenCount } = encode(t);
          return { endAtStep, text: t, chunks, tokenCount };
        },
      ),
    })),
  };
}

/**
 * The entry of a schedule in force at `step`: A1111's `reconstruct_cond_batch` (first entry with
 * step <= end, the first entry past the last one). The same function the CFG denoiser picks with.
 */
export const entryAtStep = condAtStep;
