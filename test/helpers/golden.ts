import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The golden-vector directory: $SDSTUDIO_GOLDEN, else ../shared/golden next to the repository. */
export function goldenDir(): string {
  return process.env.SDSTUDIO_GOLDEN
    ? resolve(process.env.SDSTUDIO_GOLDEN)
    : resolve(repoRoot, '..', 'shared', 'golden');
}

export function goldenPath(...parts: string[]): string {
  return join(goldenDir(), ...parts);
}

/** The CLIP BPE merges list used by tests: $SDSTUDIO_CLIP_VOCAB, else ../shared/data/clip. */
export function clipVocabPath(): string {
  const p = process.env.SDSTUDIO_CLIP_VOCAB
    ? resolve(process.env.SDSTUDIO_CLIP_VOCAB)
    : resolve(goldenDir(), '..', 'data', 'clip', 'bpe_simple_vocab_16e6.txt.gz');
  if (!existsSync(p)) throw new Error(`CLIP vocabulary not found at ${p}; set SDSTUDIO_CLIP_VOCAB`);
  return p;
}

/**
 * A golden JSON file as Python's json module wrote it: its NaN/Infinity tokens (which JSON.parse
 * refuses) read as null, so only read fields that never hold them.
 */
export function readPythonJson<T>(...parts: string[]): T {
  return JSON.parse(readFileSync(goldenPath(...parts), 'utf8').replace(/\b(NaN|-?Infinity)\b/g, 'null')) as T;
}
