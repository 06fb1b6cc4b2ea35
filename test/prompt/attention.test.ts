import { describe, expect, it } from 'vitest';
import { parsePromptAttention, splitBreak } from '../../src/prompt/attention.js';
import { PY_SPACE, PY_WORD, pyStrip } from '../../src/prompt/pychars.js';
import { referenceParsePromptAttention } from './attention-reference.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// Pieces that exercise every branch: brackets, weights (incl. zero, negative, huge, malformed),
// escapes, BREAK with and without word neighbours, Unicode words and spaces.
const PIECES = [
  '(',
  '(',
  ')',
  ')',
  '[',
  '[',
  ']',
  ']',
  '\\',
  '\\(',
  '\\]',
  ':',
  ':1.5)',
  ':0)',
  ':-0)',
  ': 2 )',
  ':1e308)',
  ':0.5)',
  ':1.2.3)',
  ':.)',
  'a',
  'cat',
  ' ',
  '  ',
  '\t',
  '\u3000',
  'BREAK',
  ' BREAK ',
  'xBREAK',
  'BREAK_',
  'BREAKBREAK',
  '𝒜',
  'é',
  '_',
  ',',
  '1',
  '.',
];

function randomPrompt(r: () => number): string {
  const n = Math.floor(r() * 30);
  let s = '';
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * PIECES.length)];
  return s;
}

/** Bit-identical: same texts, weights equal by Object.is (so -0 and NaN count too). */
function outcome(f: (t: string) => [string, number][], text: string): unknown {
  try {
    return f(text).map(([t, w]) => [t, Object.is(w, -0) ? '-0' : Number.isNaN(w) ? 'NaN' : w]);
  } catch (e) {
    return { error: (e as Error).name };
  }
}

describe('parsePromptAttention equals the literal port of A1111', () => {
  it('on 8000 random prompts, bit for bit', () => {
    const r = rng(11);
    for (let i = 0; i < 8000; i++) {
      const text = randomPrompt(r);
      expect(outcome(parsePromptAttention, text), JSON.stringify(text)).toEqual(
        outcome(referenceParsePromptAttention, text),
      );
    }
  });

  it('splitBreak equals re.split with the BREAK regex', () => {
    const re = new RegExp(`[${PY_SPACE}]*(?<![${PY_WORD}])BREAK(?![${PY_WORD}])[${PY_SPACE}]*`, 'u');
    const bits = ['BREAK', ' ', '\u3000', 'a', '𝒜', '_', ',', 'B', 'K'];
    const r = rng(5);
    for (let i = 0; i < 20000; i++) {
      let s = '';
      for (let n = Math.floor(r() * 12); n > 0; n--) s += bits[Math.floor(r() * bits.length)];
      expect(splitBreak(s), JSON.stringify(s)).toEqual(s.split(re));
    }
  });
});

describe('hostile prompts stay fast', () => {
  const cases: [string, string][] = [
    ['100k spaces', 'a' + ' '.repeat(100_000) + 'b'],
    ['spaces around BREAK', ' '.repeat(50_000) + 'BREAK' + ' '.repeat(50_000) + 'xBREAK'],
    ['20k unclosed (', '(a'.repeat(20_000)],
    ['5k unclosed [ and (', '[a(b'.repeat(5_000)],
    ['20k closed siblings', '(a)'.repeat(20_000) + '[b]'.repeat(20_000)],
    ['colons and digits', ':1.1.1 '.repeat(20_000)],
  ];
  for (const [name, text] of cases) {
    it(name, () => {
      const t = performance.now();
      parsePromptAttention(text);
      expect(performance.now() - t).toBeLessThan(1000);
    });
  }
});

describe('pyStrip', () => {
  it('is linear on a long interior whitespace run', () => {
    const s = 'a' + ' '.repeat(1_000_000) + 'b';
    const t = performance.now();
    expect(pyStrip(` ${s}\u3000\n`)).toBe(s);
    expect(performance.now() - t).toBeLessThan(1000);
  });
});
