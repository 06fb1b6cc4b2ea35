/**
 * The part of ftfy 6.3 `fix_text` (its default configuration) that CLIP's tokenizers run on every
 * prompt: HTML references, mojibake repair, C1 controls, Latin ligatures, full-width forms, curly
 * quotes, line breaks, lone surrogates, terminal escapes, control characters, then NFC — repeated until
 * nothing changes, one line at a time. The mojibake repair follows ftfy's `fix_encoding` step by step
 * with its own detection regexes and code pages (`ftfy-data.ts`): only text that ftfy's badness
 * heuristic flags is re-decoded, trying each single-byte code page in ftfy's order.
 */
import { ftfyUnescapeHtml } from './html-unescape.js';
import { PY_SPACE, PY_WORD } from './pychars.js';
import {
  ALTERED_UTF8_PATTERN,
  A_GRAVE_WORD_PATTERN,
  BADNESS_PATTERN,
  CHARMAP_ENCODINGS,
  LOSSY_UTF8_PATTERN,
  UTF8_DETECTOR_PATTERN,
} from './ftfy-data.js';

/** Windows-1252 bytes 0x80-0x9F; ftfy's "sloppy" codec keeps the five undefined bytes as C1 controls. */
const CP1252_HIGH =
  '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f' +
  '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';
/** Bytes strict Windows-1252 leaves undefined. */
const CP1252_UNDEFINED = new Set([0x81, 0x8d, 0x8f, 0x90, 0x9d]);

/** Python's Unicode `\s` and `\w` where the patterns use them (JavaScript's are ASCII-only). */
function pythonClasses(pattern: string): string {
  return pattern.replaceAll('\\s', `[${PY_SPACE}]`).replaceAll('\\w', `[${PY_WORD}]`);
}
const RE_BADNESS = new RegExp(pythonClasses(BADNESS_PATTERN), 'u');
const RE_UTF8_DETECTOR = new RegExp(pythonClasses(UTF8_DETECTOR_PATTERN), 'gu');
const RE_ALTERED_UTF8 = new RegExp(ALTERED_UTF8_PATTERN, 'g');
const RE_ALTERED_UTF8_TEST = new RegExp(ALTERED_UTF8_PATTERN);
const RE_LOSSY_UTF8 = new RegExp(LOSSY_UTF8_PATTERN, 'g');
const RE_A_GRAVE_WORD = new RegExp(A_GRAVE_WORD_PATTERN, 'g');

interface CodePage {
  name: string;
  sloppy: boolean;
  encode: Map<string, number>;
}
const CODE_PAGES: CodePage[] = CHARMAP_ENCODINGS.map(([name, table]) => {
  const encode = new Map<string, number>();
  for (let b = 0; b < 256; b++) if (table[b] !== '\uffff' && !encode.has(table[b])) encode.set(table[b], b);
  return { name, sloppy: name.startsWith('sloppy'), encode };
});

/** ftfy's `is_bad`: does the text look like it contains mojibake? */
function isBad(text: string): boolean {
  return RE_BADNESS.test(text);
}

/** `text.encode(codePage)` as a Latin-1 "byte string", or undefined when a character has no byte. */
function encodeBytes(text: string, page: CodePage): string | undefined {
  let out = '';
  for (const ch of text) {
    const b = page.encode.get(ch);
    if (b === undefined) return undefined;
    out += String.fromCharCode(b);
  }
  return out;
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function latin1Bytes(bytes: string): Uint8Array {
  const a = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) a[i] = bytes.charCodeAt(i);
  return a;
}

const RE_UTF8_VARIANT = /\xc0\x80|\xed[\xa0-\xaf][\x80-\xbf]\xed[\xb0-\xbf][\x80-\xbf]/g;

/** Strict UTF-8, or ftfy's "utf-8-variants" (CESU-8 surrogate pairs, Java's C0 80 for NUL). */
function decodeUtf8(bytes: string, variants: boolean): string | undefined {
  try {
    if (!variants) return utf8Strict.decode(latin1Bytes(bytes));
    let out = '';
    let last = 0;
    for (const m of bytes.matchAll(RE_UTF8_VARIANT)) {
      out += utf8Strict.decode(latin1Bytes(bytes.slice(last, m.index)));
      const s = m[0];
      if (s.length === 2) out += '\u0000';
      else {
        const hi = 0xd000 | ((s.charCodeAt(1) & 0x3f) << 6) | (s.charCodeAt(2) & 0x3f);
        const lo = 0xd000 | ((s.charCodeAt(4) & 0x3f) << 6) | (s.charCodeAt(5) & 0x3f);
        out += String.fromCharCode(hi, lo);
      }
      last = m.index + s.length;
    }
    return out + utf8Strict.decode(latin1Bytes(bytes.slice(last)));
  } catch {
    return undefined;
  }
}

/** ftfy's restore_byte_a0: spaces that stand where a UTF-8 sequence needs byte A0. */
function restoreByteA0(bytes: string): string {
  const b = bytes.replace(RE_A_GRAVE_WORD, '\xc3\xa0 ');
  return b.replace(RE_ALTERED_UTF8, (m) => m.replaceAll(' ', '\xa0'));
}

/** ftfy's replace_lossy_sequences: sequences that lost bytes to 1A/'?' become U+FFFD. */
function replaceLossySequences(bytes: string): string {
  return bytes.replace(RE_LOSSY_UTF8, '\xef\xbf\xbd');
}

/** ftfy's decode_inconsistent_utf8: repair mojibake embedded in otherwise good text. */
function decodeInconsistentUtf8(text: string): string {
  return text.replace(RE_UTF8_DETECTOR, (sub) =>
    sub.length < text.length && isBad(sub) ? fixEncoding(sub) : sub,
  );
}

function fixEncodingOnce(text: string): string {
  // eslint-disable-next-line no-control-regex
  if (text.length === 0 || /^[\x00-\x7f]*$/.test(text) || !isBad(text)) return text;
  const possible: string[] = [];
  for (const page of CODE_PAGES) {
    let bytes = encodeBytes(text, page);
    if (bytes === undefined) continue;
    possible.push(page.name);
    if (page.name !== 'macroman' && RE_ALTERED_UTF8_TEST.test(bytes)) bytes = restoreByteA0(bytes);
    if (page.sloppy) bytes = replaceLossySequences(bytes);
    const variants = bytes.includes('\xed') || bytes.includes('\xc0');
    const fixed = decodeUtf8(bytes, variants);
    if (fixed !== undefined) return fixed;
  }
  RE_UTF8_DETECTOR.lastIndex = 0;
  if (RE_UTF8_DETECTOR.test(text)) {
    RE_UTF8_DETECTOR.lastIndex = 0;
    const fixed = decodeInconsistentUtf8(text);
    if (fixed !== text) return fixed;
  }
  // Latin-1 text that is not Windows-1252 (it has C1 controls): read it as Windows-1252.
  // (ftfy tests for 'windows-1252' among the sloppy page names, which never matches.)
  if (possible.includes('latin-1')) {
    let ok = true;
    let fixed = '';
    for (const ch of text) {
      const c = ch.charCodeAt(0);
      if (c >= 0x80 && c < 0xa0) {
        if (CP1252_UNDEFINED.has(c)) ok = false;
        fixed += CP1252_HIGH[c - 0x80];
      } else fixed += ch;
    }
    if (ok && fixed !== text) return fixed;
  }
  RE_C1.lastIndex = 0;
  if (RE_C1.test(text)) return fixC1Controls(text);
  return text;
}

function fixEncoding(text: string): string {
  for (;;) {
    const next = fixEncodingOnce(text);
    if (next === text) return text;
    text = next;
  }
}

const RE_C1 = /[\x80-\x9f]/g;
function fixC1Controls(text: string): string {
  return text.replace(RE_C1, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]);
}

const LIGATURES: Record<string, string> = {
  Ĳ: 'IJ',
  ĳ: 'ij',
  ŉ: 'ʼn',
  Ǳ: 'DZ',
  ǲ: 'Dz',
  ǳ: 'dz',
  Ǆ: 'DŽ',
  ǅ: 'Dž',
  ǆ: 'dž',
  Ǉ: 'LJ',
  ǈ: 'Lj',
  ǉ: 'lj',
  Ǌ: 'NJ',
  ǋ: 'Nj',
  ǌ: 'nj',
  ﬀ: 'ff',
  ﬁ: 'fi',
  ﬂ: 'fl',
  ﬃ: 'ffi',
  ﬄ: 'ffl',
  ﬅ: 'ſt',
  ﬆ: 'st',
};
const RE_LIGATURE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');
function fixLatinLigatures(text: string): string {
  return text.replace(RE_LIGATURE, (c) => LIGATURES[c]);
}

const RE_WIDTH = /[\u3000\uff01-\uffef]/g;
function fixCharacterWidth(text: string): string {
  return text.replace(RE_WIDTH, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
}

function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

function fixLineBreaks(text: string): string {
  return text.replace(/\r\n|[\r\u2028\u2029\u0085]/g, '\n');
}

function fixSurrogates(text: string): string {
  // With the `u` flag only unpaired surrogates match; JavaScript strings already join the pairs.
  return text.replace(/[\ud800-\udfff]/gu, '\ufffd');
}

// eslint-disable-next-line no-control-regex
const RE_ANSI = /\x1b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu;
function removeTerminalEscapes(text: string): string {
  return text.replace(RE_ANSI, '');
}

// eslint-disable-next-line no-control-regex
const RE_CONTROL = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
function removeControlChars(text: string): string {
  return text.replace(RE_CONTROL, '');
}

function fixSegment(text: string, unescapeHtml: boolean): string {
  for (;;) {
    const orig = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === orig) return text;
  }
}

const MAX_DECODE_LENGTH = 1_000_000;
const RE_UNTOUCHED = /^[\x20-\x25\x27-\x7e\t\n]*$/;

/** ftfy's `fix_text(text)` with its default configuration (as far as described above). */
export function ftfyFixText(text: string): string {
  // Printable ASCII without '&' is returned unchanged by every step: skip the work.
  if (RE_UNTOUCHED.test(text)) return text;
  let unescapeHtml = true;
  const out: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos) + 1;
    if (end === 0) end = text.length;
    if (end - pos > MAX_DECODE_LENGTH) end = pos + MAX_DECODE_LENGTH;
    const segment = text.slice(pos, end);
    // "auto": a literal '<' means the text may be HTML; from then on entities are left alone.
    if (unescapeHtml && segment.includes('<')) unescapeHtml = false;
    out.push(fixSegment(segment, unescapeHtml));
    pos = end;
  }
  return out.join('');
}
