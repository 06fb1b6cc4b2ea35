/**
 * The prompt box's token counter, counted as A1111's `update_token_counter` counts it: extra-network
 * tags removed (from the negative prompt too), the positive prompt split on AND, every text of its
 * prompt-editing schedule (`[a:b:n]` at the given step count) chunked the way the pipeline chunks
 * it (emphasis, BREAK, comma back-tracking, embeddings taking their vector count), and the longest
 * of those texts reported: `tokenCount / maxLength`, maxLength a multiple of 75.
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
import { parseExtraNetworks } from './extra-networks.js';
import { getMulticondPromptList } from './multicond.js';
import { getPromptSchedule } from './schedules.js';

export interface TokenCountOptions<E extends ChunkEmbedding = ChunkEmbedding> extends ChunkOptions {
  tokenizer: ChunkTokenizer;
  embeddings?: EmbeddingLookup<E> | EmbeddingIndex<E> | null;
  /** Sampling steps: where `[a:b:n]` switches (A1111 passes the steps slider). Default 20. */
  steps?: number;
  /** A negative prompt: not split on AND (A1111 `is_positive=False`). */
  negative?: boolean;
}

export interface TokenCount {
  /** A1111's count: 75 per closed chunk plus the real tokens of the last one. */
  tokenCount: number;
  /** The counter's denominator: the chunks that count take, ceil(max(count, 1) / 75) · 75. */
  maxLength: number;
  /** Real tokens (embedding slots included) in each chunk of the text counted. */
  chunks: number[];
  /** The text that was counted (the longest one after tags, AND and schedules). */
  text: string;
}

/** Tokens between BOS and the EOS padding of a framed chunk. */
function chunkLength(chunk: PromptChunk, eos: number): number {
  const end = chunk.tokens.indexOf(eos, 1);
  return (end < 0 ? chunk.tokens.length : end) - 1;
}

export function countPromptTokens<E extends ChunkEmbedding = ChunkEmbedding>(
  prompt: string,
  opts: TokenCountOptions<E>,
): TokenCount {
  const steps = opts.steps ?? 20;
  const perChunk = opts.chunkLength ?? 75;
  const { prompt: stripped } = parseExtraNetworks(prompt);
  const flat = opts.negative ? [stripped] : getMulticondPromptList([stripped]).promptFlatList;
  const texts = flat.flatMap((t) => getPromptSchedule(t, steps).map(([, text]) => text));
  const index =
    opts.embeddings && !(opts.embeddings instanceof EmbeddingIndex)
      ? new EmbeddingIndex(opts.embeddings, opts.tokenizer)
      : opts.embeddings;
  let best: TokenCount | null = null;
  const seen = new Set<string>();
  for (const text of texts.length ? texts : [stripped]) {
    if (seen.has(text)) continue;
    seen.add(text);
    const line = tokenizeLine(text, opts.tokenizer, index, opts);
    // Python's max() keeps the first of equal counts.
    if (best && line.tokenCount <= best.tokenCount) continue;
    best = {
      tokenCount: line.tokenCount,
      maxLength: Math.ceil(Math.max(line.tokenCount, 1) / perChunk) * perChunk,
      chunks: line.chunks.map((c) => chunkLength(c, opts.tokenizer.eos)),
      text,
    };
  }
  return best!;
}
