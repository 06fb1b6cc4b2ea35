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
    let word = Array.from(chars);
    word[word.length - 1] += '</w>';
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(word[i] + ' ' + word[i + 1]);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best];
      const second = word[best + 1];
      // Merge every occurrence of the pair, left to right, as openai's loop does.
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
    return word.map((piece) => {
      const id = this.encoder.get(piece);
      if (id === undefined)
        throw new Error(`BPE produced ${JSON.stringify(piece)}, which the vocabulary lacks`);
      return id;
    });
  }
}
