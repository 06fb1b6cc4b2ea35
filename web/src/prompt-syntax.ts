/**
 * A1111 prompt syntax split into coloured pieces for the prompt box's overlay: emphasis `( )` and
 * `[ ]` with their `:weight`, prompt editing `[from:to:when]` / alternation `[a|b]` separators, `AND`
 * (with its `:weight`), `BREAK`, `<lora:…>`-style extra-network tags, embedding names and escapes.
 * The pieces' texts joined give back the prompt exactly (the overlay must line up with the textarea).
 */

export type PieceKind =
  | 'text'
  | 'paren'
  | 'bracket'
  | 'weight'
  | 'sep'
  | 'and'
  | 'break'
  | 'network'
  | 'network-unknown'
  | 'embedding'
  | 'escape';

export interface Piece {
  text: string;
  kind: PieceKind;
  /** Bracket nesting depth (brackets and parens: for alternating colours). */
  depth?: number;
}

export interface SyntaxNames {
  /** Embedding names, lower case (the tokenizer lower-cases, so A1111 matches them in any case). */
  embeddingNames?: ReadonlySet<string>;
  /** Known extra networks by kind (`lora`, `hypernet`): a tag naming another file is marked unknown. */
  networks?: ReadonlyMap<string, ReadonlySet<string>>;
}

const TAG = /<(\w+):([^>]+)>/y;
const WEIGHT = /:\s*-?\d*\.?\d+\s*(?=[)\]])/y;
const AND_WEIGHT = /:\s*-?\d*\.?\d+(?=\s*(?:$|\bAND\b))/y;
const WORD = /[\p{L}\p{N}_-]+/uy;
const KINDS_OF_TAG: Record<string, string> = { lora: 'lora', lyco: 'lora', hypernet: 'hypernet' };

function matchAt(re: RegExp, text: string, at: number): string | null {
  re.lastIndex = at;
  const m = re.exec(text);
  return m ? m[0] : null;
}

export function highlightPrompt(text: string, names: SyntaxNames = {}): Piece[] {
  const out: Piece[] = [];
  const push = (t: string, kind: PieceKind, depth?: number) => {
    const last = out[out.length - 1];
    if (kind === 'text' && last?.kind === 'text') last.text += t;
    else out.push(depth === undefined ? { text: t, kind } : { text: t, kind, depth });
  };
  let parens = 0;
  let brackets = 0;
  let afterAnd = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      push(text.slice(i, i + 2), 'escape');
      i += 2;
      continue;
    }
    if (c === '<') {
      TAG.lastIndex = i;
      const m = TAG.exec(text);
      if (m) {
        const known = names.networks?.get(KINDS_OF_TAG[m[1]] ?? m[1]);
        const name = m[2].split(':')[0];
        push(m[0], known && !known.has(name) ? 'network-unknown' : 'network');
        i += m[0].length;
        continue;
      }
    }
    if (c === '(' || c === ')') {
      if (c === ')') parens = Math.max(0, parens - 1);
      push(c, 'paren', parens);
      if (c === '(') parens++;
      i++;
      continue;
    }
    if (c === '[' || c === ']') {
      if (c === ']') brackets = Math.max(0, brackets - 1);
      push(c, 'bracket', brackets);
      if (c === '[') brackets++;
      i++;
      continue;
    }
    if (c === ':') {
      const w = parens + brackets > 0 ? matchAt(WEIGHT, text, i) : null;
      const aw = !w && afterAnd ? matchAt(AND_WEIGHT, text, i) : null;
      if (w || aw) {
        push((w ?? aw)!, 'weight');
        i += (w ?? aw)!.length;
        continue;
      }
      push(c, brackets > 0 ? 'sep' : 'text');
      i++;
      continue;
    }
    if (c === '|' && brackets > 0) {
      push(c, 'sep');
      i++;
      continue;
    }
    const word = matchAt(WORD, text, i);
    if (word) {
      const before = i === 0 ? ' ' : text[i - 1];
      const boundary = !/[\p{L}\p{N}_]/u.test(before);
      if (boundary && word === 'AND') {
        push(word, 'and');
        afterAnd = true;
      } else if (boundary && word === 'BREAK') push(word, 'break');
      else if (names.embeddingNames?.has(word.toLowerCase())) push(word, 'embedding');
      else push(word, 'text');
      i += word.length;
      continue;
    }
    push(c, 'text');
    i++;
  }
  return out;
}
