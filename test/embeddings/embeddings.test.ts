import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  EmbeddingDatabase,
  findEmbeddingAtPosition,
  loadEmbeddingFile,
  type EmbeddingVectors,
} from '../../src/prompt/embeddings.js';
import { lcgStream } from '../../src/prompt/embedding-image.js';
import { ClipTokenizer } from '../../src/prompt/tokenizer.js';
import type { EmbeddingLookup } from '../../src/prompt/chunking.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';

interface Expected {
  format: string;
  a1111_name: string;
  vectors: number;
  shape: number;
  step: number | null;
  sd_checkpoint: string | null;
  sd_checkpoint_name: string | null;
  vec: number[][] | { clip_l: number[][]; clip_g: number[][] };
  sha256: string;
}
const spec = JSON.parse(readFileSync(goldenPath('formats', 'embeddings.json'), 'utf8')) as {
  files: Record<string, Expected>;
};

function expectRows(actual: EmbeddingVectors, rows: number[][]): void {
  expect(actual.vectors).toBe(rows.length);
  expect(actual.shape).toBe(rows[0].length);
  // Exact: the files hold float32 values and the golden lists them exactly.
  expect(Array.from(actual.vec)).toEqual(rows.flat().map((v) => Math.fround(v)));
}

describe('every golden embedding file loads as A1111 loads it', () => {
  it('golden file lists embeddings', () => expect(Object.keys(spec.files).length).toBeGreaterThan(0));
  for (const [file, exp] of Object.entries(spec.files)) {
    it(`${file} (${exp.format.slice(0, 40)})`, async () => {
      const emb = await loadEmbeddingFile(goldenPath('formats', file));
      expect(emb).toBeDefined();
      expect(emb!.name).toBe(exp.a1111_name);
      expect(emb!.vectors).toBe(exp.vectors);
      expect(emb!.shape).toBe(exp.shape);
      expect(emb!.step).toBe(exp.step);
      expect(emb!.checkpoint).toBe(exp.sd_checkpoint);
      expect(emb!.checkpointName).toBe(exp.sd_checkpoint_name);
      expect(emb!.sha256).toBe(exp.sha256);
      expect(emb!.hash).toBe(exp.sha256.slice(0, 12));
      if (Array.isArray(exp.vec)) expectRows(emb!, exp.vec);
      else {
        expectRows(emb!.parts!.clip_l, exp.vec.clip_l);
        expectRows(emb!.parts!.clip_g, exp.vec.clip_g);
        // Full-width rows are clip_l then clip_g, as SDXL concatenates the encoders' outputs.
        expect(Array.from(emb!.vec.subarray(0, emb!.shape))).toEqual(
          [...exp.vec.clip_l[0], ...exp.vec.clip_g[0]].map((v) => Math.fround(v)),
        );
      }
    });
  }
});

describe('EmbeddingDatabase', () => {
  it('loads a folder: wrong widths are skipped with a warning naming the file, bad files reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-emb-'));
    mkdirSync(join(dir, 'sub'));
    for (const f of Object.keys(spec.files))
      copyFileSync(goldenPath('formats', f), join(dir, 'sub', f.split('/').pop()!));
    writeFileSync(join(dir, 'broken.pt'), 'this is not a torch file');
    writeFileSync(join(dir, 'empty.pt'), '');
    writeFileSync(join(dir, 'notes.txt'), 'ignored');
    writeFileSync(join(dir, 'cover.preview.png'), 'ignored too');
    symlinkSync(dir, join(dir, 'sub', 'loop'));
    const db = await EmbeddingDatabase.loadDir(dir, { expectedWidth: 768 });
    const list = db.list();
    const byName = new Map(Object.values(spec.files).map((e) => [e.a1111_name, e]));
    for (const [name, e] of byName) {
      const bucket = e.shape === 768 ? list.loaded : list.skipped;
      expect(bucket[name]).toEqual({
        step: e.step,
        sd_checkpoint: e.sd_checkpoint,
        sd_checkpoint_name: e.sd_checkpoint_name,
        shape: e.shape,
        vectors: e.vectors,
      });
    }
    for (const e of byName.values()) {
      if (e.shape !== 768) expect(db.warnings.join('\n')).toContain(e.a1111_name);
    }
    expect(db.errors.map((x) => x.path)).toEqual([join(dir, 'broken.pt')]);
    expect(db.get('a1111-ti')?.vectors).toBe(3);
    // The prompt chunker takes the loaded map as it is.
    const lookup: EmbeddingLookup = db.loaded;
    expect(lookup instanceof Map && lookup.get('a1111-ti')?.vectors).toBe(3);
    expect(db.get('sdxl-ti')).toBeUndefined();
  });
  it('without an expected width everything loads; a missing folder is empty', async () => {
    const db = await EmbeddingDatabase.loadDir(goldenPath('formats', 'embeddings'));
    expect(db.skipped.size).toBe(0);
    expect(db.loaded.size).toBeGreaterThan(0);
    expect((await EmbeddingDatabase.loadDir('/nonexistent/embeddings')).loaded.size).toBe(0);
  });
  it('indexes names by CLIP token ids, longest match first, and formats TI hashes', async () => {
    const tok = await ClipTokenizer.load(clipVocabPath());
    const db = await EmbeddingDatabase.loadDir(goldenPath('formats', 'embeddings'), { expectedWidth: 768 });
    const index = db.tokenIndex((t) => tok.encode(t));
    const tokens = tok.encode('a photo by a1111-ti-legacy and png-embed');
    const found: string[] = [];
    for (let i = 0; i < tokens.length;) {
      const m = findEmbeddingAtPosition(index, tokens, i);
      if (m) found.push(m.embedding.name);
      i += m ? m.length : 1;
    }
    expect(found).toEqual(['a1111-ti-legacy', 'png-embed']);
    const used = [db.get('a1111-ti')!, { ...db.get('png-embed')!, name: 'odd: name, here' }];
    expect(EmbeddingDatabase.tiHashes(used)).toBe(
      `a1111-ti: ${used[0].hash}, odd name here: ${used[1].hash}`,
    );
  });
});

it('the LCG stream equals image_embedding.py reference_random', () => {
  const g = lcgStream();
  const first = Array.from({ length: 12 }, () => g.next().value);
  expect(first).toEqual([253, 242, 127, 44, 157, 27, 239, 133, 38, 79, 167, 4]);
});

describe('odd and hostile embedding files', () => {
  const f32 = (shape: number[]) =>
    float32ArrayToTensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5), shape);
  it('safetensors with several terms, or 3-D tensors, are errors naming the file; a 1-D tensor is one vector', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-emb-'));
    await writeSafetensors(join(dir, 'two.safetensors'), [
      ['a', f32([1, 768])],
      ['b', f32([1, 768])],
    ]);
    await writeSafetensors(join(dir, 'cube.safetensors'), [['emb_params', f32([2, 2, 768])]]);
    await writeSafetensors(join(dir, 'one.safetensors'), [['emb_params', f32([768])]]);
    const db = await EmbeddingDatabase.loadDir(dir, { expectedWidth: 768 });
    expect(db.errors.map((e) => e.path).sort()).toEqual([
      join(dir, 'cube.safetensors'),
      join(dir, 'two.safetensors'),
    ]);
    expect(db.warnings.some((w) => w.includes('two.safetensors') && w.includes('multiple terms'))).toBe(true);
    expect(db.get('one')).toMatchObject({ vectors: 1, shape: 768 });
  });
  it('embedding images: a plain image holds none; bad JSON, ragged or inflated tensors are errors', async () => {
    const { default: sharp } = await import('sharp');
    const { addPngTextChunk } = await import('../../src/formats/png-chunks.js');
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-emb-'));
    const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
      .png()
      .toBuffer();
    writeFileSync(join(dir, 'plain.png'), png);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64');
    const chunk = (name: string, text: string) =>
      writeFileSync(join(dir, name), addPngTextChunk(png, 'sd-ti-embedding', text));
    chunk('badjson.png', Buffer.from('{not json').toString('base64'));
    chunk('ragged.png', b64({ string_to_param: { '*': { TORCHTENSOR: [[1, 2], [3]] } } }));
    chunk(
      'inflated.png',
      b64({ string_to_param: { '*': { TORCHTENSOR: [Array(5000).fill(0), ...Array(5000).fill(0)] } } }),
    );
    chunk(
      'good.png',
      b64({ name: 'inside', step: 3, string_to_param: { '*': { TORCHTENSOR: [[1, 2, 3]] } } }),
    );
    const db = await EmbeddingDatabase.loadDir(dir);
    expect(db.errors.map((e) => e.path).sort()).toEqual(
      ['badjson.png', 'inflated.png', 'ragged.png'].map((f) => join(dir, f)),
    );
    expect([...db.loaded.keys()]).toEqual(['inside']);
    expect(Array.from(db.get('inside')!.vec)).toEqual([1, 2, 3]);
  });
});
