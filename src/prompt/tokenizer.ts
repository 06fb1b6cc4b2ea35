/**
 * CLIP's byte-level BPE tokenizer (openai `simple_tokenizer.py`, and the Hugging Face
 * `CLIPTokenizer` that A1111 calls). Both clean the text the same way except that openai's also
 * decodes HTML references twice after ftfy; `encode` is the Hugging Face path the pipeline uses.
 */
import { ftfyFixText } from './ftfy.js';
import { pyHtmlUnescape } from './html-unescape.js';
import { PY_SPACE, pyStrip } from './pychars.js';
import {
  bytesToUnicode,
  clipVocabSourceAt,
  readClipVocab,
  resolveClipVocab,
  type ClipVocab,
  type ResolveClipVocabOptions,
} from './vocab.js';
import { UserError } from '../util/errors.js';

const RE_WHITESPACE = new RegExp(`[${PY_SPACE}]+`, 'gu');
const RE_PRETOKENIZE = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${PY_SPACE}\\p{L}\\p{N}]+`,
  'gu',
);
const BPE_CACHE_LIMIT = 100_000;

/** `re.sub(r'\s+', ' ', text).strip()` with Python's whitespace. */
function whitespaceClean(text: string): string {
  return pyStrip(text.replace(RE_WHITESPACE, ' '));
}

export class ClipTokenizer {
  readonly bos: number;
  readonly eos: number;
  private readonly encoder: Map<string, number>;
  private readonly decoder: Map<number, string>;
  private readonly ranks: Map<string, number>;
  private readonly byteEncoder = bytesToUnicode();
  private readonly byteDecoder: Map<string, number>;
  private readonly cache = new Map<string, number[]>();

  constructor(vocab: ClipVocab) {
    this.encoder = vocab.encoder;
    this.decoder = new Map([...vocab.encoder].map(([tok, id]) => [id, tok]));
    this.ranks = new Map(vocab.merges.map(([a, b], i) => [a + ' ' + b, i]));
    this.byteDecoder = new Map(this.byteEncoder.map((c, b) => [c, b]));
    this.bos = vocab.encoder.get('<|startoftext|>')!;
    this.eos = vocab.encoder.get('<|endoftext|>')!;
  }

  /** Load from a merges list (.gz), a `vocab.json`/`merges.txt` pair, or a folder holding either. */
  static async load(path: string): Promise<ClipTokenizer> {
    const source = clipVocabSourceAt(path);
    if (!source) throw new UserError(`CLIP vocabulary ${path} does not exist`);
    return new ClipTokenizer(readClipVocab(source));
  }

  /** Find the vocabulary as `resolveClipVocab` does (flag, environment, model folder, cache, download) and load it. */
  static async resolve(opts: ResolveClipVocabOptions = {}): Promise<ClipTokenizer> {
    return new ClipTokenizer(readClipVocab(await resolveClipVocab(opts)));
  }

  /** Token id of a vocabulary entry such as `,</w>`, if present. */
  tokenId(token: string): number | undefined {
    return this.encoder.get(token);
  }

  get vocabSize(): number {
    return this.encoder.size;
  }

  /** Ids without BOS/EOS, as A1111 gets them (Hugging Face normalisation: ftfy, whitespace, lower case). */
  encode(text: string): number[] {
    return this.encodeClean(whitespaceClean(ftfyFixText(text)).toLowerCase());
  }

  /** Ids without BOS/EOS as openai's `SimpleTokenizer.encode` gives them (also decodes HTML twice). */
  encodeOpenAI(text: string): number[] {
    const basic = pyStrip(pyHtmlUnescape(pyHtmlUnescape(ftfyFixText(text))));
    return this.encodeClean(whitespaceClean(basic).toLowerCase());
  }

  /** Text of the ids, word ends as spaces (openai's `decode`). */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const tok = this.decoder.get(id);
      if (tok === undefined) continue;
      for (const ch of tok) {
        const b = this.byteDecoder.get(ch);
        if (b !== undefined) bytes.push(b);
        else for (const u of Buffer.from(ch, 'utf8')) bytes.push(u);
      }
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replaceAll('</w>', ' ');
  }

  private encodeClean(text: string): number[] {
    const ids: number[] = [];
    for (const m of text.matchAll(RE_PRETOKENIZE)) {
      for (const id of this.bpe(m[0])) ids.push(id);
    }
    return ids;
  }

  /** BPE ids of one pre-token, cached per word. */
  private bpe(token: string): number[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    let ids: number[];
    if (token === '<|startoftext|>' || token === '<|endoftext|>') ids = [this.encoder.get(token)!];
    else ids = this.merge(token);
    if (this.cache.size >= BPE_CACHE_LIMIT) this.cache.clear();
    this.cache.set(token, ids);
    return ids;
  }

  private merge(token: string): number[] {
    let chars = '';
    for (const b of Buffer.from(token, 'utf8')) chars += this.byteEncoder[b];
    const word = Array.from(chars);
    word[word.length - 1] += '</w>';
    const pieces = word.length > LONG_WORD ? mergeWithHeap(word, this.ranks) : mergeSimple(word, this.ranks);
    return pieces.map((piece) => {
      const id = this.encoder.get(piece);
      if (id === undefined)
        throw new Error(`BPE produced ${JSON.stringify(piece)}, which the vocabulary lacks`);
      return id;
    });
  }
}

/** Above this many symbols a word is merged with a heap: same result, O(n log n) instead of O(n²). */
const LONG_WORD = 64;

/**
 * openai's loop: take the lowest-ranked adjacent pair, merge every occurrence left to right, repeat.
 */
export function mergeSimple(word: string[], ranks: ReadonlyMap<string, number>): string[] {
  while (word.length > 1) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i < word.length - 1; i++) {
      const r = ranks.get(word[i] + ' ' + word[i + 1]);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    const first = word[best];
    const second = word[best + 1];
    const next: string[] = [];
    for (let i = 0; i < word.length;) {
      if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
        next.push(first + second);
        i += 2;
      } else {
        next.push(word[i]);
        i++;
      }
    }
    word = next;
  }
  return word;
}

/**
 * The same merges in rounds driven by a heap of (rank, position): each round merges all current
 * occurrences of the lowest-ranked pair left to right; pairs a round creates wait for later rounds,
 * exactly as in openai's loop. Keeps hostile prompts (one 100k-letter "word") from taking minutes.
 */
export function mergeWithHeap(word: string[], ranks: ReadonlyMap<string, number>): string[] {
  const n = word.length;
  const sym = word.slice();
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  // Heap of [rank, left, leftSym, rightSym], ordered by rank then position.
  const heap: [number, number, string, string][] = [];
  const less = (a: [number, number, string, string], b: [number, number, string, string]) =>
    a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  const push = (e: [number, number, string, string]) => {
    heap.push(e);
    for (let i = heap.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!less(heap[i], heap[p])) break;
      [heap[i], heap[p]] = [heap[p], heap[i]];
      i = p;
    }
  };
  const pop = () => {
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l], heap[m])) m = l;
        if (r < heap.length && less(heap[r], heap[m])) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    }
    return top;
  };
  const pushPair = (left: number) => {
    const right = next[left];
    if (left < 0 || right < 0) return;
    const r = ranks.get(sym[left] + ' ' + sym[right]);
    if (r !== undefined) push([r, left, sym[left], sym[right]]);
  };
  const valid = (e: [number, number, string, string]) =>
    sym[e[1]] === e[2] && next[e[1]] >= 0 && sym[next[e[1]]] === e[3];
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i + 1 < n; i++) pushPair(i);
  while (heap.length > 0) {
    const first = pop();
    if (!alive[first[1]] || !valid(first)) continue;
    const round = [first];
    while (heap.length > 0 && heap[0][0] === first[0]) round.push(pop());
    const created: number[] = [];
    for (const e of round) {
      const left = e[1];
      if (!alive[left] || !valid(e)) continue;
      const right = next[left];
      sym[left] = e[2] + e[3];
      alive[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      created.push(left);
    }
    // New neighbour pairs enter the heap only after the round, as openai recomputes pairs then.
    for (const left of created) {
      if (!alive[left]) continue;
      if (prev[left] >= 0) pushPair(prev[left]);
      pushPair(left);
    }
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
  return out;
}
