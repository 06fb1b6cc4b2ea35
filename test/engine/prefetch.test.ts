/**
 * runtime/prefetch.ts: reading a weights file through in a worker thread before onnxruntime maps
 * it. It is an optimisation only, so every failure must leave the caller going on.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prefetchFile } from '../../src/runtime/prefetch.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-prefetch-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('prefetchFile', () => {
  it('reads a file larger than its buffer to the end and resolves, leaving it unchanged', async () => {
    const path = join(dir, 'weights.bin');
    const data = Buffer.alloc(9 * 2 ** 20 + 123, 7);
    writeFileSync(path, data);
    await expect(prefetchFile(path)).resolves.toBeUndefined();
    expect(readFileSync(path).equals(data)).toBe(true);
    writeFileSync(join(dir, 'empty.bin'), '');
    await expect(prefetchFile(join(dir, 'empty.bin'))).resolves.toBeUndefined();
  });

  it('resolves, never rejects, for a missing file or a folder', async () => {
    await expect(prefetchFile(join(dir, 'missing.bin'))).resolves.toBeUndefined();
    await expect(prefetchFile(dir)).resolves.toBeUndefined();
  });
});
