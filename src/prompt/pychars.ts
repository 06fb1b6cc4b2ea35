/**
 * Python `re` character classes that the reference code (CLIP's tokenizer, A1111's prompt parser)
 * relies on. Python's `\s`, `\w` and `\d` are Unicode-aware and differ from JavaScript's, so the ported
 * regexes spell them out. All class bodies need the `u` flag.
 */

/** Python's `\s` / `str.isspace()` set, as the body of a character class. */
export const PY_SPACE =
  '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/** Python's `\w` (letters, numbers, `_`), as the body of a character class. */
export const PY_WORD = '\\p{L}\\p{N}_';

/** Python's `\d` (any decimal digit, category Nd), as the body of a character class. */
export const PY_DIGIT = '\\p{Nd}';

const IS_SPACE = new RegExp(`^[${PY_SPACE}]$`, 'u');
const RE_DIGIT = /\p{Nd}/u;
const RE_NON_ASCII_DIGIT = /\P{ASCII}/gu;

/** Whether a single UTF-16 unit is Python whitespace (every Python space is in the BMP). */
export function isPySpace(ch: string): boolean {
  return IS_SPACE.test(ch);
}

/**
 * Python's `str.strip()` with no arguments. A scan from both ends: the obvious regex
 * (`^\s+|\s+$`) backtracks over every interior whitespace run and takes quadratic time.
 */
export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && IS_SPACE.test(s[a])) a++;
  while (b > a && IS_SPACE.test(s[b - 1])) b--;
  return s.slice(a, b);
}

/** The value 0-9 of a decimal digit (category Nd); Unicode keeps each script's digits in runs of ten. */
function digitValue(ch: string): number {
  let cp = ch.codePointAt(0)!;
  let n = 0;
  while (n < 10 && RE_DIGIT.test(String.fromCodePoint(cp - 1))) {
    cp--;
    n++;
  }
  // Runs of ten are contiguous and may be adjacent (mathematical digits), so count modulo ten.
  return n % 10;
}

/** Python's `float(s)` for strings of digits, signs, dots and exponents: accepts any Nd digit. */
export function pyFloat(s: string): number {
  const ascii = s.replace(RE_NON_ASCII_DIGIT, (ch) => (RE_DIGIT.test(ch) ? String(digitValue(ch)) : ch));
  const t = pyStrip(ascii);
  if (!/^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)$/.test(t)) return NaN;
  return Number(t);
}
