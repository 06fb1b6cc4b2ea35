/**
 * HTML character references, decoded the two ways CLIP's text cleaning needs:
 * - `pyHtmlUnescape`: Python's `html.unescape` (HTML5 rules, also legacy names without `;`), which
 *   openai's `simple_tokenizer` applies twice;
 * - `ftfyUnescapeHtml`: ftfy's stricter `unescape_html` (only references ending in `;`, plus a few
 *   all-caps names), which runs inside `ftfy.fix_text`.
 */
import { HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINT_RANGES } from './html-entities.js';

const RE_CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function isInvalidCodepoint(cp: number): boolean {
  for (const [a, b] of INVALID_CODEPOINT_RANGES) if (cp >= a && cp <= b) return true;
  return false;
}

function has(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(HTML5_ENTITIES, name);
}

function replaceCharref(s: string): string {
  if (s[0] === '#') {
    const hex = s[1] === 'x' || s[1] === 'X';
    const digits = s.slice(hex ? 2 : 1).replace(/;$/, '');
    // Long digit strings overflow to large numbers or Infinity; both are "> 0x10FFFF" as in Python.
    const num = hex ? parseInt(digits, 16) : parseInt(digits, 10);
    const mapped = INVALID_CHARREFS.get(num);
    if (mapped !== undefined) return mapped;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
    if (isInvalidCodepoint(num)) return '';
    return String.fromCodePoint(num);
  }
  if (has(s)) return HTML5_ENTITIES[s];
  // The longest legacy name that prefixes the reference ("&ampx" -> "&x").
  const cps = Array.from(s);
  for (let x = cps.length - 1; x > 1; x--) {
    const prefix = cps.slice(0, x).join('');
    if (has(prefix)) return HTML5_ENTITIES[prefix] + cps.slice(x).join('');
  }
  return '&' + s;
}

/** Python's `html.unescape(s)`. */
export function pyHtmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(RE_CHARREF, (_m, ref: string) => replaceCharref(ref));
}

let ftfyEntities: Map<string, string> | undefined;

/** ftfy's HTML_ENTITIES: names ending in `;`, plus upper-cased lower-case names that mean nothing else. */
function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities) return ftfyEntities;
  const table = new Map<string, string>();
  for (const [name, char] of Object.entries(HTML5_ENTITIES)) {
    if (!name.endsWith(';')) continue;
    table.set('&' + name, char);
    if (name === name.toLowerCase()) {
      const upper = '&' + name.toUpperCase();
      if (pyHtmlUnescape(upper) === upper) table.set(upper, char.toUpperCase());
    }
  }
  ftfyEntities = table;
  return table;
}

const RE_FTFY_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy's `unescape_html`: only complete references (with `;`) are decoded. */
export function ftfyUnescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  const table = ftfyEntityTable();
  return text.replace(RE_FTFY_ENTITY, (ref) => {
    const known = table.get(ref);
    if (known !== undefined) return known;
    if (ref.startsWith('&#')) {
      const decoded = pyHtmlUnescape(ref);
      return decoded.includes(';') ? ref : decoded;
    }
    return ref;
  });
}
