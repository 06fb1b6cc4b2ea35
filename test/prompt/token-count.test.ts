import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { EmphasisMode } from '../../src/prompt/chunking.js';
import { parseExtraNetworks } from '../../src/prompt/extra-networks.js';
import { getMulticondPromptList } from '../../src/prompt/multicond.js';
import { getPromptSchedule } from '../../src/prompt/schedules.js';
import { countPromptTokens } from '../../src/prompt/token-count.js';
import { ClipTokenizer } from '../../src/prompt/tokenizer.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';

const golden = JSON.parse(readFileSync(goldenPath('prompt', 'tokenize.json'), 'utf8')) as {
  embeddings: Record<string, { vectors: number }>;
  groups: {
    options: { comma_padding_backtrack: number; emphasis: EmphasisMode };
    cases: { prompt: string; token_count: number; chunks: { tokens: number[] }[] }[];
  }[];
};
const embeddings = new Map(
  Object.entries(golden.embeddings).map(([name, e]) => [name, { name, vectors: e.vectors }]),
);

let tok: ClipTokenizer;
beforeAll(async () => {
  tok = await ClipTokenizer.load(clipVocabPath());
});

describe('token counter (A1111 update_token_counter)', () => {
  // A golden line that the counter's earlier steps (tags, AND, schedules) leave as it is counts as
  // tokenize_line counted it, and shows as N/ceil(N/75)·75.
  for (const [gi, group] of golden.groups.entries()) {
    it(`counts every plain case of golden/prompt/tokenize.json group ${gi} as tokenize_line does`, () => {
      let checked = 0;
      for (const c of group.cases) {
        const plain =
          parseExtraNetworks(c.prompt).prompt === c.prompt &&
          getMulticondPromptList([c.prompt]).promptFlatList.length === 1 &&
          getMulticondPromptList([c.prompt]).promptFlatList[0] === c.prompt &&
          JSON.stringify(getPromptSchedule(c.prompt, 20).map(([, t]) => t)) === JSON.stringify([c.prompt]);
        if (!plain) continue;
        const got = countPromptTokens(c.prompt, {
          tokenizer: tok,
          embeddings,
          commaPaddingBacktrack: group.options.comma_padding_backtrack,
          emphasis: group.options.emphasis,
        });
        expect(got.tokenCount, c.prompt).toBe(c.token_count);
        expect(got.maxLength, c.prompt).toBe(Math.ceil(Math.max(c.token_count, 1) / 75) * 75);
        expect(got.chunks.length, c.prompt).toBe(c.chunks.length);
        checked++;
      }
      expect(checked).toBeGreaterThan(0);
    });
  }

  const count = (p: string, o: { negative?: boolean; steps?: number } = {}) =>
    countPromptTokens(p, { tokenizer: tok, embeddings, ...o });

  it('leaves extra-network tags out, in the negative prompt too', () => {
    expect(count('<lora:some_lora:0.8> a red cube').tokenCount).toBe(count(' a red cube').tokenCount);
    expect(count('a red cube <hypernet:h:1>', { negative: true }).tokenCount).toBe(
      count('a red cube ', { negative: true }).tokenCount,
    );
  });

  it('counts the longest AND part of a positive prompt; a negative prompt is not split', () => {
    const long = 'a very long and detailed description of a castle';
    expect(count(`cat AND ${long}`).tokenCount).toBe(tok.encode(long).length);
    expect(count(`cat AND ${long}`, { negative: true }).tokenCount).toBe(
      tok.encode(`cat AND ${long}`).length,
    );
  });

  it('counts the longest text of a [from:to:when] schedule at the given steps', () => {
    const p = '[cat:a big fluffy orange cat with green eyes:5] on a mat';
    const to = tok.encode('a big fluffy orange cat with green eyes on a mat').length;
    expect(count(p, { steps: 20 }).tokenCount).toBe(to);
  });

  it('BREAK closes a chunk: 75 for it plus the next chunk, shown out of 150; per chunk the real tokens', () => {
    const r = count('a red cube BREAK on a table');
    expect(r.tokenCount).toBe(75 + tok.encode('on a table').length);
    expect(r.maxLength).toBe(150);
    expect(r.chunks).toEqual([tok.encode('a red cube').length, tok.encode('on a table').length]);
  });

  it('an embedding takes its vector count; emphasis brackets take none', () => {
    const [name, e] = [...embeddings].sort((a, b) => b[1].vectors - a[1].vectors)[0];
    expect(count(`${name} cat`).tokenCount).toBe(e.vectors + tok.encode('cat').length);
    expect(count('((cat:1.3)), [dog]').tokenCount).toBe(tok.encode('cat, dog').length);
  });

  it('an empty prompt is 0/75', () => {
    expect(count('')).toMatchObject({ tokenCount: 0, maxLength: 75, chunks: [0] });
  });
});
