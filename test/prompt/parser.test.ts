import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  getLearnedConditioningPromptSchedules,
  getMulticondPromptList,
  getPromptSchedule,
  groupExtraNetworks,
  parseExtraNetworkPrompts,
  parseExtraNetworks,
  parsePromptAttention,
  PromptSyntaxError,
  type ExtraNetworkParams,
  type ScheduleEntry,
} from '../../src/prompt/parser.js';
import { goldenPath } from '../helpers/golden.js';

const load = (name: string) => JSON.parse(readFileSync(goldenPath('prompt', name), 'utf8'));

/** Exact comparison of [text, number] lists: same strings, same doubles (=== after JSON.parse). */
function sameEntries(
  a: readonly (readonly [unknown, unknown])[],
  b: readonly (readonly [unknown, unknown])[],
): boolean {
  return a.length === b.length && a.every((x, i) => x[0] === b[i][0] && x[1] === b[i][1]);
}

describe('attention conformance (golden/prompt/attention.json)', () => {
  const golden = load('attention.json') as {
    cases: { prompt: string; result?: [string, number][]; error?: string }[];
  };
  it('gives A1111 fragments and weights for every case, and errors where A1111 raises', () => {
    const failures: string[] = [];
    for (const c of golden.cases) {
      if (c.error !== undefined) {
        let thrown: unknown;
        try {
          parsePromptAttention(c.prompt);
        } catch (e) {
          thrown = e;
        }
        if (!(thrown instanceof PromptSyntaxError)) failures.push(`${c.prompt}: expected ${c.error}`);
        continue;
      }
      const got = parsePromptAttention(c.prompt);
      if (!sameEntries(got, c.result!)) failures.push(`${c.prompt}: ${JSON.stringify(got)}`);
    }
    expect(failures).toEqual([]);
  });
});

interface ScheduleRun {
  steps: number;
  hires_steps: number | null;
  use_old_scheduling: boolean;
  schedule?: ScheduleEntry[];
  nondeterministic?: boolean;
  variants?: ScheduleEntry[][];
}

describe('schedule conformance (golden/prompt/schedules.json)', () => {
  const golden = load('schedules.json') as {
    cases: { prompt: string; runs: ScheduleRun[] }[];
    batch?: {
      prompts: string[];
      steps: number;
      hires_steps?: number | null;
      use_old_scheduling?: boolean;
      result: ScheduleEntry[][];
    };
  };
  it('gives A1111 schedules for every case and option set', () => {
    const failures: string[] = [];
    for (const c of golden.cases) {
      for (const r of c.runs) {
        const got = getPromptSchedule(c.prompt, r.steps, r.hires_steps, r.use_old_scheduling);
        // Where A1111 itself depends on the hash seed, any of its results is A1111's.
        const accepted = r.nondeterministic ? r.variants! : [r.schedule!];
        if (!accepted.some((s) => sameEntries(got, s)))
          failures.push(
            `${JSON.stringify(c.prompt)} @${r.steps}/${r.hires_steps}/${r.use_old_scheduling}: ${JSON.stringify(got)}`,
          );
      }
    }
    expect(failures).toEqual([]);
  });

  it('gives the batch call the same result', () => {
    if (!golden.batch) return;
    const b = golden.batch;
    const got = getLearnedConditioningPromptSchedules(
      b.prompts,
      b.steps,
      b.hires_steps,
      b.use_old_scheduling,
    );
    expect(got).toEqual(b.result);
  });
});

describe('AND conformance (golden/prompt/multicond.json)', () => {
  const golden = load('multicond.json');
  type Case = {
    prompt?: string;
    prompts?: string[];
    res_indexes: [number, number][][];
    prompt_flat_list: string[];
    prompt_indexes: Record<string, number>;
  };
  const batches: Case[] =
    golden.batch === undefined ? [] : Array.isArray(golden.batch) ? golden.batch : [golden.batch];
  it('splits, weighs and deduplicates sub-prompts as A1111 for every case', () => {
    for (const c of [...(golden.cases as Case[]), ...batches]) {
      const got = getMulticondPromptList(c.prompts ?? [c.prompt!]);
      expect(got.resIndexes).toEqual(c.res_indexes);
      expect(got.promptFlatList).toEqual(c.prompt_flat_list);
      expect([...got.promptIndexes]).toEqual(Object.entries(c.prompt_indexes));
    }
  });
});

describe('extra-network conformance (golden/prompt/extra_networks.json)', () => {
  const golden = load('extra_networks.json');
  const grouped = (nets: ExtraNetworkParams[]) =>
    Object.fromEntries(
      [...groupExtraNetworks(nets)].map(([k, v]) => [
        k,
        v.map((n) => ({ items: n.items, positional: n.positional, named: n.named })),
      ]),
    );
  it('strips tags and returns their arguments for every case', () => {
    for (const c of golden.cases) {
      const got = parseExtraNetworks(c.prompt);
      expect(got.prompt).toBe(c.stripped_prompt);
      expect(grouped(got.networks)).toEqual(c.networks);
    }
  });
  it('returns the first prompt’s networks for a batch', () => {
    for (const b of golden.batch ?? []) {
      const got = parseExtraNetworkPrompts(b.prompts);
      expect(got.prompts).toEqual(b.stripped_prompts);
      expect(grouped(got.networks)).toEqual(b.networks);
    }
  });
});

/** Deterministic pseudo-random prompts built from the syntax's characters. */
function* randomPrompts(count: number, maxLen: number, seed = 7): Generator<string> {
  const pool = [
    '(',
    ')',
    '[',
    ']',
    ':',
    '|',
    '\\',
    ' ',
    'a',
    'cat',
    '1',
    '0.5',
    '.',
    '-',
    'BREAK',
    'AND',
    '<lora:x:1>',
    '\n',
    'é',
    '🐱',
    '5]',
  ];
  let s = seed;
  const rnd = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  for (let i = 0; i < count; i++) {
    let p = '';
    const n = Math.floor(rnd() * maxLen);
    for (let j = 0; j < n; j++) p += pool[Math.floor(rnd() * pool.length)];
    yield p;
  }
}

describe('malformed and extreme prompts', () => {
  it('never throws on random syntax soup (attention raises only for a non-number weight)', () => {
    for (const p of randomPrompts(2000, 30)) {
      try {
        const frags = parsePromptAttention(p);
        expect(frags.length).toBeGreaterThan(0);
        expect(frags.every(([t, w]) => typeof t === 'string' && Number.isFinite(w))).toBe(true);
      } catch (e) {
        expect(e).toBeInstanceOf(PromptSyntaxError);
      }
      for (const [steps, hires, old] of [
        [20, null, false],
        [20, 10, false],
        [10, null, true],
      ] as const) {
        const sched = getPromptSchedule(p, steps, hires, old);
        const total = hires ?? steps;
        expect(sched.length).toBeGreaterThan(0);
        expect(sched[sched.length - 1][0]).toBe(total);
        for (let i = 1; i < sched.length; i++) expect(sched[i][0]).toBeGreaterThan(sched[i - 1][0]);
      }
      expect(getMulticondPromptList([p]).resIndexes[0].length).toBeGreaterThan(0);
      parseExtraNetworks(p);
    }
  });

  it('treats text without schedule syntax as one entry, unchanged', () => {
    expect(getPromptSchedule('a photo of a cat, (detailed:1.2)', 20)).toEqual([
      [20, 'a photo of a cat, (detailed:1.2)'],
    ]);
    expect(getPromptSchedule('', 20)).toEqual([[20, '']]);
    expect(parsePromptAttention('')).toEqual([['', 1]]);
  });

  it('handles deep nesting and unbalanced brackets without throwing', () => {
    const deep = '('.repeat(2000) + 'x' + ')'.repeat(2000);
    expect(parsePromptAttention(deep)[0][0]).toBe('x');
    expect(getPromptSchedule(deep, 20)).toEqual([[20, deep]]);
    const open = '[a:b:5'.repeat(500);
    expect(getPromptSchedule(open, 20)).toEqual([[20, open]]);
    expect(
      parsePromptAttention('((a')
        .map(([t]) => t)
        .join(''),
    ).toBe('a');
  });

  it('parses a 1000-token prompt with schedules quickly', () => {
    const unit = 'a [red:blue:0.5] (castle:1.2) on a [hill|mountain], ';
    const long = unit.repeat(150);
    const t0 = performance.now();
    const sched = getPromptSchedule(long, 20);
    const frags = parsePromptAttention(long);
    const ms = performance.now() - t0;
    expect(sched).toHaveLength(20);
    expect(sched[0][1]).toBe('a red (castle:1.2) on a hill, '.repeat(150));
    expect(frags.length).toBeGreaterThan(150);
    expect(ms).toBeLessThan(5000);
  });

  it('keeps escapes for the attention parser and resolves them there', () => {
    expect(getPromptSchedule('\\[a:b:5\\]', 20)).toEqual([[20, '\\[a:b:5\\]']]);
    expect(parsePromptAttention('\\(literal\\)')).toEqual([['(literal)', 1]]);
  });
});
