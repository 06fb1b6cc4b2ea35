/**
 * A1111 styles (`styles.csv`: name, prompt, negative_prompt), as modules/styles.py (v1.10.1):
 * applying a style to a prompt, finding applied styles in a prompt again (used when an infotext
 * is read), and loading/saving the CSV without ever leaving a half-written file behind.
 */
import { copyFile, open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { UserError } from '../util/errors.js';
import { PY_SPACE as PY_WS, isPySpace, pyStrip } from './pychars.js';

export interface PromptStyle {
  name: string;
  prompt: string;
  negativePrompt: string;
}

/** Styles files larger than this are refused (a real one is a few hundred kB at most). */
export const MAX_STYLES_FILE_BYTES = 64 * 1024 * 1024;

/** A1111's `re_spaces` pattern for runs of commas; the reference for {@link collapseCommaRuns}. */
export const RE_MULTIPLE_COMMAS = new RegExp(`(?:,+[${PY_WS}]+)+,?`, 'gu');
const RE_MULTIPLE_SPACES = new RegExp(`[${PY_WS}]{2,}`, 'gu');

/** Python's `str.strip(chars)`. */
function pyStripChars(s: string, chars: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && chars.includes(s[a])) a++;
  while (b > a && chars.includes(s[b - 1])) b--;
  return s.slice(a, b);
}

/**
 * `re.sub(r"(,+\s+)+,?", ", ", text)` in linear time (the regex backtracks quadratically on a long
 * run of commas). A match is a greedy series of (commas, whitespace) pairs plus one optional comma;
 * a comma run with no whitespace after it cannot start a match anywhere inside it.
 */
export function collapseCommaRuns(text: string): string {
  const n = text.length;
  const commasEnd = (i: number) => {
    while (i < n && text[i] === ',') i++;
    return i;
  };
  const spacesEnd = (i: number) => {
    while (i < n && isPySpace(text[i])) i++;
    return i;
  };
  let out = '';
  let copied = 0; // text before this is already in `out`
  let i = 0;
  while (i < n) {
    if (text[i] !== ',') {
      i++;
      continue;
    }
    let end = i;
    for (;;) {
      const c = commasEnd(end);
      const s = c > end ? spacesEnd(c) : c;
      if (s === c) break;
      end = s;
    }
    if (end === i) {
      i = commasEnd(i);
      continue;
    }
    if (text[end] === ',') end++;
    out += text.slice(copied, i) + ', ';
    copied = i = end;
  }
  return out + text.slice(copied);
}

/** styles.clean_text: collapse runs of commas and of whitespace, trim commas and spaces. */
export function cleanStyleText(text: string): string {
  return pyStripChars(collapseCommaRuns(text).replace(RE_MULTIPLE_SPACES, ' '), ', ');
}

/** styles.merge_prompts: fill `{prompt}` in the style, or append the style after ", ". */
export function mergePrompts(stylePrompt: string, prompt: string): string {
  if (stylePrompt.includes('{prompt}')) return stylePrompt.replaceAll('{prompt}', prompt);
  return [pyStrip(prompt), pyStrip(stylePrompt)].filter((p) => p !== '').join(', ');
}

/** styles.apply_styles_to_prompt: apply style texts in order, then clean the result. */
export function applyStylesToPrompt(prompt: string, styleTexts: readonly string[]): string {
  let p = prompt;
  for (const s of styleTexts) p = mergePrompts(s, p);
  return cleanStyleText(p);
}

/** Applies named styles to a prompt and its negative, as A1111 does before generating. Unknown names are ignored. */
export function applyStyles(
  prompt: string,
  negativePrompt: string,
  names: readonly string[],
  styles: readonly PromptStyle[],
): { prompt: string; negativePrompt: string } {
  const chosen = names.map(
    (n) => styles.find((s) => s.name === n) ?? { name: n, prompt: '', negativePrompt: '' },
  );
  return {
    prompt: applyStylesToPrompt(
      prompt,
      chosen.map((s) => s.prompt),
    ),
    negativePrompt: applyStylesToPrompt(
      negativePrompt,
      chosen.map((s) => s.negativePrompt),
    ),
  };
}

/** styles.unwrap_style_text_from_prompt: is the style text around/at the end of the prompt? */
function unwrapStyleText(styleText: string, prompt: string): [boolean, string] {
  const strippedPrompt = cleanStyleText(prompt);
  const strippedStyle = cleanStyleText(styleText);
  if (strippedStyle.includes('{prompt}')) {
    const parts = strippedStyle.split('{prompt}');
    // More than one {prompt}: A1111 cannot split it and reports no match.
    if (parts.length !== 2) return [false, prompt];
    const [left, right] = parts;
    if (strippedPrompt.startsWith(left) && strippedPrompt.endsWith(right)) {
      return [true, strippedPrompt.slice(left.length, strippedPrompt.length - right.length)];
    }
  } else if (strippedPrompt.endsWith(strippedStyle)) {
    let p = strippedPrompt.slice(0, strippedPrompt.length - strippedStyle.length);
    if (p.endsWith(', ')) p = p.slice(0, -2);
    return [true, p];
  }
  return [false, prompt];
}

/** styles.extract_original_prompts: the prompts without the style, if both prompt and negative match. */
function extractStyle(style: PromptStyle, prompt: string, negative: string): [boolean, string, string] {
  if (!style.prompt && !style.negativePrompt) return [false, prompt, negative];
  const [matchPositive, positive] = unwrapStyleText(style.prompt, prompt);
  if (!matchPositive) return [false, prompt, negative];
  const [matchNegative, extractedNegative] = unwrapStyleText(style.negativePrompt, negative);
  if (!matchNegative) return [false, prompt, negative];
  return [true, positive, extractedNegative];
}

/**
 * StyleDatabase.extract_styles_from_prompt: repeatedly take out the first style (in file order)
 * that matches, until none does. Returns the style names in the order they were applied
 * (the reverse of extraction) and the prompts without them.
 */
export function extractStylesFromPrompt(
  prompt: string,
  negativePrompt: string,
  styles: readonly PromptStyle[],
): { styles: string[]; prompt: string; negativePrompt: string } {
  const extracted: string[] = [];
  const applicable = [...styles];
  let p = prompt;
  let n = negativePrompt;
  for (;;) {
    let found = -1;
    for (let i = 0; i < applicable.length; i++) {
      const [match, np, nn] = extractStyle(applicable[i], p, n);
      if (match) {
        found = i;
        p = np;
        n = nn;
        break;
      }
    }
    if (found < 0) break;
    extracted.push(applicable[found].name);
    applicable.splice(found, 1);
  }
  return { styles: extracted.reverse(), prompt: p, negativePrompt: n };
}

/**
 * Python csv.reader (excel dialect, skipinitialspace=True, non-strict) over the whole text:
 * quoted fields with doubled quotes and embedded newlines, records ended by \r\n, \n or \r,
 * empty lines skipped.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  const n = text.length;
  let atFieldStart = true;
  let inQuotes = false;
  let wasQuoted = false;
  const endField = (): void => {
    row.push(field);
    field = '';
    atFieldStart = true;
    wasQuoted = false;
  };
  const endRow = (): void => {
    if (!(row.length === 0 && field === '' && !wasQuoted)) endField();
    if (row.length > 0) rows.push(row);
    row = [];
  };
  while (i < n) {
    const c = text[i];
    if (inQuotes) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        inQuotes = false;
      } else field += c;
      i++;
      continue;
    }
    if (atFieldStart && c === ' ') {
      i++;
      continue;
    }
    if (atFieldStart && c === '"') {
      inQuotes = true;
      wasQuoted = true;
      atFieldStart = false;
      i++;
      continue;
    }
    if (c === ',') {
      endField();
      i++;
      continue;
    }
    if (c === '\r' || c === '\n') {
      endRow();
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
      continue;
    }
    atFieldStart = false;
    field += c;
    i++;
  }
  if (inQuotes || field !== '' || wasQuoted || row.length > 0) endRow();
  return rows;
}

/**
 * The styles of a styles.csv text (BOM allowed). Like A1111: the header names the columns
 * (`name`, `prompt` or the old `text`, `negative_prompt`), rows whose name starts with `#` are
 * comments, a later row with the same name replaces the earlier one in place. Unlike A1111, rows
 * with missing columns get empty strings instead of breaking the whole file.
 */
export function parseStylesCsv(text: string): PromptStyle[] {
  const rows = parseCsv(text.startsWith('\ufeff') ? text.slice(1) : text);
  if (rows.length === 0) return [];
  const header = rows[0];
  const col = (name: string): number => header.indexOf(name);
  const nameCol = col('name');
  const promptCol = col('prompt') >= 0 ? col('prompt') : col('text');
  const negCol = col('negative_prompt');
  if (nameCol < 0) return [];
  const byName = new Map<string, PromptStyle>();
  for (const r of rows.slice(1)) {
    const name = r[nameCol] ?? '';
    if (name.startsWith('#')) continue;
    byName.set(name, {
      name,
      prompt: (promptCol >= 0 ? r[promptCol] : undefined) ?? '',
      negativePrompt: (negCol >= 0 ? r[negCol] : undefined) ?? '',
    });
  }
  return [...byName.values()];
}

/** Reads styles.csv; a missing file is no styles (as in A1111). */
export async function loadStyles(path: string): Promise<PromptStyle[]> {
  let buf: Buffer;
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size > MAX_STYLES_FILE_BYTES) {
        throw new UserError(
          `${path} is ${size} bytes, too large for a styles file; check that it is the right file.`,
        );
      }
      buf = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return parseStylesCsv(buf.toString('utf8'));
}

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** styles.csv text as A1111 writes it: UTF-8 BOM, header, CRLF line ends, minimal quoting. */
export function formatStylesCsv(styles: readonly PromptStyle[]): string {
  const lines = ['name,prompt,negative_prompt'];
  for (const s of styles) lines.push([s.name, s.prompt, s.negativePrompt].map(csvField).join(','));
  return '\ufeff' + lines.map((l) => l + '\r\n').join('');
}

/**
 * Saves styles.csv atomically: the new content goes to a temporary file in the same folder,
 * is flushed to disk, the old file is kept as `<path>.bak` (as A1111 does), then the temporary
 * file is renamed over the old one — a crash at any point leaves either the old or the new file.
 */
export async function saveStyles(path: string, styles: readonly PromptStyle[]): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const fh = await open(tmp, 'wx');
  try {
    await fh.writeFile(formatStylesCsv(styles), 'utf8');
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await copyFile(path, `${path}.bak`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      await rm(tmp, { force: true });
      throw err;
    }
  }
  await rename(tmp, path);
}
