/**
 * Long prompts and many AND parts: every prompt the limits admit runs, with each onnxruntime run
 * kept to a bounded batch; past the limits, a UserError that says what to do.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generate } from '../../src/pipeline/generate.js';
import type { LoadedModel } from '../../src/pipeline/model.js';
import { withDefaults } from '../../src/params/generation.js';
import { MAX_PROMPT_CHUNKS, MAX_PROMPT_PARTS } from '../../src/prompt/limits.js';
import { MAX_TEXT_ROWS, MAX_UNET_CONTEXT_TOKENS } from '../../src/runtime/sd1.js';
import { UserError } from '../../src/util/errors.js';
import { loadTinyModel } from '../helpers/tiny-model.js';

let model: LoadedModel;
beforeAll(async () => {
  model = await loadTinyModel();
});
afterAll(async () => {
  await model?.release();
});

/** `n` chunks of 75 tokens: single-token words, commas, no chunk-splitting surprises. */
const WORDS = ['red', 'blue', 'cat', 'dog', 'tree', 'house', 'sky', 'sun', 'moon'];
const chunksOf = (n: number) => Array.from({ length: n * 75 }, (_, i) => WORDS[i % WORDS.length]).join(' ');
const parts = (n: number) => Array.from({ length: n }, (_, i) => `cube ${i}`).join(' AND ');
const params = (prompt: string) => withDefaults({ prompt, width: 64, height: 64, steps: 1, seed: 3 });

/** Runs `fn`, recording the batch of every onnxruntime run: [rows, context tokens]. */
async function runsOf(fn: () => Promise<unknown>): Promise<{ text: number[]; unet: [number, number][] }> {
  const engine = model.engine as unknown as {
    run: (s: unknown, feeds: Record<string, { dims: readonly number[] }>, o: string[]) => Promise<unknown>;
  };
  const text: number[] = [];
  const unet: [number, number][] = [];
  const original = engine.run.bind(engine);
  const spy = vi.spyOn(engine, 'run').mockImplementation((s, feeds, o) => {
    if (feeds.context) unet.push([feeds.context.dims[0]!, feeds.context.dims[1]!]);
    const ids = feeds.inputs_embeds ?? feeds.input_ids;
    if (ids) text.push(ids.dims[0]!);
    return original(s, feeds, o);
  });
  try {
    await fn();
  } finally {
    spy.mockRestore();
  }
  return { text, unet };
}

describe('long prompts', () => {
  it(`${MAX_PROMPT_CHUNKS} chunks of 75 tokens (the limit) generate, the UNet a bounded batch at a time`, async () => {
    const runs = await runsOf(() => generate(model, params(chunksOf(MAX_PROMPT_CHUNKS)), 'txt2img'));
    expect(runs.unet.some(([, tokens]) => tokens === 77 * MAX_PROMPT_CHUNKS)).toBe(true);
    for (const [rows, tokens] of runs.unet)
      expect(rows === 1 || rows * tokens <= MAX_UNET_CONTEXT_TOKENS).toBe(true);
  });

  it(`${MAX_PROMPT_PARTS} AND parts (the limit) generate, text encoder and UNet in bounded batches`, async () => {
    const runs = await runsOf(() => generate(model, params(parts(MAX_PROMPT_PARTS)), 'txt2img'));
    expect(runs.text.length).toBeGreaterThan(1);
    expect(Math.max(...runs.text)).toBeLessThanOrEqual(MAX_TEXT_ROWS);
    expect(runs.unet.reduce((n, [rows]) => n + rows, 0)).toBe(MAX_PROMPT_PARTS + 1);
    for (const [rows, tokens] of runs.unet)
      expect(rows * tokens).toBeLessThanOrEqual(MAX_UNET_CONTEXT_TOKENS);
  });

  it('past the limits: a UserError saying what to do, for the prompt and the negative prompt', async () => {
    const tooLong = generate(model, params(chunksOf(MAX_PROMPT_CHUNKS + 1)), 'txt2img');
    await expect(tooLong).rejects.toThrow(UserError);
    await expect(tooLong).rejects.toThrow(
      new RegExp(`${MAX_PROMPT_CHUNKS + 1} chunks of 75 tokens.*shorten`),
    );
    const tooMany = generate(model, params(parts(MAX_PROMPT_PARTS + 1)), 'txt2img');
    await expect(tooMany).rejects.toThrow(new RegExp(`${MAX_PROMPT_PARTS + 1} AND parts`));
    const negative = generate(
      model,
      withDefaults({ ...params('a cube'), negative_prompt: chunksOf(MAX_PROMPT_CHUNKS + 1) }),
      'txt2img',
    );
    await expect(negative).rejects.toThrow(UserError);
  });
});
