/**
 * Numbers typed by a user (flags, API strings, infotext values) as plain decimals only: an optional
 * sign, digits with an optional fraction, an optional decimal exponent. JavaScript's `Number()`
 * also takes `0x10`, `0b1`, `0o7`, `Infinity` and whitespace-only text, which no user means as a
 * CFG scale or a seed.
 */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** The value of a plain decimal string (surrounding spaces allowed), or NaN for anything else. */
export function parseDecimal(text: string): number {
  const s = text.trim();
  return DECIMAL.test(s) ? Number(s) : NaN;
}
