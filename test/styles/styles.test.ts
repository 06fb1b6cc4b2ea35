import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  applyStyles,
  applyStylesToPrompt,
  cleanStyleText,
  collapseCommaRuns,
  extractStylesFromPrompt,
  formatStylesCsv,
  loadStyles,
  mergePrompts,
  parseCsv,
  parseStylesCsv,
  RE_MULTIPLE_COMMAS,
  saveStyles,
  type PromptStyle,
} from '../../src/prompt/styles.js';
import { goldenPath } from '../helpers/golden.js';

describe('styles.csv parsing', () => {
  it('reads the golden styles.csv (quoted fields, {prompt}, empty columns)', () => {
    const styles = parseStylesCsv(readFileSync(goldenPath('infotext', 'styles.csv'), 'utf8'));
    expect(styles.length).toBeGreaterThan(0);
    for (const s of styles) {
      expect(typeof s.name).toBe('string');
      expect(typeof s.prompt).toBe('string');
      expect(typeof s.negativePrompt).toBe('string');
    }
  });
  it('follows Python csv: doubled quotes, newlines in quotes, skipinitialspace, CRLF, BOM', () => {
    expect(parseCsv('a, "b ""q"" c","x\ny"\r\n\r\nd,e\n')).toEqual([
      ['a', 'b "q" c', 'x\ny'],
      ['d', 'e'],
    ]);
    const s = parseStylesCsv(
      '\ufeffname,prompt,negative_prompt\r\n"A","{prompt}, x","n"\r\n#c,z,z\r\nB\r\nA,y,\r\n',
    );
    expect(s).toEqual([
      { name: 'A', prompt: 'y', negativePrompt: '' },
      { name: 'B', prompt: '', negativePrompt: '' },
    ]);
  });
  it('reads the old "name,text" layout', () => {
    expect(parseStylesCsv('name,text\nold,some text\n')).toEqual([
      { name: 'old', prompt: 'some text', negativePrompt: '' },
    ]);
  });
  it('a header without "name" gives no styles rather than an exception', () => {
    expect(parseStylesCsv('garbage\n1,2,3\n')).toEqual([]);
    expect(parseStylesCsv('')).toEqual([]);
  });
});

describe('applying and extracting styles', () => {
  const styles: PromptStyle[] = [
    { name: 'Quality', prompt: 'masterpiece, best quality, {prompt}', negativePrompt: 'lowres' },
    { name: 'Cinematic', prompt: '{prompt}, cinematic lighting', negativePrompt: '' },
    { name: 'Suffix', prompt: 'highly detailed', negativePrompt: 'text' },
  ];
  it('merges with {prompt} or appends after ", "', () => {
    expect(mergePrompts('x, {prompt}, y', 'p')).toBe('x, p, y');
    expect(mergePrompts('style', '  p  ')).toBe('p, style');
    expect(mergePrompts('style', '')).toBe('style');
    expect(applyStylesToPrompt('a cat', ['{prompt}, b', 'c'])).toBe('a cat, b, c');
    expect(cleanStyleText(' ,a,  , b   c, ,')).toBe('a, b c');
  });
  it('apply then extract gives the styles and the original prompts back', () => {
    const applied = applyStyles('a cat', 'blurry', ['Quality', 'Suffix'], styles);
    expect(applied).toEqual({
      prompt: 'masterpiece, best quality, a cat, highly detailed',
      negativePrompt: 'blurry, lowres, text',
    });
    // A1111 appends the negative style too, so only a negative that ends with the style matches.
    const back = extractStylesFromPrompt(applied.prompt, 'lowres, text', styles);
    expect(back).toEqual({ styles: ['Quality', 'Suffix'], prompt: 'a cat', negativePrompt: '' });
  });
  it('a style matches only when both prompt and negative match', () => {
    expect(extractStylesFromPrompt('masterpiece, best quality, a cat', 'other', styles).styles).toEqual([]);
  });
});

describe('saving styles.csv', () => {
  it('writes atomically, keeps a .bak, and reads back what it wrote', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-styles-'));
    const path = join(dir, 'styles.csv');
    writeFileSync(path, 'name,prompt,negative_prompt\nold,x,y\n');
    const styles: PromptStyle[] = [
      { name: 'Quote "me"', prompt: 'a, {prompt}\nline', negativePrompt: 'Кот, 🐱' },
      { name: 'plain', prompt: 'p', negativePrompt: '' },
    ];
    await saveStyles(path, styles);
    expect(await loadStyles(path)).toEqual(styles);
    expect(readFileSync(`${path}.bak`, 'utf8')).toBe('name,prompt,negative_prompt\nold,x,y\n');
    expect(readFileSync(path, 'utf8')).toBe(formatStylesCsv(styles));
    expect(readFileSync(path, 'utf8').startsWith('\ufeffname,prompt,negative_prompt\r\n')).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['styles.csv', 'styles.csv.bak']);
  });
  it('replaces the file by rename: a reader holding the old file sees it whole; a failed save leaves it as it was', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-styles-'));
    const path = join(dir, 'styles.csv');
    const old = 'name,prompt,negative_prompt\nold,' + 'x'.repeat(100_000) + ',y\n';
    writeFileSync(path, old);
    const inode = statSync(path).ino;
    const reader = await open(path, 'r');
    try {
      await saveStyles(path, [{ name: 'new', prompt: 'p', negativePrompt: '' }]);
      expect(statSync(path).ino).not.toBe(inode); // a new file, not the old one truncated
      expect(await reader.readFile('utf8')).toBe(old);
    } finally {
      await reader.close();
    }
    const before = readFileSync(path, 'utf8');
    const broken = {
      name: 'bad',
      get prompt(): string {
        throw new Error('boom while writing');
      },
      negativePrompt: '',
    };
    await expect(saveStyles(path, [broken])).rejects.toThrow('boom');
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(readdirSync(dir).sort()).toEqual(['styles.csv', 'styles.csv.bak']);
  });
  it('a missing file is no styles; saving into a missing folder fails without touching anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-styles-'));
    expect(await loadStyles(join(dir, 'none.csv'))).toEqual([]);
    await expect(saveStyles(join(dir, 'no', 'styles.csv'), [])).rejects.toThrow();
    expect(existsSync(join(dir, 'no'))).toBe(false);
  });
});

describe('collapseCommaRuns', () => {
  it('equals the regex substitution on random comma/space text', () => {
    let seed = 3;
    const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const bits = [',', ',', ' ', '\t', '\u3000', 'a', ', '];
    for (let k = 0; k < 5000; k++) {
      let s = '';
      for (let n = Math.floor(next() * 14); n > 0; n--) s += bits[Math.floor(next() * bits.length)];
      expect(collapseCommaRuns(s), JSON.stringify(s)).toBe(s.replace(RE_MULTIPLE_COMMAS, ', '));
    }
  });

  it('is linear on a long run of commas', () => {
    const t = performance.now();
    cleanStyleText(','.repeat(200_000) + ' x' + ', '.repeat(100_000));
    expect(performance.now() - t).toBeLessThan(1000);
  });
});
