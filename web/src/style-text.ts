/**
 * A1111's "apply styles" button in the page: each selected style's text merged into the prompt
 * (`{prompt}` replaced by the prompt, else appended after ", "), the same merge generation does on
 * the server (src/prompt/styles.ts `mergePrompts`; that module reads files, so it stays there).
 */
import type { PromptStyle } from './api.ts';

export function mergeStyle(styleText: string, prompt: string): string {
  if (styleText.includes('{prompt}')) return styleText.replaceAll('{prompt}', prompt);
  return [prompt.trim(), styleText.trim()].filter((p) => p !== '').join(', ');
}

export function applyStyleTexts(
  prompt: string,
  negative: string,
  names: readonly string[],
  styles: readonly PromptStyle[],
): { prompt: string; negative: string } {
  let p = prompt;
  let n = negative;
  for (const name of names) {
    const s = styles.find((x) => x.name === name);
    if (!s) continue;
    p = mergeStyle(s.prompt ?? '', p);
    n = mergeStyle(s.negative_prompt ?? '', n);
  }
  return { prompt: p, negative: n };
}
