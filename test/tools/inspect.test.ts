import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectFile, parseMetadata } from '../../src/tools/inspect.js';
import { tinySdImage } from '../helpers/golden-cases.js';
import { goldenPath, readPythonJson } from '../helpers/golden.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-inspect-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe('inspectFile', () => {
  it('kohya metadata is shown parsed, as A1111 shows it', async () => {
    const kohya = readPythonJson<{
      cases: { kind: string; adapter?: string; metadata_raw?: Record<string, string> }[];
    }>('adapters', 'cases.json').cases.find(
      (c) => c.kind === 'lora_apply' && c.adapter && c.metadata_raw?.ss_tag_frequency,
    );
    expect(kohya, 'a LoRA case with kohya metadata (ss_tag_frequency)').toBeDefined();
    const r = await inspectFile(goldenPath('adapters', kohya!.adapter!), { cacheDir });
    expect(r.kind).toBe('lora');
    expect(typeof r.metadata.ss_tag_frequency).toBe('object');
    expect(r.hash?.addnet).toMatch(/^[0-9a-f]{64}$/);
    expect(parseMetadata({ a: '{"x": 1}', b: '{not json', c: 'plain' })).toEqual({
      a: { x: 1 },
      b: '{not json',
      c: 'plain',
    });
  });

  it("LoRA alpha: the modules' most common alpha, as A1111 reads it; none when the file has none", async () => {
    const cases = readPythonJson<{
      cases: {
        kind: string;
        adapter?: string;
        file_tensors?: string[];
        matched_modules?: { alpha: number | null }[];
      }[];
    }>('adapters', 'cases.json').cases.filter((c) => c.kind === 'lora_apply' && c.adapter);
    expect(cases.length).toBeGreaterThan(0);
    let checked = 0;
    for (const c of cases) {
      const r = await inspectFile(goldenPath('adapters', c.adapter!), { noHash: true });
      expect(r.kind, c.adapter).toBe('lora');
      const lora = r.config.lora!;
      if (!c.file_tensors!.some((k) => k.endsWith('.alpha'))) {
        expect(lora.alpha, c.adapter).toBeUndefined();
        continue;
      }
      const read = (c.matched_modules ?? []).map((m) => m.alpha).filter((a): a is number => a !== null);
      if (read.length === 0) continue;
      const counts = new Map<number, number>();
      for (const a of read) counts.set(a, (counts.get(a) ?? 0) + 1);
      const top = Math.max(...counts.values());
      expect(
        [...counts].filter(([, n]) => n === top).map(([a]) => a),
        c.adapter,
      ).toContain(lora.alpha);
      if (counts.size > 1) expect(Object.keys(lora.alphas ?? {}).length, c.adapter).toBeGreaterThan(1);
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('embedding .pt files report their A1111 fields (name, step, checkpoint)', async () => {
    const listing = JSON.parse(readFileSync(goldenPath('formats', 'embeddings.json'), 'utf8')) as {
      files: Record<string, { step: number | null; sd_checkpoint: string | null }>;
    };
    const pts = Object.entries(listing.files).filter(([f]) => f.endsWith('.pt'));
    expect(pts.length).toBeGreaterThan(0);
    for (const [f, e] of pts) {
      const r = await inspectFile(goldenPath('formats', f), { noHash: true });
      expect(r.kind).toBe('embedding');
      expect(r.hash).toBeNull();
      if (e.step !== null) expect(r.metadata.step, f).toBe(e.step);
      if (e.sd_checkpoint !== null) expect(r.metadata.sd_checkpoint, f).toBe(e.sd_checkpoint);
    }
  });

  it('embedding images (PNG/WebP) report vectors, width and the fields A1111 reads', async () => {
    const listing = JSON.parse(readFileSync(goldenPath('formats', 'embeddings.json'), 'utf8')) as {
      files: Record<
        string,
        {
          a1111_name: string;
          vectors: number;
          shape: number;
          step: number | null;
          sd_checkpoint: string | null;
          sha256: string;
        }
      >;
    };
    const images = Object.entries(listing.files).filter(([f]) => /\.(png|webp)$/i.test(f));
    expect(images.length).toBeGreaterThan(0);
    for (const [f, e] of images) {
      const r = await inspectFile(goldenPath('formats', f), { cacheDir });
      expect(r.kind, f).toBe('embedding');
      expect(r.config.embedding, f).toMatchObject({ format: 'image', vectors: e.vectors });
      if (e.shape !== 2048) expect(r.config.embedding!.dim, f).toBe(e.shape);
      expect(r.metadata, f).toMatchObject({
        name: e.a1111_name,
        step: e.step,
        sd_checkpoint: e.sd_checkpoint,
      });
      expect(r.hash?.sha256, f).toBe(e.sha256);
    }
    // An image with no embedding in it is a clear UserError, not a crash.
    await expect(inspectFile(tinySdImage(), { noHash: true })).rejects.toThrow(
      /without a textual-inversion embedding/,
    );
  });

  it('hypernetwork .pt files report layer_structure and activation as saved', async () => {
    const cases = readPythonJson<{
      cases: { kind: string; file?: string; created_with?: unknown }[];
    }>('adapters', 'cases.json').cases.filter(
      (c) => c.kind === 'hypernetwork' && c.file && typeof c.created_with === 'object',
    );
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) {
      const made = c.created_with as { layer_structure: number[]; activation_func: string };
      const r = await inspectFile(goldenPath('adapters', c.file!), { noHash: true });
      expect(r.metadata.layer_structure).toEqual(made.layer_structure);
      expect(r.metadata.activation_func).toBe(made.activation_func);
    }
  });
});
