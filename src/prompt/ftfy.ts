/**
 * The part of ftfy 6.3 `fix_text` (its default configuration) that CLIP's tokenizers run on every
 * prompt: HTML references, mojibake of UTF-8 read as Latin-1 / Windows-1252, C1 controls, Latin
 * ligatures, full-width forms, curly quotes, line breaks, lone surrogates, terminal escapes, control
 * characters, then NFC — repeated until nothing changes, one line at a time.
 *
 * ftfy's mojibake repair is heuristic (a "badness" score over character classes). We repair the
 * unambiguous core of it: text containing a sequence that is valid multi-byte UTF-8 when its
 * characters are read back as Windows-1252 bytes ("cafÃ©" -> "café"). Mixups between other
 * single-byte code pages (cp1251, MacRoman, ...) are left as they are.
 */
import { ftfyUnescapeHtml } from './html-unescape.js';

/** Windows-1252 bytes 0x80-0x9F; ftfy's "sloppy" codec keeps the five undefined bytes as C1 controls. */
const CP1252_HIGH =
  '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f' +
  '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';

const SLOPPY_1252_BYTE = new Map<string, number>();
for (let b = 0; b < 256; b++) {
  const ch = b >= 0x80 && b < 0xa0 ? CP1252_HIGH[b - 0x80] : String.fromCharCode(b);
  SLOPPY_1252_BYTE.set(ch, b);
}

// Characters that stand for UTF-8 continuation bytes 0x80-0xBF when read as Windows-1252.
const CONT = `[${CP1252_HIGH}\\u00a0-\\u00bf]`;
/** A UTF-8 multi-byte sequence that was decoded as Windows-1252 / Latin-1. */
const RE_MOJIBAKE = new RegExp(
  `[\\u00c2-\\u00df]${CONT}|[\\u00e0-\\u00ef]${CONT}{2}|[\\u00f0-\\u00f4]${CONT}{3}`,
  'g',
);

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Encode as Latin-1 (or Windows-1252 where `sloppy`) and decode as UTF-8; undefined if impossible. */
function redecode(text: string, sloppy: boolean): string | undefined {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!sloppy && c <= 0xff) {
      bytes[i] = c;
      continue;
    }
    const b = sloppy ? SLOPPY_1252_BYTE.get(text[i]) : undefined;
    if (b === undefined) return undefined;
    bytes[i] = b;
  }
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return undefined;
  }
}

function fixEncodingOnce(text: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return text;
  RE_MOJIBAKE.lastIndex = 0;
  if (!RE_MOJIBAKE.test(text)) return text;
  // The whole line was decoded with the wrong code page: undo it at once, as ftfy does first.
  const whole = redecode(text, false) ?? redecode(text, true);
  if (whole !== undefined) return whole;
  // Otherwise repair the mojibake sequences one by one (ftfy's decode_inconsistent_utf8).
  return text.replace(RE_MOJIBAKE, (seq) => redecode(seq, true) ?? seq);
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
