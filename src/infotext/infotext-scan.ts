/**
 * A linear-time equivalent of A1111's infotext `re_param`: run as a backtracking regex it takes
 * quadratic time on long lines without a `key:` (a long prompt as the last line); a crafted PNG
 * must not hang us. It returns exactly what the regex would (tests compare them on random text).
 */
import { PY_SPACE, PY_WORD, isPySpace as isSpace } from '../prompt/pychars.js';

const IS_WORD = new RegExp(`^[${PY_WORD}]$`, 'u');

/** The reference: A1111's `re_param` ported literally (for tests). */
export const RE_PARAM = new RegExp(
  `[${PY_SPACE}]*([${PY_WORD}][${PY_WORD} \\-/]+):[${PY_SPACE}]*("(?:\\\\[^\\n]|[^\\\\"])+"|[^,]*)(?:,|$)`,
  'gu',
);

/**
 * `re.findall(re_param, line)`: the `(key, value)` pairs of a parameter line, in linear time.
 *
 * A match at position p skips whitespace, then needs a word character starting a run of
 * `[\w \-/]` at least two long that ends right before a `:` (inside such a run there is no `:`,
 * so the key is always the whole run). After `:` and whitespace the value is a JSON-style quoted
 * string when its closing quote (the first unescaped one — the only one the regex can reach) is
 * followed by `,` or the end, else everything up to the next comma.
 */
export function findParamsLinear(line: string): [string, string][] {
  const cp = Array.from(line); // code points, as the regex's `u` flag sees them
  const n = cp.length;
  const space = cp.map(isSpace);
  const word = cp.map((c) => IS_WORD.test(c));
  const keyChar = cp.map((c, i) => word[i] || c === ' ' || c === '-' || c === '/');
  // runEnd[i]: end of the run of key characters starting at i; wsEnd[i]: first non-space at/after i;
  // nextComma[i]: first ',' at/after i (n if none); close[i]: where a quoted body starting at i
  // closes (index of the quote), or -1 when it cannot close.
  const runEnd = new Int32Array(n + 1);
  const wsEnd = new Int32Array(n + 1);
  const nextComma = new Int32Array(n + 1);
  const close = new Int32Array(n + 2).fill(-1);
  runEnd[n] = n;
  wsEnd[n] = n;
  nextComma[n] = n;
  for (let i = n - 1; i >= 0; i--) {
    runEnd[i] = keyChar[i] ? runEnd[i + 1] : i;
    wsEnd[i] = space[i] ? wsEnd[i + 1] : i;
    nextComma[i] = cp[i] === ',' ? i : nextComma[i + 1];
    if (cp[i] === '"') close[i] = i;
    else if (cp[i] === '\\') close[i] = i + 1 < n && cp[i + 1] !== '\n' ? close[i + 2] : -1;
    else close[i] = close[i + 1];
  }
  const out: [string, string][] = [];
  let p = 0;
  while (p < n) {
    const j = wsEnd[p];
    const k = j < n && word[j] ? runEnd[j] : -1;
    if (k < 0 || k - j < 2 || k >= n || cp[k] !== ':') {
      p++;
      continue;
    }
    const key = cp.slice(j, k).join('');
    const m = wsEnd[k + 1];
    let valueEnd = -1;
    if (m < n && cp[m] === '"') {
      const c = close[m + 1];
      if (c > m + 1 && (c + 1 === n || cp[c + 1] === ',')) valueEnd = c + 1;
    }
    if (valueEnd < 0) valueEnd = nextComma[m];
    out.push([key, cp.slice(m, valueEnd).join('')]);
    p = valueEnd < n ? valueEnd + 1 : n; // past the comma (or at the end)
    if (valueEnd >= n) break;
  }
  return out;
}
