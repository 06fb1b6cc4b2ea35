/**
 * How large a prompt may be, beyond its length in characters (pipeline/params.ts LIMITS): every
 * 75-token chunk widens the UNet's cross-attention context by 77 tokens, and every AND part adds
 * a UNet row per image and step. Prompts within these limits run (the runtime encodes and calls
 * the UNet in bounded batches); larger ones are refused with a UserError, never a crash.
 */
import { UserError } from '../util/errors.js';

/** 75-token chunks in one prompt text (≈ 9 600 tokens). */
export const MAX_PROMPT_CHUNKS = 128;
/** AND parts in one prompt. */
export const MAX_PROMPT_PARTS = 256;

export function checkPromptChunks(chunks: number, what = 'the prompt'): void {
  if (chunks > MAX_PROMPT_CHUNKS) {
    throw new UserError(
      `${what} is ${chunks} chunks of 75 tokens long; at most ${MAX_PROMPT_CHUNKS} chunks ` +
        `(${MAX_PROMPT_CHUNKS * 75} tokens) are allowed: shorten it`,
    );
  }
}

export function checkPromptParts(parts: number): void {
  if (parts > MAX_PROMPT_PARTS) {
    throw new UserError(
      `the prompt has ${parts} AND parts; at most ${MAX_PROMPT_PARTS} are allowed: join some of them`,
    );
  }
}
