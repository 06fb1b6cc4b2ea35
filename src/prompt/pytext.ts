/**
 * Python string semantics that A1111's text handling relies on, for porting its regexes exactly:
 * Python's `\s` / `str.strip()` and `\w` are Unicode-aware and differ slightly from JavaScript's.
 */

/** Python's `str.isspace()` set, as the body of a regex character class. */
export const PY_WS =
  '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/** Python's Unicode `\w` (letters, numbers, `_`), as the body of a character class (needs the `u` flag). */
export const PY_W = '\\p{L}\\p{N}_';

const RE_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'gu');

/** Python's `str.strip()` with no arguments. */
export function pyStrip(s: string): string {
  return s.replace(RE_STRIP, '');
}

/** Python's `str.strip(chars)`. */
export function pyStripChars(s: string, chars: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && chars.includes(s[a])) a++;
  while (b > a && chars.includes(s[b - 1])) b--;
  return s.slice(a, b);
}
