import { mkdtempSync, readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer, mergeSimple, mergeWithHeap } from '../../src/prompt/tokenizer.js';
import { CLIP_VOCAB_FILE, resolveClipVocab, readClipVocab, bytesToUnicode } from '../../src/prompt/vocab.js';
import { UserError } from '../../src/util/errors.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';

interface TokenizerCase {
  category: string;
  prompt: string;
  ids: number[];
  hf_path_ids: number[];
  decoded: string;
}
const golden = JSON.parse(readFileSync(goldenPath('tokenizer', 'cases.json'), 'utf8')) as {
  bos: number;
  eos: number;
  vocab_size: number;
  cases: TokenizerCase[];
};

let tok: ClipTokenizer;
beforeAll(async () => {
  tok = await ClipTokenizer.load(clipVocabPath());
});

describe('CLIP tokenizer conformance (golden/tokenizer)', () => {
  it('has the reference special tokens and vocabulary size', () => {
    expect(tok.bos).toBe(golden.bos);
    expect(tok.eos).toBe(golden.eos);
    expect(tok.vocabSize).toBe(golden.vocab_size);
  });

  it('matches openai simple_tokenizer ids for every case', () => {
    const failures = golden.cases.filter(
      (c) => JSON.stringify(tok.encodeOpenAI(c.prompt)) !== JSON.stringify(c.ids),
    );
    expect(failures.map((c) => c.prompt)).toEqual([]);
  });

  it('matches the Hugging Face path (what A1111 feeds CLIP) for every case', () => {
    const failures = golden.cases.filter(
      (c) => JSON.stringify(tok.encode(c.prompt)) !== JSON.stringify(c.hf_path_ids),
    );
    expect(failures.map((c) => c.prompt)).toEqual([]);
  });

  it('decodes ids as openai decode does', () => {
    const failures = golden.cases.filter((c) => tok.decode(c.ids) !== c.decoded);
    expect(failures.map((c) => c.prompt)).toEqual([]);
  });
});

describe('CLIP tokenizer behaviour', () => {
  it('caches per word and gives the same ids on repeated calls', () => {
    const p = 'a majestic castle, highly detailed, trending on artstation';
    expect(tok.encode(p)).toEqual(tok.encode(p));
  });

  it('never throws on arbitrary text, including lone surrogates and control characters', () => {
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const pool = [
      'a',
      ' ',
      '\n',
      '\t',
      '(',
      ')',
      '[',
      ']',
      ':',
      '|',
      '\\',
      '<',
      '>',
      '&amp;',
      '&#x1F600;',
      'Ã©',
      '\ud800',
      '\u0000',
      '\u200b',
      'Ж',
      '猫',
      '🐱',
      'ﬁ',
      '１',
      '\u0301',
    ];
    for (let i = 0; i < 300; i++) {
      let s = '';
      const n = Math.floor(rnd() * 40);
      for (let j = 0; j < n; j++) s += pool[Math.floor(rnd() * pool.length)];
      const ids = tok.encode(s);
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize)).toBe(true);
      tok.encodeOpenAI(s);
    }
  });

  it('tokenizes a 1000-token prompt', () => {
    const words = golden.cases.map((c) => c.prompt).join(' ');
    let text = words;
    while (tok.encode(text).length < 1000) text += ' ' + words;
    expect(tok.encode(text).length).toBeGreaterThanOrEqual(1000);
  });

  it('tokenizes a 300-token prompt in well under a millisecond after warm-up', () => {
    const words = golden.cases
      .filter((c) => /^[\x20-\x7e]*$/.test(c.prompt))
      .map((c) => c.prompt)
      .join(', ');
    const all = words.split(' ');
    let text = all.slice(0, 300).join(' ');
    const n = tok.encode(text).length;
    expect(n).toBeGreaterThanOrEqual(300);
    text = all.slice(0, Math.ceil((300 * 300) / n)).join(' '); // about 300 tokens
    tok.encode(text); // warm-up: fills the per-word BPE cache
    const runs = 50;
    const t = performance.now();
    for (let i = 0; i < runs; i++) tok.encode(text);
    expect((performance.now() - t) / runs).toBeLessThan(1);
  });

  it('merges long words with the heap exactly as the openai loop does', () => {
    const vocab = readClipVocab({ kind: 'merges', path: clipVocabPath() });
    const ranks = new Map(vocab.merges.map(([a, b], i) => [a + ' ' + b, i]));
    let seed = 99;
    const rnd = () => (seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32;
    for (const alphabet of ['ab', 'aeiourstln', 'abcdefghijklmnopqrstuvwxyz', 'ssss']) {
      for (let t = 0; t < 150; t++) {
        const len = 1 + Math.floor(rnd() * 200);
        const word = Array.from({ length: len }, () => alphabet[Math.floor(rnd() * alphabet.length)]);
        word[len - 1] += '</w>';
        expect(mergeWithHeap(word.slice(), ranks)).toEqual(mergeSimple(word.slice(), ranks));
      }
    }
  });

  it('tokenizes a hostile 50k-letter word', () => {
    let seed = 5;
    let word = '';
    for (let i = 0; i < 50_000; i++)
      word += String.fromCharCode(97 + ((seed = (seed * 1664525 + 1013904223) >>> 0) % 26));
    expect(tok.encode(word).length).toBeGreaterThan(10_000);
  });

  it('keeps <|endoftext|> written in the text as the special token', () => {
    expect(tok.encode('a <|endoftext|> b')).toEqual([...tok.encode('a'), tok.eos, ...tok.encode('b')]);
  });
});

describe('CLIP vocabulary files', () => {
  it('reads a diffusers tokenizer/ folder (vocab.json + merges.txt) with the same ids', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-vocab-'));
    const tokDir = join(dir, 'tokenizer');
    mkdirSync(tokDir);
    const gz = readFileSync(clipVocabPath());
    const lines = gunzipSync(gz).toString('utf8').split('\n');
    writeFileSync(join(tokDir, 'merges.txt'), ['#version: 0.2', ...lines.slice(1)].join('\n'));
    const vocab = readClipVocab({ kind: 'merges', path: clipVocabPath() });
    writeFileSync(join(tokDir, 'vocab.json'), JSON.stringify(Object.fromEntries(vocab.encoder)));
    const source = await resolveClipVocab({ modelPath: dir, env: {}, download: false });
    expect(source).toEqual({
      kind: 'hf',
      vocabJson: join(tokDir, 'vocab.json'),
      mergesTxt: join(tokDir, 'merges.txt'),
    });
    const hf = await ClipTokenizer.load(dir);
    const failures = golden.cases.filter(
      (c) => JSON.stringify(hf.encode(c.prompt)) !== JSON.stringify(c.hf_path_ids),
    );
    expect(failures.map((c) => c.prompt)).toEqual([]);
  });

  it('resolves --clip-vocab first, then the environment, then the cache', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-cache-'));
    const explicit = await resolveClipVocab({
      explicitPath: clipVocabPath(),
      cacheDir,
      env: {},
      download: false,
    });
    expect(explicit).toEqual({ kind: 'merges', path: clipVocabPath() });
    const fromEnv = await resolveClipVocab({
      cacheDir,
      env: { SDSTUDIO_CLIP_VOCAB: clipVocabPath() },
      download: false,
    });
    expect(fromEnv).toEqual({ kind: 'merges', path: clipVocabPath() });
    writeFileSync(join(cacheDir, CLIP_VOCAB_FILE), readFileSync(clipVocabPath()));
    const cached = await resolveClipVocab({ cacheDir, env: {}, download: false });
    expect(cached).toEqual({ kind: 'merges', path: join(cacheDir, CLIP_VOCAB_FILE) });
  });

  it('loads a tokenizer through the same resolution', async () => {
    const t = await ClipTokenizer.resolve({ explicitPath: clipVocabPath(), env: {}, download: false });
    expect(golden.cases.length).toBeGreaterThan(0);
    for (const c of golden.cases) expect(t.encode(c.prompt), c.prompt).toEqual(c.hf_path_ids);
  });

  it('names the file and where to put it when it is missing and downloads are off', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-cache-'));
    const err = await resolveClipVocab({ cacheDir, env: {}, download: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(CLIP_VOCAB_FILE);
    expect((err as Error).message).toContain(join(cacheDir, CLIP_VOCAB_FILE));
  });

  it('refuses a download that is not a vocabulary and keeps nothing', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-cache-'));
    const fakeFetch = (async () => new Response('<html>captive portal</html>')) as typeof fetch;
    const err = await resolveClipVocab({ cacheDir, env: {}, fetchImpl: fakeFetch }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(CLIP_VOCAB_FILE);
    expect(existsSync(join(cacheDir, CLIP_VOCAB_FILE))).toBe(false);
  });

  it('falls back to the Hugging Face merges.txt and caches it as the gzipped list', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-cache-'));
    const merges = gunzipSync(readFileSync(clipVocabPath()));
    const urls: string[] = [];
    const fakeFetch = (async (url: string | URL | Request) => {
      urls.push(String(url));
      return String(url).endsWith('merges.txt')
        ? new Response(merges)
        : new Response('not found', { status: 404 });
    }) as typeof fetch;
    const source = await resolveClipVocab({ cacheDir, env: {}, fetchImpl: fakeFetch });
    expect(urls).toHaveLength(2);
    expect(source).toEqual({ kind: 'merges', path: join(cacheDir, CLIP_VOCAB_FILE) });
    const t = await ClipTokenizer.load(join(cacheDir, CLIP_VOCAB_FILE));
    for (const c of golden.cases) expect(t.encode(c.prompt), c.prompt).toEqual(c.hf_path_ids);
  });

  it('rejects a file that is not a merges list with a UserError', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-vocab-'));
    const p = join(dir, 'bad.txt');
    writeFileSync(p, 'header\nnot a merge line at all\n');
    expect(() => readClipVocab({ kind: 'merges', path: p })).toThrow(UserError);
  });

  it('maps all 256 bytes to distinct printable characters', () => {
    const table = bytesToUnicode();
    expect(new Set(table).size).toBe(256);
    expect(table[0x41]).toBe('A');
  });
});
