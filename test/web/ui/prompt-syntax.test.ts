import { describe, expect, it } from 'vitest';
import {
  applySuggestion,
  completionContext,
  insertAt,
  removeFromPrompt,
  suggestions,
} from '../../../web/src/autocomplete.ts';
import { highlightPrompt, type Piece } from '../../../web/src/prompt-syntax.ts';
import { applyStyleTexts } from '../../../web/src/style-text.ts';

const kinds = (pieces: Piece[]) => pieces.filter((p) => p.kind !== 'text').map((p) => [p.kind, p.text]);

describe('prompt syntax highlighting', () => {
  it('gives back the prompt exactly, whatever it holds (the overlay lines up with the textarea)', () => {
    for (const p of [
      '',
      'a (red:1.2) cube, [from:to:0.5] <lora:x:0.8> AND b :1.1 BREAK c',
      '((((unclosed [[ \\( esc \\) <lora:broken',
      'line one\n\nline two\t(tab:0.9)\n',
      'ünïcödé (字:1.1) [a|b|c] <hypernet:h:1>',
    ])
      expect(
        highlightPrompt(p)
          .map((x) => x.text)
          .join(''),
      ).toBe(p);
  });

  it('marks emphasis, weights, editing separators, AND, BREAK, tags, embeddings and escapes', () => {
    const names = {
      embeddingNames: new Set(['easyneg']),
      networks: new Map([['lora', new Set(['known'])]]),
    };
    expect(
      kinds(
        highlightPrompt(
          '(cat:1.2) [a:b:5] EasyNeg <lora:known:1> <lora:gone:1> x AND y:0.5 AND z BREAK \\(',
          names,
        ),
      ),
    ).toEqual([
      ['paren', '('],
      ['weight', ':1.2'],
      ['paren', ')'],
      ['bracket', '['],
      ['sep', ':'],
      ['weight', ':5'],
      ['bracket', ']'],
      ['embedding', 'EasyNeg'],
      ['network', '<lora:known:1>'],
      ['network-unknown', '<lora:gone:1>'],
      ['and', 'AND'],
      ['weight', ':0.5'],
      ['and', 'AND'],
      ['break', 'BREAK'],
      ['escape', '\\('],
    ]);
  });

  it('AND and BREAK only as whole upper-case words; nesting depth alternates colours', () => {
    expect(kinds(highlightPrompt('HANDS and BREAKING'))).toEqual([]);
    expect(highlightPrompt('((a))').map((p) => p.depth)).toEqual([0, 1, undefined, 1, 0]);
  });
});

describe('autocomplete', () => {
  const names = {
    loras: ['detail_tweaker', 'add_detail', 'style'],
    hypernetworks: ['anime_hn'],
    embeddings: ['easynegative', 'bad-hands-5'],
  };

  it('after <lora: offers LoRA files, prefix matches first, and inserts <lora:name:1>', () => {
    const text = 'a cat <lora:det';
    const ctx = completionContext(text, text.length)!;
    expect(ctx).toMatchObject({ kind: 'lora', query: 'det', start: 6 });
    const s = suggestions(ctx, names);
    expect(s.map((x) => x.label)).toEqual(['detail_tweaker', 'add_detail']);
    expect(applySuggestion(text, ctx, s[0])).toEqual({ text: 'a cat <lora:detail_tweaker:1>', cursor: 29 });
  });

  it('a bare < offers LoRAs and hypernetworks; an already closed tag is replaced whole', () => {
    const ctx = completionContext('<an', 3)!;
    expect(suggestions(ctx, names).map((x) => x.insert)).toEqual(['<hypernet:anime_hn:1>']);
    const text = 'x <lora:sty:0.5> y';
    const c2 = completionContext(text, 11)!;
    const s = suggestions(c2, names);
    expect(applySuggestion(text, c2, s[0]).text).toBe('x <lora:style:1> y');
  });

  it('a bare word of two letters or more offers embeddings; not inside weights; a finished name offers nothing', () => {
    const text = 'photo, easy';
    const ctx = completionContext(text, text.length)!;
    expect(suggestions(ctx, names).map((x) => x.insert)).toEqual(['easynegative']);
    expect(completionContext('e', 1)).toBeNull();
    expect(completionContext('(cat:12', 7)).toBeNull();
    const done = completionContext('easynegative', 12)!;
    expect(suggestions(done, names)).toEqual([]);
    expect(suggestions(completionContext('hands', 5)!, names).map((x) => x.label)).toEqual(['bad-hands-5']);
  });

  it('cards insert at the cursor, separated by a comma where needed', () => {
    expect(insertAt('', 0, '<lora:a:1>')).toEqual({ text: '<lora:a:1>', cursor: 10 });
    expect(insertAt('a cat', 5, 'emb')).toEqual({ text: 'a cat, emb', cursor: 10 });
    expect(insertAt('a cat, ', 7, 'emb').text).toBe('a cat, emb');
    expect(insertAt('a cat', 0, 'emb')).toEqual({ text: 'emb, a cat', cursor: 5 });
  });
});

describe('a card clicked again takes its network out', () => {
  it('a tag with any multiplier, or an embedding as a whole word, with its comma', () => {
    expect(removeFromPrompt('a lamp, <lora:brass:0.7>', '<lora:brass:1>')).toBe('a lamp');
    expect(removeFromPrompt('<lora:brass:1>, a lamp', '<lora:brass:1>')).toBe('a lamp');
    expect(removeFromPrompt('a <lora:brass_x:1>', '<lora:brass:1>')).toBeNull();
    expect(removeFromPrompt('photo, easyneg, sharp', 'easyneg')).toBe('photo, sharp');
    expect(removeFromPrompt('photo, easynegative', 'easyneg')).toBeNull();
    // Names are text, not patterns.
    expect(removeFromPrompt('a (b.c) d', 'b.c')).toBe('a () d');
    expect(removeFromPrompt('a (bxc) d', 'b.c')).toBeNull();
  });
});

describe('apply styles', () => {
  it('replaces {prompt} or appends after ", ", in the order chosen, unknown names ignored', () => {
    const styles = [
      { name: 'frame', prompt: 'masterpiece, {prompt}, detailed', negative_prompt: 'lowres' },
      { name: 'tail', prompt: 'film grain', negative_prompt: null },
    ];
    expect(applyStyleTexts('a cat', 'ugly', ['frame', 'tail', 'missing'], styles)).toEqual({
      prompt: 'masterpiece, a cat, detailed, film grain',
      negative: 'ugly, lowres',
    });
  });
});
