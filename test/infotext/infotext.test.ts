import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatInfotext, parseInfotext, quoteInfotextValue } from '../../src/infotext/infotext.js';
import { parseStylesCsv } from '../../src/prompt/styles.js';
import { goldenPath } from '../helpers/golden.js';

interface Case {
  id: number | string;
  infotext: string;
  result: Record<string, unknown>;
}
interface CaseFile {
  cases: Case[];
  styles_csv?: string;
}

function load(name: string): CaseFile {
  return JSON.parse(readFileSync(goldenPath('infotext', name), 'utf8')) as CaseFile;
}

describe('parseInfotext equals A1111 parse_generation_parameters', () => {
  const plain = load('infotexts.json');
  it('golden file has cases', () => expect(plain.cases.length).toBeGreaterThan(0));
  for (const c of plain.cases) {
    it(`infotexts.json case ${c.id}`, () => {
      // toStrictEqual: value types matter (A1111's defaults are ints/bools, parsed values strings).
      expect(parseInfotext(c.infotext)).toStrictEqual(c.result);
    });
  }

  const withStyles = load('infotexts_with_styles.json');
  const styles = parseStylesCsv(
    readFileSync(goldenPath('infotext', withStyles.styles_csv ?? 'styles.csv'), 'utf8'),
  );
  for (const c of withStyles.cases) {
    it(`infotexts_with_styles.json case ${c.id}`, () => {
      expect(parseInfotext(c.infotext, { styles })).toStrictEqual(c.result);
    });
  }
});

describe('formatInfotext', () => {
  it('lays out prompt, negative prompt and parameters as create_infotext', () => {
    const text = formatInfotext({
      prompt: 'a cat',
      negativePrompt: 'blurry',
      params: {
        Steps: 20,
        Sampler: 'Euler a',
        'CFG scale': 7,
        Seed: 1,
        'Face restoration': null,
        Size: '512x512',
        Tiling: 'Tiling',
      },
    });
    expect(text).toBe(
      'a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Tiling',
    );
  });
  it('leaves out an empty negative prompt and strips the result', () => {
    expect(formatInfotext({ prompt: '  p ', negativePrompt: '', params: { Steps: 1 } })).toBe('p \nSteps: 1');
    expect(formatInfotext({ prompt: '', params: {} })).toBe('');
  });
  it('quotes values with commas, colons or newlines as JSON, non-ASCII kept', () => {
    expect(quoteInfotextValue('a, b')).toBe('"a, b"');
    expect(quoteInfotextValue('x: "y"')).toBe('"x: \\"y\\""');
    expect(quoteInfotextValue('line\nnext')).toBe('"line\\nnext"');
    expect(quoteInfotextValue('Модель, с запятой')).toBe('"Модель, с запятой"');
    expect(quoteInfotextValue('plain "quotes"')).toBe('plain "quotes"');
    expect(quoteInfotextValue(true)).toBe('True');
    expect(quoteInfotextValue(0.5)).toBe('0.5');
  });
});

/** A small deterministic PRNG so the property test is reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('format then parse round-trips every field (property)', () => {
  const r = rng(12345);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const keyWords = [
    'Alpha',
    'Beta key',
    'Gamma-ray',
    'Delta/x',
    'Ключ',
    '鍵',
    'Extra_1',
    'Lora hashes',
    'Seed',
  ];
  const valueAtoms = [
    'x',
    '1',
    '0.5',
    'a, b',
    'k: v',
    'he said "hi"',
    'back\\slash',
    'Кот',
    '🐱',
    'line\nbreak',
    '[a:b:3]',
    'é',
  ];
  const promptAtoms = ['a cat', '(red:1.2)', 'Кошка', '日本', 'with, commas', 'x: y', '🐱', '[dog]'];
  for (let n = 0; n < 300; n++) {
    const params: Record<string, string | number | boolean> = {};
    const count = 3 + Math.floor(r() * 6);
    for (let i = 0; i < count; i++) {
      let v = '';
      const parts = 1 + Math.floor(r() * 3);
      for (let j = 0; j < parts; j++) v += (j ? ' ' : '') + pick(valueAtoms);
      params[`${pick(keyWords)} ${i}`] = r() < 0.2 ? Math.floor(r() * 1000) : r() < 0.1 ? r() < 0.5 : v;
    }
    params['Size'] = `${64 * (1 + Math.floor(r() * 20))}x${64 * (1 + Math.floor(r() * 20))}`;
    const promptLines = 1 + Math.floor(r() * 3);
    const prompt = Array.from(
      { length: promptLines },
      () => `${pick(promptAtoms)} ${pick(promptAtoms)}`,
    ).join('\n');
    const negativePrompt = r() < 0.5 ? '' : `${pick(promptAtoms)} ${pick(promptAtoms)}`;
    const text = formatInfotext({ prompt, negativePrompt, params });
    it(`random infotext ${n}`, () => {
      const parsed = parseInfotext(text);
      expect(parsed['Prompt']).toBe(prompt);
      expect(parsed['Negative prompt']).toBe(negativePrompt);
      const [w, h] = (params['Size'] as string).split('x');
      expect([parsed['Size-1'], parsed['Size-2']]).toEqual([w, h]);
      for (const [k, v] of Object.entries(params)) {
        if (k === 'Size') continue;
        expect(parsed[k], `${k} in ${JSON.stringify(text)}`).toBe(
          typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v),
        );
      }
    });
  }
});

describe('hostile and odd infotexts never throw', () => {
  const odd = [
    '',
    '\n\n\n',
    'Steps:',
    'a: "unterminated, b: 1, c: 2',
    '__proto__: x, constructor: y, toString: z',
    'First pass size: 0x0, Size: 0x0, Steps: 1',
    'First pass size-1: abc, First pass size-2: 5, x: 1',
    'p\nSteps: 1, Sampler: a, Version: ' + 'v'.repeat(10000),
    '('.repeat(5000) + ')'.repeat(3),
    'a (b:1.2.3) c\nSteps: 1, Sampler: x, CFG scale: 7',
    '"'.repeat(10000) + ': 1, a: 2, b: 3',
  ];
  for (const t of odd) {
    it(JSON.stringify(t.slice(0, 40)), () => {
      const r = parseInfotext(t);
      expect(typeof r['Prompt']).toBe('string');
      expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
    });
  }
  it('keeps __proto__ as an ordinary key', () => {
    const r = parseInfotext('p\n__proto__: x, constructor: y, toString: z');
    expect(Object.prototype.hasOwnProperty.call(r, '__proto__')).toBe(true);
    expect(r['toString']).toBe('z');
  });
});

describe('Emphasis is filled in only when a weight other than 1 is used (parse_prompt_attention)', () => {
  const cases: [string, boolean][] = [
    ['a (b) c', true],
    ['([a])', false], // (1 / 1.1) * 1.1 is exactly 1
    ['\\(a\\)', false],
    ['a BREAK b', false],
    ['(BREAK)', true], // the empty runs around BREAK get 1.1
    ['(BRE)(AK)', false], // merged into a run that reads "BREAK"
    ['a (b:1.0)', false],
    ['x [y', true], // unbalanced brackets still weigh
  ];
  for (const [prompt, uses] of cases) {
    it(JSON.stringify(prompt), () => {
      expect(parseInfotext(prompt)['Emphasis']).toBe(uses ? 'Original' : undefined);
    });
  }
});

describe('numbers are written as Python writes them', () => {
  it('ints as ints, other numbers with repr(float)', () => {
    expect(
      formatInfotext({ prompt: 'p', params: { a: 20, b: 0.5, c: 1e-7, d: 4294967295, e: 1e16 + 0.5 } }),
    ).toBe('p\na: 20, b: 0.5, c: 1e-07, d: 4294967295, e: 1e+16');
  });
});
