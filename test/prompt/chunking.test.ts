import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EmbeddingIndex,
  padAfterFirstEos,
  tokenizeLine,
  type EmphasisMode,
} from '../../src/prompt/chunking.js';
import { ClipTokenizer } from '../../src/prompt/tokenizer.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';

interface ChunkCase {
  prompt: string;
  parsed: [string, number][];
  fragment_token_ids: number[][];
  token_count: number;
  chunks: { tokens: number[]; multipliers: number[]; fixes: [number, string][] }[];
}
const golden = JSON.parse(readFileSync(goldenPath('prompt', 'tokenize.json'), 'utf8')) as {
  tokenizer: { bos: number; eos: number; pad: number; comma_token: number };
  embeddings: Record<string, { vectors: number; token_ids: number[] }>;
  groups: { options: { comma_padding_backtrack: number; emphasis: EmphasisMode }; cases: ChunkCase[] }[];
};
const embeddings = new Map(
  Object.entries(golden.embeddings).map(([name, e]) => [name, { name, vectors: e.vectors }]),
);

let tok: ClipTokenizer;
beforeAll(async () => {
  tok = await ClipTokenizer.load(clipVocabPath());
});

describe('chunking conformance (golden/prompt/tokenize.json)', () => {
  it('uses the same special tokens and embedding-name ids', () => {
    expect(tok.bos).toBe(golden.tokenizer.bos);
    expect(tok.eos).toBe(golden.tokenizer.eos);
    expect(tok.tokenId(',</w>')).toBe(golden.tokenizer.comma_token);
    for (const [name, e] of Object.entries(golden.embeddings)) expect(tok.encode(name)).toEqual(e.token_ids);
  });

  for (const [gi, group] of golden.groups.entries()) {
    it(`gives A1111 chunks for every case of group ${gi} (${JSON.stringify(group.options)})`, () => {
      const index = new EmbeddingIndex(embeddings, tok);
      const failures: string[] = [];
      for (const c of group.cases) {
        const got = tokenizeLine(c.prompt, tok, index, {
          commaPaddingBacktrack: group.options.comma_padding_backtrack,
          emphasis: group.options.emphasis,
        });
        const fragmentIds = got.parsed.map(([text]) => tok.encode(text));
        const chunks = got.chunks.map((ch) => ({
          tokens: ch.tokens,
          multipliers: ch.multipliers,
          fixes: ch.fixes.map((f) => [f.offset, f.embedding.name]),
        }));
        const ok =
          JSON.stringify(got.parsed) === JSON.stringify(c.parsed) &&
          JSON.stringify(fragmentIds) === JSON.stringify(c.fragment_token_ids) &&
          got.tokenCount === c.token_count &&
          chunks.length === c.chunks.length &&
          chunks.every(
            (ch, i) =>
              JSON.stringify(ch.tokens) === JSON.stringify(c.chunks[i].tokens) &&
              ch.multipliers.every((m, j) => m === c.chunks[i].multipliers[j]) &&
              ch.multipliers.length === c.chunks[i].multipliers.length &&
              JSON.stringify(ch.fixes) === JSON.stringify(c.chunks[i].fixes),
          );
        if (!ok) failures.push(c.prompt.slice(0, 80));
      }
      expect(failures).toEqual([]);
    });
  }
});

describe('chunking behaviour', () => {
  it('frames every chunk as BOS + 75 + EOS with weights 1 on the frame, for a 1000-token prompt', () => {
    const line = Array.from({ length: 400 }, (_, i) => `(word${i}:1.2), thing`).join(' ');
    const { chunks, tokenCount } = tokenizeLine(line, tok, null);
    expect(chunks.length).toBeGreaterThan(13);
    for (const ch of chunks) {
      expect(ch.tokens).toHaveLength(77);
      expect(ch.multipliers).toHaveLength(77);
      expect(ch.tokens[0]).toBe(tok.bos);
      expect(ch.tokens[76]).toBe(tok.eos);
      expect(ch.multipliers[0]).toBe(1);
      expect(ch.multipliers[76]).toBe(1);
    }
    expect(tokenCount).toBeGreaterThan(75 * (chunks.length - 1));
    expect(tokenCount).toBeLessThanOrEqual(75 * chunks.length);
  });

  it('gives an empty prompt one chunk of padding', () => {
    const { chunks, tokenCount } = tokenizeLine('', tok, null);
    expect(tokenCount).toBe(0);
    expect(chunks).toHaveLength(1);
    expect(chunks[0].tokens).toEqual([tok.bos, ...Array(76).fill(tok.eos)]);
  });

  it('matches the longest embedding name first', () => {
    const embs = new Map([
      ['bad', { name: 'bad', vectors: 1 }],
      ['badhands', { name: 'badhands', vectors: 3 }],
    ]);
    const { chunks } = tokenizeLine('a badhands b', tok, embs);
    expect(chunks[0].fixes.map((f) => [f.offset, f.embedding.name])).toEqual([[1, 'badhands']]);
    expect(chunks[0].tokens.slice(2, 5)).toEqual([0, 0, 0]);
  });

  it('pads SD2-style after the first EOS', () => {
    const tokens = [tok.bos, 320, tok.eos, tok.eos, tok.eos];
    expect(padAfterFirstEos(tokens, tok.eos, 0)).toEqual([tok.bos, 320, tok.eos, 0, 0]);
    expect(padAfterFirstEos(tokens, tok.eos, tok.eos)).toEqual(tokens);
  });
});
