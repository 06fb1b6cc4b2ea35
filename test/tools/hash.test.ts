import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashCachePath, hashFile } from '../../src/tools/hash.js';
import { UserError } from '../../src/util/errors.js';
import { hypernetworkFile, matchedLoraFile } from '../helpers/golden-cases.js';
import { goldenPath, readPythonJson } from '../helpers/golden.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-hash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sha256sum(path: string): string {
  try {
    return execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(/\s+/)[0]!;
  } catch {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  }
}

/** A1111 sd_models.model_hash: sha256 of 0x10000 bytes at 0x100000, first 8 hex chars. */
function legacyOf(path: string): string {
  const bytes = readFileSync(path);
  return createHash('sha256').update(bytes.subarray(0x100000, 0x110000)).digest('hex').slice(0, 8);
}

describe('hashFile', () => {
  const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');

  it('sha256 matches sha256sum, autov2 is its first 10 chars, legacy is A1111 model_hash', async () => {
    for (const file of [tiny, matchedLoraFile()]) {
      const h = await hashFile(file, { noCache: true });
      expect(h.sha256).toBe(sha256sum(file));
      expect(h.autov2).toBe(h.sha256.slice(0, 10));
      expect(h.legacy).toBe(legacyOf(file));
    }
    // A file shorter than 1 MiB: A1111 hashes the empty read.
    const smallFile = join(dir, 'small.safetensors');
    writeFileSync(smallFile, readFileSync(tiny).subarray(0, 0x80000));
    const small = await hashFile(smallFile, { noCache: true });
    expect(small.legacy).toBe(createHash('sha256').digest('hex').slice(0, 8));
  });

  it("addnet hash equals A1111's LoRA hash for every LoRA case without a stored sshs_model_hash", async () => {
    const cases = readPythonJson<{
      cases: {
        kind: string;
        adapter?: string;
        metadata_raw?: Record<string, string>;
        a1111_on_disk?: { hash: string };
      }[];
    }>('adapters', 'cases.json').cases.filter(
      (c) => c.kind === 'lora_apply' && c.a1111_on_disk && !c.metadata_raw?.sshs_model_hash,
    );
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) {
      const h = await hashFile(goldenPath('adapters', c.adapter!), { noCache: true });
      expect(h.addnet, c.adapter).toBe(c.a1111_on_disk!.hash);
    }
    const notSafetensors = await hashFile(hypernetworkFile(), { noCache: true });
    expect(notSafetensors.addnet).toBeUndefined();
  });

  it('caches by path + size + mtime: the second call does not read the file', async () => {
    const cacheDir = join(dir, 'cache');
    const file = join(dir, 'model.safetensors');
    copyFileSync(matchedLoraFile(), file);
    const first = await hashFile(file, { cacheDir });
    expect(first.cached).toBe(false);
    const cache = JSON.parse(readFileSync(hashCachePath(cacheDir), 'utf8')) as {
      entries: Record<string, { sha256: string }>;
    };
    const entry = Object.values(cache.entries)[0]!;
    expect(entry.sha256).toBe(first.sha256);

    // Plant a marker in the cache: if the second call read the file it could not return it.
    entry.sha256 = 'f'.repeat(64);
    writeFileSync(hashCachePath(cacheDir), JSON.stringify(cache));
    const second = await hashFile(file, { cacheDir });
    expect(second.cached).toBe(true);
    expect(second.sha256).toBe('f'.repeat(64));

    // A changed mtime invalidates the entry.
    const later = new Date(Date.now() + 5000);
    utimesSync(file, later, later);
    const third = await hashFile(file, { cacheDir });
    expect(third.cached).toBe(false);
    expect(third.sha256).toBe(first.sha256);
  });

  it('a corrupt cache file is ignored, not fatal', async () => {
    const cacheDir = join(dir, 'corrupt');
    const file = join(dir, 'c.safetensors');
    copyFileSync(matchedLoraFile(), file);
    await hashFile(file, { cacheDir });
    writeFileSync(hashCachePath(cacheDir), '{"version": 1, "entries": ');
    const h = await hashFile(file, { cacheDir });
    expect(h.sha256).toBe(sha256sum(file));
  });

  it('a missing file or a folder is a UserError', async () => {
    await expect(hashFile(join(dir, 'nope.safetensors'), { noCache: true })).rejects.toThrow(UserError);
    await expect(hashFile(dir, { noCache: true })).rejects.toThrow(UserError);
  });
});
