/**
 * The CLIP BPE vocabulary: where to find it and how to read it.
 *
 * Two layouts carry the same 49408-token vocabulary: openai's gzipped merges list
 * (`bpe_simple_vocab_16e6.txt.gz`; the vocabulary is derived from it) and the Hugging Face / diffusers
 * pair `vocab.json` + `merges.txt` (in a model folder's `tokenizer/`).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { UserError } from '../util/errors.js';

export const CLIP_VOCAB_FILE = 'bpe_simple_vocab_16e6.txt.gz';
/** Where the vocabulary is downloaded from when nothing local has it (MIT licence, openai/CLIP). */
export const CLIP_VOCAB_URLS = [
  'https://github.com/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz',
  'https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/merges.txt',
];
/** Merges used by CLIP: lines 1..48894 of the file (line 0 is a header). */
export const CLIP_MERGE_COUNT = 49152 - 256 - 2;
const MAX_VOCAB_BYTES = 64 * 1024 * 1024;

/** Where a vocabulary was found: the openai merges list (gz or plain) or a Hugging Face pair. */
export type ClipVocabSource =
  { kind: 'merges'; path: string } | { kind: 'hf'; vocabJson: string; mergesTxt: string };

/** The vocabulary itself: merges in rank order and token -> id. */
export interface ClipVocab {
  merges: [string, string][];
  encoder: Map<string, number>;
}

/** CLIP's reversible byte -> printable character map (printable Latin-1 bytes map to themselves). */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const table = new Array<string>(256);
  bs.forEach((b, i) => (table[b] = String.fromCharCode(cs[i])));
  return table;
}

function readLimited(path: string): Buffer {
  const size = statSync(path).size;
  if (size > MAX_VOCAB_BYTES)
    throw new UserError(`CLIP vocabulary ${path} is ${size} bytes; that is not a vocabulary file`);
  const data = readFileSync(path);
  if (data[0] === 0x1f && data[1] === 0x8b) return gunzipSync(data, { maxOutputLength: MAX_VOCAB_BYTES });
  return data;
}

function parseMerges(text: string, path: string): [string, string][] {
  const lines = text.split('\n').slice(1, CLIP_MERGE_COUNT + 1);
  const merges: [string, string][] = [];
  for (const line of lines) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2)
      throw new UserError(`${path} is not a CLIP BPE merges list (bad line "${line.slice(0, 40)}")`);
    merges.push([parts[0], parts[1]]);
  }
  if (merges.length !== CLIP_MERGE_COUNT)
    throw new UserError(`${path} has ${merges.length} merges; a CLIP vocabulary has ${CLIP_MERGE_COUNT}`);
  return merges;
}

/** Read a vocabulary from its source; malformed files give a UserError naming the file. */
export function readClipVocab(source: ClipVocabSource): ClipVocab {
  const mergesPath = source.kind === 'merges' ? source.path : source.mergesTxt;
  let text: string;
  try {
    text = readLimited(mergesPath).toString('utf8');
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot read CLIP vocabulary ${mergesPath}: ${(e as Error).message}`);
  }
  const merges = parseMerges(text, mergesPath);
  const encoder = new Map<string, number>();
  if (source.kind === 'merges') {
    const byteChars = bytesToUnicode();
    // openai's order: the byte alphabet in map order, the same with '</w>', each merge, then specials.
    const base = [
      ...byteChars.filter((_, b) => isDirectByte(b)),
      ...byteChars.filter((_, b) => !isDirectByte(b)),
    ];
    const vocab = [...base, ...base.map((c) => c + '</w>'), ...merges.map(([a, b]) => a + b)];
    vocab.push('<|startoftext|>', '<|endoftext|>');
    vocab.forEach((tok, i) => encoder.set(tok, i));
  } else {
    let json: unknown;
    try {
      json = JSON.parse(readLimited(source.vocabJson).toString('utf8'));
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`cannot read CLIP vocabulary ${source.vocabJson}: ${(e as Error).message}`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json))
      throw new UserError(`${source.vocabJson} is not a token -> id JSON object`);
    for (const [tok, id] of Object.entries(json as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
        throw new UserError(`${source.vocabJson}: token ${JSON.stringify(tok)} has a bad id`);
      encoder.set(tok, id);
    }
  }
  for (const special of ['<|startoftext|>', '<|endoftext|>'])
    if (!encoder.has(special)) throw new UserError(`CLIP vocabulary ${mergesPath} lacks ${special}`);
  return { merges, encoder };
}

function isDirectByte(b: number): boolean {
  return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/** Interpret a path: a merges list (.gz or text), a `tokenizer/` folder, or a model folder holding one. */
export function clipVocabSourceAt(path: string): ClipVocabSource | undefined {
  const p = resolve(path);
  if (!existsSync(p)) return undefined;
  if (statSync(p).isFile()) {
    if (basename(p) === 'vocab.json' && existsSync(join(dirname(p), 'merges.txt')))
      return { kind: 'hf', vocabJson: p, mergesTxt: join(dirname(p), 'merges.txt') };
    if (basename(p) === 'merges.txt' && existsSync(join(dirname(p), 'vocab.json')))
      return { kind: 'hf', vocabJson: join(dirname(p), 'vocab.json'), mergesTxt: p };
    return { kind: 'merges', path: p };
  }
  for (const dir of [p, join(p, 'tokenizer')]) {
    if (existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt')))
      return { kind: 'hf', vocabJson: join(dir, 'vocab.json'), mergesTxt: join(dir, 'merges.txt') };
    if (existsSync(join(dir, CLIP_VOCAB_FILE))) return { kind: 'merges', path: join(dir, CLIP_VOCAB_FILE) };
  }
  return undefined;
}

/** The cache folder for the vocabulary: $SDSTUDIO_CACHE/clip, else ~/.cache/sdstudio/clip. */
export function defaultClipCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SDSTUDIO_CACHE
    ? join(resolve(env.SDSTUDIO_CACHE), 'clip')
    : join(homedir(), '.cache', 'sdstudio', 'clip');
}

export interface ResolveClipVocabOptions {
  /** `--clip-vocab PATH`; wins over everything else. */
  explicitPath?: string;
  /** The checkpoint file or diffusers folder; a diffusers `tokenizer/` next to it is used. */
  modelPath?: string;
  /** Defaults to `defaultClipCacheDir()`. */
  cacheDir?: string;
  /** Download into the cache when nothing local has the vocabulary (default true). */
  download?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Injected for tests; defaults to the global fetch. */
  fetchImpl?: typeof fetch;
}

function missingVocabError(cacheDir: string, why: string): UserError {
  return new UserError(
    `CLIP vocabulary ${CLIP_VOCAB_FILE} not found (${why}). Download it from ${CLIP_VOCAB_URLS[0]} ` +
      `and put it at ${join(cacheDir, CLIP_VOCAB_FILE)}, or pass --clip-vocab PATH / set SDSTUDIO_CLIP_VOCAB.`,
  );
}

/**
 * Find the vocabulary: `--clip-vocab` / $SDSTUDIO_CLIP_VOCAB, else next to the model (diffusers
 * `tokenizer/`), else the cache, else download once into the cache.
 */
export async function resolveClipVocab(opts: ResolveClipVocabOptions = {}): Promise<ClipVocabSource> {
  const env = opts.env ?? process.env;
  const explicit = opts.explicitPath ?? env.SDSTUDIO_CLIP_VOCAB;
  if (explicit) {
    const source = clipVocabSourceAt(explicit);
    if (!source)
      throw new UserError(
        `CLIP vocabulary ${explicit} does not exist; check --clip-vocab / SDSTUDIO_CLIP_VOCAB`,
      );
    return source;
  }
  if (opts.modelPath) {
    const model = resolve(opts.modelPath);
    const dir = existsSync(model) && statSync(model).isDirectory() ? model : dirname(model);
    const source =
      clipVocabSourceAt(join(dir, 'tokenizer')) ?? (dir === model ? clipVocabSourceAt(dir) : undefined);
    if (source) return source;
  }
  const cacheDir = opts.cacheDir ?? defaultClipCacheDir(env);
  const cached = join(cacheDir, CLIP_VOCAB_FILE);
  if (existsSync(cached)) return { kind: 'merges', path: cached };
  if (opts.download === false) throw missingVocabError(cacheDir, 'downloads are off');
  await downloadClipVocab(cached, opts.fetchImpl ?? fetch, cacheDir);
  return { kind: 'merges', path: cached };
}

/** Fetch one URL and return the merges list gzipped, checked before it is kept. */
async function fetchVocab(url: string, fetchImpl: typeof fetch): Promise<Buffer> {
  const res = await fetchImpl(url, { signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const len = Number(res.headers.get('content-length') ?? 0);
  if (len > MAX_VOCAB_BYTES) throw new Error(`${len} bytes is too large`);
  const data = Buffer.from(await res.arrayBuffer());
  if (data.length > MAX_VOCAB_BYTES) throw new Error(`${data.length} bytes is too large`);
  const gz = data[0] === 0x1f && data[1] === 0x8b;
  // A captive portal's HTML page must not become the vocabulary.
  parseMerges((gz ? gunzipSync(data, { maxOutputLength: MAX_VOCAB_BYTES }) : data).toString('utf8'), url);
  return gz ? data : gzipSync(data);
}

async function downloadClipVocab(dest: string, fetchImpl: typeof fetch, cacheDir: string): Promise<void> {
  const failures: string[] = [];
  for (const url of CLIP_VOCAB_URLS) {
    let data: Buffer;
    try {
      data = await fetchVocab(url, fetchImpl);
    } catch (e) {
      failures.push(`${url}: ${(e as Error).message}`);
      continue;
    }
    mkdirSync(dirname(dest), { recursive: true });
    const tmp = `${dest}.${process.pid}.tmp`;
    writeFileSync(tmp, data);
    renameSync(tmp, dest);
    return;
  }
  throw missingVocabError(cacheDir, `download failed (${failures.join('; ')})`);
}
