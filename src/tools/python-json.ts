/**
 * JSON text as Python's `json.dumps` writes it (", " and ": " separators, non-ASCII escaped), so
 * metadata we write reads the same as A1111's. A float that happens to be integral is marked
 * `{ pyFloat: x }` to print as `1.0`, as Python prints floats.
 */
export function pythonJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return pyNumber(value, false);
  if (typeof value === 'string') return pyString(value);
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    if (Object.keys(obj).length === 1 && typeof obj.pyFloat === 'number') return pyNumber(obj.pyFloat, true);
    return `{${Object.entries(obj)
      .map(([k, v]) => `${pyString(k)}: ${pythonJson(v)}`)
      .join(', ')}}`;
  }
  return 'null';
}

function pyNumber(x: number, float: boolean): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  const s = String(x);
  if (float && Number.isInteger(x) && !/e/.test(s)) return `${s}.0`;
  // Python writes 1e-05 where JavaScript writes 0.00001 and 1e+16 alike; both parse to the same value.
  return s;
}

function pyString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (c < 0x20 || (c >= 0x7f && c <= 0xffff)) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else if (c > 0xffff) {
      const v = c - 0x10000;
      out += `\\u${(0xd800 + (v >> 10)).toString(16)}\\u${(0xdc00 + (v & 0x3ff)).toString(16)}`;
    } else out += ch;
  }
  return out + '"';
}
