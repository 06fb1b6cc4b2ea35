/**
 * Infotext: the generation parameters A1111 writes under every image
 * (`prompt\nNegative prompt: …\nSteps: 20, Sampler: Euler a, …`).
 *
 * formatInfotext writes it as A1111's processing.create_infotext does; parseInfotext reads it back
 * as infotext_utils.parse_generation_parameters (v1.10.1) does, quirks included — malformed text is
 * read the way A1111 reads it and never throws.
 */
import {
  applyVersionBackcompat,
  comparePep440,
  parseInfotextVersion,
  V180_HR_STYLES,
} from './infotext-version.js';
import { extractStylesFromPrompt, type PromptStyle } from '../prompt/styles.js';
import { findParamsLinear } from './infotext-scan.js';
import { pyStrip } from '../prompt/pychars.js';
import { parsePromptAttention, PromptSyntaxError } from '../prompt/attention.js';

export type InfotextValue = string | number | boolean | null | undefined;

export interface InfotextInput {
  prompt: string;
  negativePrompt?: string;
  /** Parameters in the order they are to be written; null/undefined values are left out. */
  params: Record<string, InfotextValue>;
}

/** `^(\d+)x(\d+)$` — Python's `\d` is any Unicode decimal digit and `$` also matches before a final newline. */
const RE_IMAGESIZE = /^(\p{Nd}+)x(\p{Nd}+)\n?$/u;

/** Python's repr() of a float (shortest round-trip digits, exponent outside [1e-4, 1e16)). */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e');
  const exp = Number(expText);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  let body: string;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
      const frac = digits.slice(exp + 1);
      body = `${intPart}.${frac || '0'}`;
    } else body = `0.${'0'.repeat(-exp - 1)}${digits}`;
  } else {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    body = `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return (neg ? '-' : '') + body;
}

/** str() of the Python value a JS value stands for: integers as ints, other numbers as floats. */
function pyStr(v: Exclude<InfotextValue, null | undefined>): string {
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return Number.isSafeInteger(v) ? String(v) : pyFloatRepr(v);
  return v;
}

/**
 * A1111's quote(): values containing `,`, `:` or a newline are written as JSON strings
 * (json.dumps with ensure_ascii=False); everything else verbatim.
 */
export function quoteInfotextValue(v: Exclude<InfotextValue, null | undefined>): string {
  const s = pyStr(v);
  if (!s.includes(',') && !s.includes('\n') && !s.includes(':')) return s;
  return JSON.stringify(s);
}

/** A1111's unquote(): a JSON-quoted value is decoded; if it is not valid JSON it is kept as written. */
export function unquoteInfotextValue(text: string): string {
  if (text.length === 0 || text[0] !== '"' || text[text.length - 1] !== '"') return text;
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'string' ? v : text;
  } catch {
    return text;
  }
}

/** The infotext for one image, laid out exactly as A1111's create_infotext. */
export function formatInfotext(input: InfotextInput): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(input.params)) {
    if (v === null || v === undefined) continue;
    parts.push(k === v ? k : `${k}: ${quoteInfotextValue(v)}`);
  }
  const neg = input.negativePrompt ? `\nNegative prompt: ${input.negativePrompt}` : '';
  return pyStrip(`${input.prompt}${neg}\n${parts.join(', ')}`);
}

/** `key: value` pairs of a parameter line, as Python's re.findall(re_param, line). */
export function findInfotextParams(line: string): [string, string][] {
  return findParamsLinear(line);
}

/** Python int() of a string of (Unicode) digits; NaN when Python would raise. */
function pyInt(s: string): number {
  const t = pyStrip(s);
  if (!/^[+-]?\p{Nd}+(?:_\p{Nd}+)*$/u.test(t)) return NaN;
  let n = 0;
  let sign = 1;
  for (const ch of t) {
    if (ch === '-') sign = -1;
    else if (ch === '+' || ch === '_') continue;
    else n = n * 10 + digitValue(ch);
  }
  return sign * n;
}

/** Value of a Unicode decimal digit: decimal digits come in runs that start at their zero. */
function digitValue(ch: string): number {
  let cp = ch.codePointAt(0)!;
  if (cp >= 0x30 && cp <= 0x39) return cp - 0x30;
  let start = cp;
  while (/\p{Nd}/u.test(String.fromCodePoint(start - 1))) start--;
  cp -= start;
  return cp % 10;
}

function toInt(v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v === 'number') return Math.trunc(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return pyInt(String(v));
}

/** processing.old_hires_fix_first_pass_dimensions: scale to 512*512 pixels, round up to 64. */
export function oldHiresFixFirstPassDimensions(width: number, height: number): [number, number] {
  const scale = Math.sqrt((512 * 512) / (width * height));
  return [Math.ceil((scale * width) / 64) * 64, Math.ceil((scale * height) / 64) * 64];
}

/** restore_old_hires_fix_params with use_old_hires_fix_width_height=False. */
function restoreOldHiresFixParams(res: Map<string, unknown>): void {
  const fw = res.get('First pass size-1');
  const fh = res.get('First pass size-2');
  if (fw === undefined || fh === undefined) return;
  let firstW = toInt(fw, 0);
  let firstH = toInt(fh, 0);
  const width = toInt(res.get('Size-1'), 512);
  const height = toInt(res.get('Size-2'), 512);
  // A1111 raises here (ValueError / ZeroDivisionError); we leave the sizes as written instead.
  if (![firstW, firstH, width, height].every(Number.isFinite)) return;
  if (firstW === 0 || firstH === 0) {
    if (width * height === 0) return;
    [firstW, firstH] = oldHiresFixFirstPassDimensions(width, height);
  }
  res.set('Size-1', firstW);
  res.set('Size-2', firstH);
  res.set('Hires resize-1', width);
  res.set('Hires resize-2', height);
}

/**
 * Prompts longer than this are not run through the attention parser to decide on Emphasis: each
 * closing bracket multiplies every fragment inside it (as A1111's does, for bit-identical weights),
 * so deeply nested text costs depth x fragments, and no real prompt comes near (CLIP reads 75
 * tokens a chunk). Such a prompt counts as weighted if it has a bracket.
 */
export const MAX_EMPHASIS_CHECK_CHARS = 32 * 1024;

/** Emphasis is filled in only when some part of a prompt has a weight other than 1 (BREAK aside). */
function usesEmphasis(...prompts: string[]): boolean {
  return prompts.some((p) => {
    if (p.length > MAX_EMPHASIS_CHECK_CHARS) return /[()[\]]/.test(p);
    try {
      return parsePromptAttention(p).some(([t, w]) => !(w === 1.0 || t === 'BREAK'));
    } catch (err) {
      // A weight like (x:1.2.3) makes A1111's parser raise; we read the infotext anyway.
      if (err instanceof PromptSyntaxError) return true;
      throw err;
    }
  });
}

export interface ParseInfotextOptions {
  /** Styles (styles.csv) to find in the prompt and take out; none by default. */
  styles?: readonly PromptStyle[];
  /** A1111's "infotext_styles" option. */
  infotextStyles?: 'Apply if any' | 'Apply' | 'Ignore' | 'Discard';
  /** A1111's "infotext_skip_pasting": keys removed from the result. */
  skipFields?: readonly string[];
}

const DEFAULTS: [string, unknown][] = [
  ['Hires sampler', 'Use same sampler'],
  ['Hires schedule type', 'Use same scheduler'],
  ['Hires checkpoint', 'Use same checkpoint'],
  ['Hires prompt', ''],
  ['Hires negative prompt', ''],
  ['Mask mode', 'Inpaint masked'],
  ['Masked content', 'original'],
  ['Inpaint area', 'Whole picture'],
  ['Masked area padding', 32],
];

const LATE_DEFAULTS: [string, unknown][] = [
  ['RNG', 'GPU'],
  ['Schedule type', 'Automatic'],
  ['Schedule max sigma', 0],
  ['Schedule min sigma', 0],
  ['Schedule rho', 0],
  ['VAE Encoder', 'Full'],
  ['VAE Decoder', 'Full'],
  ['FP8 weight', 'Disable'],
];

/**
 * Parses an infotext into the dict A1111's parse_generation_parameters returns: values are the
 * strings written (JSON-quoted ones decoded), `WxH` values split into `key-1`/`key-2`, defaults
 * filled for keys old images lack, unknown keys kept as they are.
 */
export function parseInfotext(text: string, options: ParseInfotextOptions = {}): Record<string, unknown> {
  const styles = options.styles ?? [];
  const infotextStyles = options.infotextStyles ?? 'Apply if any';
  const res = new Map<string, unknown>();

  let prompt = '';
  let negative = '';
  let doneWithPrompt = false;
  const lines = pyStrip(text).split('\n');
  let lastline = lines.pop()!;
  if (findInfotextParams(lastline).length < 3) {
    lines.push(lastline);
    lastline = '';
  }
  for (const raw of lines) {
    let line = pyStrip(raw);
    if (line.startsWith('Negative prompt:')) {
      doneWithPrompt = true;
      line = pyStrip(line.slice(16));
    }
    if (doneWithPrompt) negative += (negative === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }

  for (const [k, raw] of findInfotextParams(lastline)) {
    // An empty value makes A1111's `v[0]` raise; the pair is dropped.
    if (raw.length === 0) continue;
    const v = raw[0] === '"' && raw[raw.length - 1] === '"' ? unquoteInfotextValue(raw) : raw;
    const m = RE_IMAGESIZE.exec(v);
    if (m) {
      res.set(`${k}-1`, m[1]);
      res.set(`${k}-2`, m[2]);
    } else res.set(k, v);
  }

  if (infotextStyles !== 'Ignore') {
    const found = extractStylesFromPrompt(prompt, negative, styles);
    let sameHrStyles = true;
    if (res.has('Hires prompt') || res.has('Hires negative prompt')) {
      const version = res.get('Version');
      const ver = parseInfotextVersion(typeof version === 'string' ? version : undefined);
      if (!ver || comparePep440(ver, V180_HR_STYLES) > 0) {
        const hrPrompt = (res.get('Hires prompt') as string | undefined) ?? prompt;
        const hrNegative = (res.get('Hires negative prompt') as string | undefined) ?? negative;
        const hr = extractStylesFromPrompt(hrPrompt, hrNegative, styles);
        sameHrStyles =
          hr.styles.length === found.styles.length && hr.styles.every((s, i) => s === found.styles[i]);
        if (sameHrStyles) {
          res.set('Hires prompt', hr.prompt === found.prompt ? '' : hr.prompt);
          res.set(
            'Hires negative prompt',
            hr.negativePrompt === found.negativePrompt ? '' : hr.negativePrompt,
          );
        }
      }
    }
    if (sameHrStyles) {
      prompt = found.prompt;
      negative = found.negativePrompt;
      if ((infotextStyles === 'Apply if any' && found.styles.length > 0) || infotextStyles === 'Apply') {
        res.set('Styles array', found.styles);
      }
    }
  }

  res.set('Prompt', prompt);
  res.set('Negative prompt', negative);

  if (!res.has('Clip skip')) res.set('Clip skip', '1');

  const hypernet = res.get('Hypernet');
  if (hypernet !== undefined) {
    const strength = res.has('Hypernet strength') ? String(res.get('Hypernet strength')) : '1.0';
    res.set('Prompt', `${String(res.get('Prompt'))}<hypernet:${String(hypernet)}:${strength}>`);
  }

  if (!res.has('Hires resize-1')) {
    res.set('Hires resize-1', 0);
    res.set('Hires resize-2', 0);
  }
  for (const [k, v] of DEFAULTS) if (!res.has(k)) res.set(k, v);

  restoreOldHiresFixParams(res);

  for (const [k, v] of LATE_DEFAULTS) if (!res.has(k)) res.set(k, v);
  if (!res.has('Cache FP16 weight for LoRA') && res.get('FP8 weight') !== 'Disable') {
    res.set('Cache FP16 weight for LoRA', false);
  }

  if (!res.has('Emphasis') && usesEmphasis(prompt, negative)) res.set('Emphasis', 'Original');
  if (!res.has('Refiner switch by sampling steps')) res.set('Refiner switch by sampling steps', false);

  applyVersionBackcompat(res);

  for (const k of options.skipFields ?? []) res.delete(k);
  // fromEntries defines own properties, so a key such as "__proto__" stays an ordinary key.
  return Object.fromEntries(res) as Record<string, unknown>;
}
