/**
 * A1111's attention syntax (`modules/prompt_parser.py` `parse_prompt_attention`): `(text)` x1.1,
 * `[text]` /1.1, `(text:1.5)`, escapes, and `BREAK`. Same tokenizer regex and same event order, so
 * the weights are the same doubles as A1111's: each fragment's weight is 1.0 multiplied, one
 * rounding at a time, by the multipliers of the brackets around it in the order they close.
 *
 * Linear where A1111 is quadratic: BREAK is found by a scan instead of a backtracking regex, the
 * brackets still open at the end (always x1.1 or /1.1) are applied by counting, and runs of equal
 * weights are merged in one pass. Brackets that do close still multiply every fragment inside
 * them, as A1111 does: with arbitrary weights that sequential product cannot be shared between
 * fragments without changing the last bit, so deeply nested closed brackets cost depth x fragments.
 */
import { PY_DIGIT, PY_SPACE, PY_WORD, pyFloat } from './pychars.js';
import { UserError } from '../util/errors.js';

/** A piece of prompt text and its weight; `["BREAK", -1]` marks a forced chunk break. */
export type PromptFragment = [text: string, weight: number];

/** A prompt A1111 refuses too: a `(text:w)` weight that is not a number, such as `1.2.3`. */
export class PromptSyntaxError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'PromptSyntaxError';
  }
}

const RE_ATTENTION = new RegExp(
  [
    '\\\\\\(',
    '\\\\\\)',
    '\\\\\\[',
    '\\\\\\]',
    '\\\\\\\\',
    '\\\\',
    '\\(',
    '\\[',
    `:[${PY_SPACE}]*([+-]?[.${PY_DIGIT}]+)[${PY_SPACE}]*\\)`,
    '\\)',
    '\\]',
    '[^\\\\()\\[\\]:]+',
    ':',
  ].join('|'),
  'gu',
);

const IS_SPACE = new RegExp(`^[${PY_SPACE}]$`, 'u');
const IS_WORD = new RegExp(`^[${PY_WORD}]$`, 'u');

const ROUND = 1.1;
const SQUARE = 1 / 1.1;

/** Whether the code point ending just before index `i` is a Python `\w` character. */
function wordBefore(s: string, i: number): boolean {
  if (i <= 0) return false;
  const lo = s.charCodeAt(i - 1);
  const start = lo >= 0xdc00 && lo <= 0xdfff && i >= 2 ? i - 2 : i - 1;
  return IS_WORD.test(String.fromCodePoint(s.codePointAt(start)!));
}

/** Whether the code point starting at index `i` is a Python `\w` character. */
function wordAt(s: string, i: number): boolean {
  return i < s.length && IS_WORD.test(String.fromCodePoint(s.codePointAt(i)!));
}

/**
 * `re.split(r"\s*(?<!\w)BREAK(?!\w)\s*", text)` in linear time. A match takes a standalone `BREAK`
 * with the whitespace on both sides of it, its leading whitespace starting no earlier than where
 * the previous match ended (the regex's leftmost match; whitespace is never `\w`, so the lookbehind
 * only matters when no whitespace precedes `BREAK`).
 */
export function splitBreak(text: string): string[] {
  const parts: string[] = [];
  let from = 0; // end of the previous match
  for (let q = text.indexOf('BREAK'); q >= 0; q = text.indexOf('BREAK', q + 1)) {
    if (q < from || wordBefore(text, q) || wordAt(text, q + 5)) continue;
    let start = q;
    while (start > from && IS_SPACE.test(text[start - 1])) start--;
    let end = q + 5;
    while (end < text.length && IS_SPACE.test(text[end])) end++;
    parts.push(text.slice(from, start));
    from = end;
  }
  parts.push(text.slice(from));
  return parts;
}

/**
 * A1111's final loop `for pos in brackets: multiply_range(pos, m)`: fragment p is multiplied by
 * `m` once per open bracket at or before it. All multipliers are the same `m`, so fragments that
 * start from 1.0 (or -1.0, BREAK) share one chain of sequential products; the others stop as soon
 * as the product overflows or underflows, after which it no longer changes.
 */
function applyOpenBrackets(weights: number[], positions: readonly number[], m: number): void {
  const chain = [1.0]; // chain[k]: 1.0 multiplied by m, k times in sequence
  let open = 0;
  for (let p = 0; p < weights.length; p++) {
    while (open < positions.length && positions[open] <= p) open++;
    if (open === 0) continue;
    const w = weights[p];
    if (w === 1 || w === -1) {
      while (chain.length <= open) chain.push(chain[chain.length - 1] * m);
      weights[p] = w * chain[open]; // (-1)*x is exact, so -1 follows the 1.0 chain negated
    } else {
      // 0, ±Infinity and NaN are fixed points of x*m, which bounds the loop (~7500 steps at most).
      let v = w;
      for (let k = 0; k < open && v !== 0 && Number.isFinite(v); k++) v *= m;
      weights[p] = v;
    }
  }
}

/** Split `text` into `[text, weight]` fragments exactly as A1111's `parse_prompt_attention`. */
export function parsePromptAttention(text: string): PromptFragment[] {
  const texts: string[] = [];
  const weights: number[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const push = (t: string, w: number) => {
    texts.push(t);
    weights.push(w);
  };
  const multiplyRange = (start: number, m: number) => {
    for (let p = start; p < weights.length; p++) weights[p] *= m;
  };

  for (const m of text.matchAll(RE_ATTENTION)) {
    const tok = m[0];
    const weight = m[1];
    if (tok.startsWith('\\')) {
      push(tok.slice(1), 1.0);
    } else if (tok === '(') {
      round.push(texts.length);
    } else if (tok === '[') {
      square.push(texts.length);
    } else if (weight !== undefined && round.length > 0) {
      const w = pyFloat(weight);
      if (Number.isNaN(w))
        throw new PromptSyntaxError(
          `prompt weight "${weight}" in "${tok}" is not a number; write it like (word:1.2)`,
        );
      multiplyRange(round.pop()!, w);
    } else if (tok === ')' && round.length > 0) {
      multiplyRange(round.pop()!, ROUND);
    } else if (tok === ']' && square.length > 0) {
      multiplyRange(square.pop()!, SQUARE);
    } else {
      splitBreak(tok).forEach((part, i) => {
        if (i > 0) push('BREAK', -1);
        push(part, 1.0);
      });
    }
  }
  // Still-open brackets apply to everything after them: all '(' first, then all '['.
  applyOpenBrackets(weights, round, ROUND);
  applyOpenBrackets(weights, square, SQUARE);

  if (texts.length === 0) return [['', 1.0]];
  // Merge runs of identical weights (A1111 compares neighbours with ==, so NaN never merges).
  const res: PromptFragment[] = [];
  for (let i = 0; i < texts.length; i++) {
    const last = res[res.length - 1];
    if (last !== undefined && last[1] === weights[i]) last[0] += texts[i];
    else res.push([texts[i], weights[i]]);
  }
  return res;
}
