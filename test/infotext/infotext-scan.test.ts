import { describe, expect, it } from 'vitest';
import { findParamsLinear, RE_PARAM } from '../../src/infotext/infotext-scan.js';
import { PY_SPACE, pyStrip } from '../../src/prompt/pychars.js';
import { parseInfotext } from '../../src/infotext/infotext.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ALPHABET = [
  'a',
  'B',
  '1',
  '_',
  ' ',
  '-',
  '/',
  ':',
  ',',
  '"',
  '\\',
  '\n',
  '\t',
  '\u3000',
  'я',
  '𝒜',
  '٣',
  '.',
  'x',
];

/** Python's `str.strip()` as the obvious (quadratic) regex: the reference for pyStrip. */
const RE_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'gu');

describe('linear scanners equal the regexes they replace', () => {
  it('on 5000 random lines of the characters that matter', () => {
    const r = rng(7);
    for (let n = 0; n < 5000; n++) {
      const len = Math.floor(r() * 40);
      let s = '';
      for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
      const expected = [...s.matchAll(RE_PARAM)].map((m) => [m[1], m[2]]);
      expect(findParamsLinear(s), JSON.stringify(s)).toEqual(expected);
      expect(pyStrip(s), JSON.stringify(s)).toBe(s.replace(RE_STRIP, ''));
    }
  });
});

describe('hostile sizes stay fast', () => {
  const big = [
    'a '.repeat(100_000),
    'p\nA: "' + 'x'.repeat(200_000) + ', B: 1, C: 2',
    'p\n' + 'k: "\\", '.repeat(20_000),
    'a' + ' '.repeat(200_000) + 'b',
    'p\n' + 'Key: v, '.repeat(20_000),
    '(a'.repeat(50_000),
  ];
  for (const text of big) {
    it(`${text.length} chars`, () => {
      const t = performance.now();
      parseInfotext(text);
      expect(performance.now() - t).toBeLessThan(5000);
    });
  }
});
