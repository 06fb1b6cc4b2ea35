/**
 * The attention parser as first written: a literal port of A1111's `parse_prompt_attention`
 * (per-entry range multiplication, `re.split` on BREAK). Kept as the oracle the linear-time
 * parser in src/prompt/attention.ts is compared against on random prompts.
 */
import { PY_DIGIT, PY_SPACE, PY_WORD, pyFloat } from '../../src/prompt/pychars.js';
import { PromptSyntaxError, type PromptFragment } from '../../src/prompt/attention.js';
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
export function referenceParsePromptAttention(text: string): PromptFragment[] {
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
