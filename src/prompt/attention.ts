/**
 * A1111's attention syntax (`modules/prompt_parser.py` `parse_prompt_attention`): `(text)` x1.1,
 * `[text]` /1.1, `(text:1.5)`, escapes, and `BREAK`. Same regex, same event order, so the weights are
 * the same doubles as A1111's (the product depends on the order the brackets close).
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

const RE_BREAK = new RegExp(`[${PY_SPACE}]*(?<![${PY_WORD}])BREAK(?![${PY_WORD}])[${PY_SPACE}]*`, 'u');

const ROUND = 1.1;
const SQUARE = 1 / 1.1;

/** Split `text` into `[text, weight]` fragments exactly as A1111's `parse_prompt_attention`. */
export function parsePromptAttention(text: string): PromptFragment[] {
  const res: PromptFragment[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyRange = (start: number, m: number) => {
    for (let p = start; p < res.length; p++) res[p][1] *= m;
  };

  for (const m of text.matchAll(RE_ATTENTION)) {
    const tok = m[0];
    const weight = m[1];
    if (tok.startsWith('\\')) {
      res.push([tok.slice(1), 1.0]);
    } else if (tok === '(') {
      round.push(res.length);
    } else if (tok === '[') {
      square.push(res.length);
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
      tok.split(RE_BREAK).forEach((part, i) => {
        if (i > 0) res.push(['BREAK', -1]);
        res.push([part, 1.0]);
      });
    }
  }
  // Still-open brackets apply to everything after them: all '(' first, then all '['.
  for (const pos of round) multiplyRange(pos, ROUND);
  for (const pos of square) multiplyRange(pos, SQUARE);

  if (res.length === 0) res.push(['', 1.0]);
  // Merge runs of identical weights.
  for (let i = 0; i + 1 < res.length;) {
    if (res[i][1] === res[i + 1][1]) {
      res[i][0] += res[i + 1][0];
      res.splice(i + 1, 1);
    } else i++;
  }
  return res;
}
