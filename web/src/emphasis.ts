/**
 * Ctrl+↑ / Ctrl+↓ in a prompt box, with the behaviour A1111's web UI has:
 * - with no selection, the `<…>` extra-network tag or the `(…)` group around the cursor is taken, else
 *   the word under the cursor (words end at A1111's `keyedit_delimiters` and at line breaks/tabs);
 * - surrounding whitespace is left out of the selection;
 * - inside `<lora:name:0.8>` the last number moves by 0.05 (`keyedit_precision_extra`);
 * - otherwise `(text:w)` moves by 0.1 (`keyedit_precision_attention`); plain text is wrapped as
 *   `(text:1.1)` / `(text:0.9)`; a weight that comes back to 1 removes its parentheses;
 * - the edited text stays selected, so the keys can be pressed repeatedly.
 */

export interface TextEdit {
  text: string;
  selectionStart: number;
  selectionEnd: number;
}

export interface EmphasisOptions {
  /** Step for `(text:w)` weights (A1111 keyedit_precision_attention). */
  attentionStep?: number;
  /** Step for `<lora:name:w>` multipliers (A1111 keyedit_precision_extra). */
  extraStep?: number;
  /** Characters that end a word (A1111 keyedit_delimiters), line breaks and tabs added. */
  delimiters?: string;
}

export const DEFAULT_DELIMITERS = '.,\\/!?%^*;:{}=`~() \t\r\n';

/** Weight text as A1111 writes it: up to 12 significant digits, at least one decimal ("2.0"). */
export function formatWeight(w: number): string {
  const v = parseFloat(w.toPrecision(12));
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}

/** [open, close) of the innermost OPEN…CLOSE group around a cursor, excluding the brackets. */
function enclosingGroup(text: string, cursor: number, open: string, close: string): [number, number] | null {
  let depth = 0;
  let start = -1;
  for (let i = cursor - 1; i >= 0; i--) {
    const c = text[i];
    if (c === close) depth++;
    else if (c === open) {
      if (depth === 0) {
        start = i + 1;
        break;
      }
      depth--;
    }
  }
  if (start < 0) return null;
  depth = 0;
  for (let i = cursor; i < text.length; i++) {
    const c = text[i];
    if (c === open) depth++;
    else if (c === close) {
      if (depth === 0) return [start, i];
      depth--;
    }
  }
  return null;
}

function wordAt(text: string, cursor: number, delimiters: string): [number, number] {
  let start = cursor;
  while (start > 0 && !delimiters.includes(text[start - 1])) start--;
  let end = cursor;
  while (end < text.length && !delimiters.includes(text[end])) end++;
  return [start, end];
}

const WEIGHT_RE = /^:\s*(-?\d*\.?\d+)\s*\)/;

/**
 * The prompt after one Ctrl+↑ (`up`) or Ctrl+↓, or null when there is nothing to change (an empty
 * word at the cursor).
 */
export function editEmphasis(input: TextEdit, up: boolean, options: EmphasisOptions = {}): TextEdit | null {
  const attentionStep = options.attentionStep ?? 0.1;
  const extraStep = options.extraStep ?? 0.05;
  const delimiters = options.delimiters ?? DEFAULT_DELIMITERS;
  const { text } = input;
  let start = input.selectionStart;
  let end = input.selectionEnd;

  if (start === end) {
    const tag = enclosingGroup(text, start, '<', '>');
    const group = tag ? null : enclosingGroup(text, start, '(', ')');
    if (tag) [start, end] = tag;
    else if (group) {
      [start, end] = group;
      // "(text:1.2)": the words before the weight.
      const colon = text.lastIndexOf(':', end);
      if (colon >= start && WEIGHT_RE.test(text.slice(colon, end + 1))) end = colon;
    } else [start, end] = wordAt(text, start, delimiters);
  }
  while (start < end && /\s/.test(text[start])) start++;
  while (end > start && /\s/.test(text[end - 1])) end--;
  if (start === end) return null;

  // An extra-network tag: <kind:name:multiplier> — move its last number.
  if (text[start - 1] === '<' && text[end] === '>') {
    const inner = text.slice(start, end);
    const m = /:(-?\d*\.?\d+)$/.exec(inner);
    if (!m) return null;
    const value = parseFloat(m[1]) + (up ? extraStep : -extraStep);
    const next = inner.slice(0, m.index + 1) + String(parseFloat(value.toPrecision(12)));
    return {
      text: text.slice(0, start) + next + text.slice(end),
      selectionStart: start,
      selectionEnd: start + next.length,
    };
  }

  const delta = up ? attentionStep : -attentionStep;
  const after = WEIGHT_RE.exec(text.slice(end));
  if (text[start - 1] === '(' && after) {
    // Already "(words:w)": change w, or drop the parentheses when it comes back to 1.
    const weight = parseFloat((parseFloat(after[1]) + delta).toPrecision(12));
    const closeEnd = end + after[0].length;
    const words = text.slice(start, end);
    if (weight === 1) {
      return {
        text: text.slice(0, start - 1) + words + text.slice(closeEnd),
        selectionStart: start - 1,
        selectionEnd: start - 1 + words.length,
      };
    }
    return {
      text: text.slice(0, end) + ':' + formatWeight(weight) + ')' + text.slice(closeEnd),
      selectionStart: start,
      selectionEnd: end,
    };
  }
  const words = text.slice(start, end);
  return {
    text: text.slice(0, start) + '(' + words + ':' + formatWeight(1 + delta) + ')' + text.slice(end),
    selectionStart: start + 1,
    selectionEnd: end + 1,
  };
}
