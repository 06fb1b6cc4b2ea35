/**
 * Composable diffusion (`a cat AND a dog:0.8`), as A1111's `get_multicond_prompt_list`: prompts are
 * split on the word `AND`, each part may end in `:weight`, and equal sub-prompts share one index.
 */
import { PY_DIGIT, PY_SPACE, PY_WORD, pyFloat } from './pychars.js';

const RE_AND = new RegExp(`(?<![${PY_WORD}])AND(?![${PY_WORD}])`, 'u');
// Python's `^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$` (search, no flags).
const RE_WEIGHT = new RegExp(
  `^([^]*?)(?:[${PY_SPACE}]*:[${PY_SPACE}]*([-+]?(?:[${PY_DIGIT}]+\\.?|[${PY_DIGIT}]*\\.[${PY_DIGIT}]+)))?[${PY_SPACE}]*$`,
  'u',
);

export interface MulticondPromptList {
  /** Per prompt: `[index into promptFlatList, weight]` for each AND part. */
  resIndexes: [index: number, weight: number][][];
  /** The distinct sub-prompts, in first-seen order. */
  promptFlatList: string[];
  /** Sub-prompt text -> its index. */
  promptIndexes: Map<string, number>;
}

/** Split one AND part into its text and weight (1.0 when it has none). */
export function splitSubpromptWeight(subprompt: string): [text: string, weight: number] {
  const m = RE_WEIGHT.exec(subprompt);
  if (!m) return [subprompt, 1.0];
  return [m[1], m[2] === undefined ? 1.0 : pyFloat(m[2])];
}

export function getMulticondPromptList(prompts: readonly string[]): MulticondPromptList {
  const resIndexes: [number, number][][] = [];
  const promptFlatList: string[] = [];
  const promptIndexes = new Map<string, number>();
  for (const prompt of prompts) {
    const indexes: [number, number][] = [];
    for (const subprompt of prompt.split(RE_AND)) {
      const [text, weight] = splitSubpromptWeight(subprompt);
      let index = promptIndexes.get(text);
      if (index === undefined) {
        index = promptFlatList.length;
        promptFlatList.push(text);
        promptIndexes.set(text, index);
      }
      indexes.push([index, weight]);
    }
    resIndexes.push(indexes);
  }
  return { resIndexes, promptFlatList, promptIndexes };
}
