/**
 * A1111's prompt chunking for CLIP (`sd_hijack_clip.py` `tokenize_line`): a prompt line becomes
 * 77-token chunks `[BOS] + 75 tokens + [EOS]`, padded with EOS, each token with its attention weight.
 * `BREAK` closes the chunk; a chunk that overflows is closed after a comma found within the last
 * `commaPaddingBacktrack` tokens; textual-inversion embeddings found by name take their vector count
 * of positions (token id 0 in those slots, the vectors recorded in `fixes`).
 */
import { parsePromptAttention, type PromptFragment } from './attention.js';

/** What chunking needs of an embedding; the loader's richer object (vectors, hashes) can be passed as is. */
export interface ChunkEmbedding {
  readonly name: string;
  /** Number of vectors (token positions it occupies). */
  readonly vectors: number;
}

/** Embeddings by name (the name is what a prompt writes). */
export type EmbeddingLookup<E extends ChunkEmbedding = ChunkEmbedding> =
  ReadonlyMap<string, E> | Readonly<Record<string, E>>;

/** The tokenizer calls chunking needs (ClipTokenizer has them). */
export interface ChunkTokenizer {
  encode(text: string): number[];
  readonly bos: number;
  readonly eos: number;
  tokenId(token: string): number | undefined;
}

export interface ChunkFix<E extends ChunkEmbedding = ChunkEmbedding> {
  /** Position in the chunk *before* BOS is prepended: the vectors go to `offset + 1 ...`. */
  offset: number;
  embedding: E;
}

export interface PromptChunk<E extends ChunkEmbedding = ChunkEmbedding> {
  /** 77 ids: BOS, 75 tokens (embedding slots are 0), EOS padding. */
  tokens: number[];
  /** 77 weights; 1.0 on BOS/EOS/padding. */
  multipliers: number[];
  fixes: ChunkFix<E>[];
}

/** A1111's emphasis modes; "None" also turns off attention parsing (brackets are plain text). */
export type EmphasisMode = 'Original' | 'No norm' | 'Ignore' | 'None';

export interface ChunkOptions {
  /** A1111 setting `comma_padding_backtrack` (default 20; 0 turns it off). */
  commaPaddingBacktrack?: number;
  emphasis?: EmphasisMode;
  /** Tokens per chunk between BOS and EOS (75 for CLIP's 77-token context). */
  chunkLength?: number;
}

/**
 * Embeddings indexed by the first token id of their name, longest match first, as A1111's
 * `EmbeddingDatabase` does; build once per tokenizer and embedding set.
 */
export class EmbeddingIndex<E extends ChunkEmbedding = ChunkEmbedding> {
  private readonly byFirstId = new Map<number, { ids: number[]; embedding: E }[]>();

  constructor(embeddings: EmbeddingLookup<E>, tokenizer: Pick<ChunkTokenizer, 'encode'>) {
    const entries =
      embeddings instanceof Map ? [...embeddings] : Object.entries(embeddings as Record<string, E>);
    for (const [name, embedding] of entries) {
      const ids = tokenizer.encode(name);
      // A name that tokenizes to nothing can never be written in a prompt.
      if (ids.length === 0 || !(embedding.vectors >= 1)) continue;
      const list = this.byFirstId.get(ids[0]) ?? [];
      list.push({ ids, embedding });
      // Stable sort: among equal lengths, the first registered wins (Python's sorted(reverse=True)).
      list.sort((a, b) => b.ids.length - a.ids.length);
      this.byFirstId.set(ids[0], list);
    }
  }

  /** The embedding whose name's tokens start at `tokens[offset]`, and how many tokens the name spans. */
  findAt(tokens: readonly number[], offset: number): { embedding: E; length: number } | undefined {
    const candidates = this.byFirstId.get(tokens[offset]);
    if (!candidates) return undefined;
    for (const { ids, embedding } of candidates) {
      if (offset + ids.length > tokens.length) continue;
      let match = true;
      for (let i = 1; i < ids.length && match; i++) match = tokens[offset + i] === ids[i];
      if (match) return { embedding, length: ids.length };
    }
    return undefined;
  }
}

export interface TokenizedLine<E extends ChunkEmbedding = ChunkEmbedding> {
  chunks: PromptChunk<E>[];
  /** A1111's token count: 75 per closed chunk plus the real length of the last one. */
  tokenCount: number;
  /** The attention fragments the line was split into. */
  parsed: PromptFragment[];
}

/** Split one prompt line into CLIP chunks with weights and embedding fixes (A1111 `tokenize_line`). */
export function tokenizeLine<E extends ChunkEmbedding = ChunkEmbedding>(
  line: string,
  tokenizer: ChunkTokenizer,
  embeddings?: EmbeddingLookup<E> | EmbeddingIndex<E> | null,
  options: ChunkOptions = {},
): TokenizedLine<E> {
  const backtrack = options.commaPaddingBacktrack ?? 20;
  const chunkLength = options.chunkLength ?? 75;
  const emphasis = options.emphasis ?? 'Original';
  const index = !embeddings
    ? undefined
    : embeddings instanceof EmbeddingIndex
      ? embeddings
      : new EmbeddingIndex(embeddings, tokenizer);
  const comma = tokenizer.tokenId(',</w>');
  const { bos, eos } = tokenizer;

  const parsed: PromptFragment[] = emphasis === 'None' ? [[line, 1.0]] : parsePromptAttention(line);
  const chunks: PromptChunk<E>[] = [];
  let chunk: PromptChunk<E> = { tokens: [], multipliers: [], fixes: [] };
  let tokenCount = 0;
  let lastComma = -1;

  const nextChunk = (isLast = false) => {
    tokenCount += isLast ? chunk.tokens.length : chunkLength;
    const toAdd = chunkLength - chunk.tokens.length;
    for (let i = 0; i < toAdd; i++) {
      chunk.tokens.push(eos);
      chunk.multipliers.push(1.0);
    }
    chunk.tokens = [bos, ...chunk.tokens, eos];
    chunk.multipliers = [1.0, ...chunk.multipliers, 1.0];
    lastComma = -1;
    chunks.push(chunk);
    chunk = { tokens: [], multipliers: [], fixes: [] };
  };

  for (const [text, weight] of parsed) {
    if (text === 'BREAK' && weight === -1) {
      nextChunk();
      continue;
    }
    const tokens = tokenizer.encode(text);
    let position = 0;
    while (position < tokens.length) {
      const token = tokens[position];
      if (token === comma) {
        lastComma = chunk.tokens.length;
      } else if (
        backtrack !== 0 &&
        chunk.tokens.length === chunkLength &&
        lastComma !== -1 &&
        chunk.tokens.length - lastComma <= backtrack
      ) {
        // Move the words after the last comma into the next chunk instead of splitting the phrase.
        const breakAt = lastComma + 1;
        const relocTokens = chunk.tokens.slice(breakAt);
        const relocMults = chunk.multipliers.slice(breakAt);
        // As in A1111 the fixes stay with the closed chunk, even those of an embedding whose slots move.
        chunk.tokens = chunk.tokens.slice(0, breakAt);
        chunk.multipliers = chunk.multipliers.slice(0, breakAt);
        nextChunk();
        chunk.tokens = relocTokens;
        chunk.multipliers = relocMults;
      }
      if (chunk.tokens.length === chunkLength) nextChunk();

      const found = index?.findAt(tokens, position);
      if (!found) {
        chunk.tokens.push(token);
        chunk.multipliers.push(weight);
        position += 1;
        continue;
      }
      const embLen = Math.trunc(found.embedding.vectors);
      if (chunk.tokens.length + embLen > chunkLength) nextChunk();
      chunk.fixes.push({ offset: chunk.tokens.length, embedding: found.embedding });
      for (let i = 0; i < embLen; i++) {
        chunk.tokens.push(0);
        chunk.multipliers.push(weight);
      }
      position += found.length;
    }
  }
  if (chunk.tokens.length > 0 || chunks.length === 0) nextChunk(true);
  return { chunks, tokenCount, parsed };
}

/**
 * SD 2.x / OpenCLIP pads with a different id than EOS: everything after the first EOS of a chunk
 * becomes `padId` (A1111 `process_tokens`). SD 1.x pads with EOS and needs no change.
 */
export function padAfterFirstEos(tokens: readonly number[], eos: number, padId: number): number[] {
  const first = tokens.indexOf(eos);
  if (first < 0 || eos === padId) return tokens.slice();
  return tokens.map((t, i) => (i > first ? padId : t));
}
