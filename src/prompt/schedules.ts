/**
 * Prompt editing and alternation (`[from:to:when]`, `[to:when]`, `[from::when]`, `[a|b|c]`), as
 * A1111's `get_learned_conditioning_prompt_schedules` computes them with its lark grammar:
 *
 *     !start: (prompt | /[][():]/+)*
 *     prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
 *     !emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
 *     scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
 *     alternate: "[" prompt ("|" [prompt])+ "]"
 *     plain: /([^\\\[\]():|]|\\.)+/
 *
 * Inside `prompt` the grammar is unambiguous, so a bracket item starting at a position parses one way
 * (or not at all). Ambiguity lives only at the top level, where brackets and colons may also be stray
 * characters. lark's Earley parser resolves it at each node by rule order: the whole span as one
 * prompt, else all stray characters, else (a shorter span plus) a final prompt, else a final run of
 * stray characters. We follow the same order. Where lark's choice depends on Python's hash seed (the
 * length of a final stray run, as in `[a:b:5]]`), we take one of the results A1111 can give.
 * A prompt the grammar rejects is returned unchanged, as A1111 does.
 */
import { PY_SPACE } from './pychars.js';

/** One `[end_at_step, text]` entry: the text is used up to and including step `end_at_step`. */
export type ScheduleEntry = [endAtStep: number, text: string];

type Node = string | Scheduled | Alternate;
interface Scheduled {
  kind: 'scheduled';
  before: Node[] | null;
  after: Node[];
  number: string;
}
interface Alternate {
  kind: 'alternate';
  options: Node[][];
}
interface Item {
  end: number;
  nodes: Node[];
}

const SPACE = new RegExp(`[${PY_SPACE}]`, 'u');
const STRAY = '[]():';
const NOT_PLAIN = '\\[]():|';
const RE_NUMBER = /[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)/y;
/** Deeper nesting than this is treated as a grammar failure (Python would overflow its stack). */
const MAX_DEPTH = 400;

class DepthExceeded extends Error {}

/** Parses `prompt` chains and bracket items; items are memoised by start position. */
class ItemParser {
  private readonly memo = new Map<number, Item | null>();

  constructor(private readonly text: string) {}

  /** The `prompt` starting at `p`: its items and where it ends (at the first character it cannot take). */
  chain(p: number, depth: number): Item {
    const nodes: Node[] = [];
    for (;;) {
      const item = this.item(p, depth);
      if (!item) return { end: p, nodes };
      nodes.push(...item.nodes);
      p = item.end;
    }
  }

  /** The single item (plain text or bracket construct) starting at `p`, or null. */
  item(p: number, depth: number): Item | null {
    const hit = this.memo.get(p);
    if (hit !== undefined) return hit;
    const item = this.parseItem(p, depth);
    this.memo.set(p, item);
    return item;
  }

  private parseItem(p: number, depth: number): Item | null {
    const t = this.text;
    if (p >= t.length) return null;
    const c = t[p];
    if (c === '(' || c === '[') {
      if (depth >= MAX_DEPTH) throw new DepthExceeded();
      return c === '(' ? this.paren(p, depth + 1) : this.square(p, depth + 1);
    }
    // plain: ([^\\\[\]():|]|\\.)+ — a backslash takes the next character unless it is a newline.
    let q = p;
    while (q < t.length) {
      const ch = t[q];
      if (ch === '\\') {
        if (q + 1 < t.length && t[q + 1] !== '\n') {
          q += t.codePointAt(q + 1)! > 0xffff ? 3 : 2;
          continue;
        }
        break;
      }
      if (NOT_PLAIN.includes(ch)) break;
      q++;
    }
    return q > p ? { end: q, nodes: [t.slice(p, q)] } : null;
  }

  private paren(p: number, depth: number): Item | null {
    const t = this.text;
    const first = this.chain(p + 1, depth);
    if (t[first.end] === ')') return { end: first.end + 1, nodes: ['(', ...first.nodes, ')'] };
    if (t[first.end] !== ':') return null;
    const second = this.chain(first.end + 1, depth);
    if (t[second.end] !== ')') return null;
    return { end: second.end + 1, nodes: ['(', ...first.nodes, ':', ...second.nodes, ')'] };
  }

  private square(p: number, depth: number): Item | null {
    const t = this.text;
    const first = this.chain(p + 1, depth);
    const stop = t[first.end];
    if (stop === ']') return { end: first.end + 1, nodes: ['[', ...first.nodes, ']'] };
    if (stop === '|') {
      const options = [first.nodes];
      let q = first.end;
      while (t[q] === '|') {
        const next = this.chain(q + 1, depth);
        options.push(next.nodes);
        q = next.end;
      }
      if (t[q] !== ']') return null;
      return { end: q + 1, nodes: [{ kind: 'alternate', options }] };
    }
    if (stop !== ':') return null;
    // "[" prompt ":" [WS] NUMBER [WS] "]"
    const short = this.numberClose(first.end + 1);
    if (short)
      return {
        end: short.end,
        nodes: [{ kind: 'scheduled', before: null, after: first.nodes, number: short.number }],
      };
    // "[" prompt ":" prompt ":" [WS] NUMBER [WS] "]"
    const second = this.chain(first.end + 1, depth);
    if (t[second.end] !== ':') return null;
    const long = this.numberClose(second.end + 1);
    if (!long) return null;
    return {
      end: long.end,
      nodes: [{ kind: 'scheduled', before: first.nodes, after: second.nodes, number: long.number }],
    };
  }

  /** `[WS] NUMBER [WS] "]"` at `p`. */
  private numberClose(p: number): { number: string; end: number } | null {
    const t = this.text;
    while (p < t.length && SPACE.test(t[p])) p++;
    RE_NUMBER.lastIndex = p;
    const m = RE_NUMBER.exec(t);
    if (!m) return null;
    let q = p + m[0].length;
    while (q < t.length && SPACE.test(t[q])) q++;
    return t[q] === ']' ? { number: m[0], end: q + 1 } : null;
  }
}

/** The top-level parse as lark resolves it, or null where the grammar rejects the prompt. */
function parseSchedulePrompt(text: string): Node[] | null {
  const n = text.length;
  const parser = new ItemParser(text);
  try {
    const reach = new Uint8Array(n + 1);
    const itemFrom = new Int32Array(n + 1).fill(-1);
    reach[0] = 1;
    for (let p = 0; p < n; p++) {
      if (!reach[p]) continue;
      const item = parser.item(p, 0);
      if (item) {
        reach[item.end] = 1;
        if (itemFrom[item.end] < 0) itemFrom[item.end] = p;
      }
      if (STRAY.includes(text[p])) reach[p + 1] = 1;
    }
    if (!reach[n]) return null;

    const onChain0 = new Uint8Array(n + 1);
    for (let p = 0, item = parser.item(0, 0); item; item = parser.item(p, 0)) {
      p = item.end;
      onChain0[p] = 1;
    }
    let strayPrefix = 0;
    while (strayPrefix < n && STRAY.includes(text[strayPrefix])) strayPrefix++;

    // Walk back from the end, choosing at each span the derivation lark prefers.
    const pieces: Node[][] = [];
    let j = n;
    while (j > 0) {
      if (onChain0[j]) {
        pieces.push(chainUpTo(parser, j));
        j = 0;
      } else if (j <= strayPrefix) {
        pieces.push([text.slice(0, j)]);
        j = 0;
      } else if (itemFrom[j] >= 0) {
        pieces.push(parser.item(itemFrom[j], 0)!.nodes);
        j = itemFrom[j];
      } else {
        pieces.push([text[j - 1]]);
        j -= 1;
      }
    }
    return pieces.reverse().flat();
  } catch (e) {
    if (e instanceof DepthExceeded) return null;
    throw e;
  }
}

function chainUpTo(parser: ItemParser, end: number): Node[] {
  const nodes: Node[] = [];
  for (let p = 0; p < end;) {
    const item = parser.item(p, 0)!;
    nodes.push(...item.nodes);
    p = item.end;
  }
  return nodes;
}

interface StepOptions {
  steps: number;
  useOld: boolean;
  intOffset: number;
  fltOffset: number;
}

/** A1111's CollectSteps: each schedule's switch step, and every step where alternation is used. */
function resolveWhens(nodes: Node[], o: StepOptions, whens: Map<Scheduled, number>, out: Set<number>): void {
  for (const node of nodes) {
    if (typeof node === 'string') continue;
    if (node.kind === 'alternate') {
      for (let s = 1; s <= o.steps; s++) out.add(s);
      for (const opt of node.options) resolveWhens(opt, o, whens, out);
      continue;
    }
    let v = Number(node.number);
    if (o.useOld) v = v < 1 ? v * o.steps : v;
    else if (node.number.includes('.')) v = (v - o.fltOffset) * o.steps;
    else v = v - o.intOffset;
    const when = Math.min(o.steps, Math.trunc(v));
    whens.set(node, when);
    if (when >= 1) out.add(when);
    if (node.before) resolveWhens(node.before, o, whens, out);
    resolveWhens(node.after, o, whens, out);
  }
}

function textAtStep(nodes: Node[], step: number, whens: Map<Scheduled, number>): string {
  let s = '';
  for (const node of nodes) {
    if (typeof node === 'string') s += node;
    else if (node.kind === 'alternate')
      s += textAtStep(node.options[(step - 1) % node.options.length], step, whens);
    else if (step <= whens.get(node)!) s += node.before ? textAtStep(node.before, step, whens) : '';
    else s += textAtStep(node.after, step, whens);
  }
  return s;
}

/** The schedule of one prompt: `[[end_at_step, text], ...]`. */
export function getPromptSchedule(
  prompt: string,
  baseSteps: number,
  hiresSteps?: number | null,
  useOldScheduling = false,
): ScheduleEntry[] {
  const firstPass = hiresSteps === undefined || hiresSteps === null || useOldScheduling;
  const o: StepOptions = firstPass
    ? { steps: baseSteps, useOld: useOldScheduling, intOffset: 0, fltOffset: 0 }
    : { steps: hiresSteps, useOld: false, intOffset: baseSteps, fltOffset: 1.0 };
  const nodes = parseSchedulePrompt(prompt);
  if (!nodes) return [[o.steps, prompt]];
  const whens = new Map<Scheduled, number>();
  const steps = new Set<number>([o.steps]);
  resolveWhens(nodes, o, whens, steps);
  return [...steps].sort((a, b) => a - b).map((t) => [t, textAtStep(nodes, t, whens)]);
}

/**
 * A1111's `get_learned_conditioning_prompt_schedules(prompts, base_steps, hires_steps, use_old_scheduling)`.
 * The first pass calls it with `(steps)`, the hires pass with `(firstpass_steps, hires_steps)`.
 */
export function getLearnedConditioningPromptSchedules(
  prompts: readonly string[],
  baseSteps: number,
  hiresSteps?: number | null,
  useOldScheduling = false,
): ScheduleEntry[][] {
  const cache = new Map<string, ScheduleEntry[]>();
  return prompts.map((p) => {
    let s = cache.get(p);
    if (!s) cache.set(p, (s = getPromptSchedule(p, baseSteps, hiresSteps, useOldScheduling)));
    return s.map(([t, text]) => [t, text] as ScheduleEntry);
  });
}
