/**
 * Completion of extra-network and embedding names while typing in a prompt box: after `<` or
 * `<lora:` / `<lyco:` / `<hypernet:` the LoRA and hypernetwork files are offered (inserted as
 * `<lora:name:1>`), and a bare word of two or more characters is matched against the embeddings.
 * Pure functions; the PromptBox draws the list.
 */

export interface CompletionNames {
  loras: readonly string[];
  hypernetworks: readonly string[];
  embeddings: readonly string[];
}

export interface CompletionContext {
  /** Replace text[start, end) with the chosen item. */
  start: number;
  end: number;
  query: string;
  /** `network`: after a bare `<` (LoRAs and hypernetworks); else one kind. */
  kind: 'network' | 'lora' | 'hypernet' | 'embedding';
}

export interface Suggestion {
  label: string;
  /** What the item inserts. */
  insert: string;
  kind: 'lora' | 'hypernet' | 'embedding';
}

const TAG_OPEN = /<(?:(lora|lyco|hypernet):)?([^<>:\s]*)$/;
const WORD_END = /[\p{L}\p{N}_-]{2,}$/u;

/** What is being typed at the cursor, if it can be completed. */
export function completionContext(text: string, cursor: number): CompletionContext | null {
  const before = text.slice(Math.max(0, cursor - 200), cursor);
  const after = /^[\p{L}\p{N}_-]*/u.exec(text.slice(cursor))![0];
  const tag = TAG_OPEN.exec(before);
  if (tag) {
    const kind = tag[1] === 'hypernet' ? 'hypernet' : tag[1] ? 'lora' : 'network';
    // A tag already closed after the cursor is replaced whole: `<lora:na|me:1>`.
    const closed = /^[^<>\s]*>/.exec(text.slice(cursor));
    return {
      start: cursor - tag[0].length,
      end: cursor + (closed ? closed[0].length : after.length),
      query: tag[2],
      kind,
    };
  }
  const word = WORD_END.exec(before);
  if (!word) return null;
  const start = cursor - word[0].length;
  // Not inside a tag's arguments or right after a weight colon.
  if (start > 0 && /[<:]/.test(text[start - 1])) return null;
  return { start, end: cursor + after.length, query: word[0], kind: 'embedding' };
}

function rank(names: readonly string[], query: string): string[] {
  const q = query.toLowerCase();
  const prefix: string[] = [];
  const inside: string[] = [];
  for (const n of names) {
    const l = n.toLowerCase();
    if (l.startsWith(q)) prefix.push(n);
    else if (q && l.includes(q)) inside.push(n);
  }
  return [...prefix, ...inside];
}

/** The items for a context, best first (prefix matches before inner matches), at most `limit`. */
export function suggestions(ctx: CompletionContext, names: CompletionNames, limit = 10): Suggestion[] {
  const out: Suggestion[] = [];
  if (ctx.kind === 'embedding') {
    for (const n of rank(names.embeddings, ctx.query)) {
      // The whole word typed already: nothing to complete.
      if (n.toLowerCase() !== ctx.query.toLowerCase()) out.push({ label: n, insert: n, kind: 'embedding' });
    }
  } else {
    if (ctx.kind !== 'hypernet')
      for (const n of rank(names.loras, ctx.query))
        out.push({ label: n, insert: `<lora:${n}:1>`, kind: 'lora' });
    if (ctx.kind !== 'lora')
      for (const n of rank(names.hypernetworks, ctx.query))
        out.push({ label: n, insert: `<hypernet:${n}:1>`, kind: 'hypernet' });
  }
  return out.slice(0, limit);
}

/** The text with a suggestion put in, and where the cursor goes (after it). */
export function applySuggestion(
  text: string,
  ctx: CompletionContext,
  s: Suggestion,
): { text: string; cursor: number } {
  return {
    text: text.slice(0, ctx.start) + s.insert + text.slice(ctx.end),
    cursor: ctx.start + s.insert.length,
  };
}

/**
 * Put a tag or name into a prompt at the cursor (the extra-networks cards): separated from the
 * text around it by ", " unless it starts the prompt or follows a separator already.
 */
export function insertAt(text: string, at: number, insert: string): { text: string; cursor: number } {
  const before = text.slice(0, at);
  const after = text.slice(at);
  const lead = before.trim() === '' || /[,\s(]$/.test(before) ? '' : ', ';
  const trail = after.trim() === '' || /^[,\s)]/.test(after) ? '' : ', ';
  const piece = lead + insert;
  return { text: before + piece + trail + after, cursor: at + piece.length + trail.length };
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * A card clicked for a network the prompt already holds takes it out again, as A1111's cards do:
 * a `<kind:name…>` tag with any multiplier, or an embedding's name as a whole word, with the comma
 * that joined it. Null when the prompt does not hold it.
 */
export function removeFromPrompt(text: string, insert: string): string | null {
  const tag = /^<(\w+):([^:>]+)(?::[^>]*)?>$/.exec(insert);
  const re = tag
    ? new RegExp(`(,\\s*)?<${escapeRe(tag[1])}:${escapeRe(tag[2])}(?::[^>]*)?>`)
    : new RegExp(`(,\\s*)?(?<![\\p{L}\\p{N}_-])${escapeRe(insert)}(?![\\p{L}\\p{N}_-])`, 'u');
  const m = re.exec(text);
  if (!m) return null;
  let end = m.index + m[0].length;
  // First in the prompt: the comma after it goes instead.
  if (!m[1]) end += /^,?\s*/.exec(text.slice(end))![0].length;
  return text.slice(0, m.index) + text.slice(end);
}
