/**
 * Extra-network tags (`<lora:name:0.8>`, `<lyco:...>`, `<hypernet:...>`, any `<word:args>`), as A1111's
 * `extra_networks.parse_prompt`: tags are cut out of the prompt and returned with their arguments.
 */
import { PY_WORD } from './pychars.js';

/** A1111's `re_extra_net`; the reference for {@link findExtraNetworkTags}. */
export const RE_EXTRA_NET = new RegExp(`<([${PY_WORD}]+):([^>]+)>`, 'gu');
const RE_TAG_NAME = new RegExp(`[${PY_WORD}]+:`, 'uy');

/** A tag found in a prompt: where it starts and ends, its kind and its raw argument text. */
interface TagMatch {
  start: number;
  end: number;
  name: string;
  args: string;
}

/**
 * The matches of `re_extra_net` in linear time (the regex rescans to the end of the prompt from
 * every `<` when no `>` follows). A tag is `<`, a maximal run of word characters, `:`, then at least
 * one character up to the first `>`.
 */
export function findExtraNetworkTags(prompt: string): TagMatch[] {
  const out: TagMatch[] = [];
  let gt = -2; // the first '>' at or after the scan position; -2: not looked up yet
  for (let p = prompt.indexOf('<'); p >= 0; p = prompt.indexOf('<', p + 1)) {
    RE_TAG_NAME.lastIndex = p + 1;
    if (!RE_TAG_NAME.test(prompt)) continue;
    const argsStart = RE_TAG_NAME.lastIndex;
    if (gt !== -1 && gt < argsStart) gt = prompt.indexOf('>', argsStart);
    if (gt === -1) break; // no '>' anywhere after: no more tags
    if (gt === argsStart) continue; // `<name:>` has no arguments
    out.push({
      start: p,
      end: gt + 1,
      name: prompt.slice(p + 1, argsStart - 1),
      args: prompt.slice(argsStart, gt),
    });
    p = gt; // matches do not overlap
  }
  return out;
}

/** One tag: `<name:items...>`; items of the form `key=value` are also in `named`. */
export interface ExtraNetworkParams {
  /** The tag's kind: `lora`, `lyco`, `hypernet`, ... (as written, case kept). */
  name: string;
  /** Every `:`-separated argument, as written. */
  items: string[];
  /** The arguments that are not `key=value`. */
  positional: string[];
  /** `key=value` arguments (an item with two or more `=` stays positional, as in A1111). */
  named: Record<string, string>;
}

export interface ParsedExtraNetworks {
  /** The prompt with the tags removed. */
  prompt: string;
  /** The tags, in the order they appear. */
  networks: ExtraNetworkParams[];
}

function params(name: string, args: string): ExtraNetworkParams {
  const items = args.split(':');
  const positional: string[] = [];
  const named: Record<string, string> = {};
  for (const item of items) {
    const parts = splitMax(item, '=', 2);
    if (parts.length === 2) named[parts[0]] = parts[1];
    else positional.push(item);
  }
  return { name, items, positional, named };
}

/** Python's `s.split(sep, maxsplit)`. */
function splitMax(s: string, sep: string, maxsplit: number): string[] {
  const out: string[] = [];
  let rest = s;
  while (out.length < maxsplit) {
    const i = rest.indexOf(sep);
    if (i < 0) break;
    out.push(rest.slice(0, i));
    rest = rest.slice(i + sep.length);
  }
  out.push(rest);
  return out;
}

/** Remove the extra-network tags from one prompt and return them. */
export function parseExtraNetworks(prompt: string): ParsedExtraNetworks {
  const networks: ExtraNetworkParams[] = [];
  let stripped = '';
  let copied = 0;
  for (const tag of findExtraNetworkTags(prompt)) {
    networks.push(params(tag.name, tag.args));
    stripped += prompt.slice(copied, tag.start);
    copied = tag.end;
  }
  stripped += prompt.slice(copied);
  return { prompt: stripped, networks };
}

/**
 * A1111's `parse_prompts`: every prompt is stripped, but only the first prompt's tags are returned
 * (a batch shares one set of networks).
 */
export function parseExtraNetworkPrompts(prompts: readonly string[]): {
  prompts: string[];
  networks: ExtraNetworkParams[];
} {
  const parsed = prompts.map(parseExtraNetworks);
  return { prompts: parsed.map((p) => p.prompt), networks: parsed[0]?.networks ?? [] };
}

/** The tags grouped by kind (`{lora: [...], hypernet: [...]}`), in first-seen order, as A1111 keeps them. */
export function groupExtraNetworks(
  networks: readonly ExtraNetworkParams[],
): Map<string, ExtraNetworkParams[]> {
  const groups = new Map<string, ExtraNetworkParams[]>();
  for (const n of networks) {
    const list = groups.get(n.name);
    if (list) list.push(n);
    else groups.set(n.name, [n]);
  }
  return groups;
}
