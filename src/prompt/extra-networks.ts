/**
 * Extra-network tags (`<lora:name:0.8>`, `<lyco:...>`, `<hypernet:...>`, any `<word:args>`), as A1111's
 * `extra_networks.parse_prompt`: tags are cut out of the prompt and returned with their arguments.
 */
import { PY_WORD } from './pychars.js';

const RE_EXTRA_NET = new RegExp(`<([${PY_WORD}]+):([^>]+)>`, 'gu');

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
  const stripped = prompt.replace(RE_EXTRA_NET, (_m, name: string, args: string) => {
    networks.push(params(name, args));
    return '';
  });
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
