import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensorsHeader, writeSafetensors } from '../../src/formats/safetensors.js';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { saveStyles } from '../../src/prompt/styles.js';
import { ClipTokenizer } from '../../src/prompt/tokenizer.js';
import { clipVocabPath } from '../helpers/golden.js';
import { call, makeDataDir, startServer, tinyCheckpoint, type TestServer } from './helpers.js';

describe('POST /api/v1/tokenize', () => {
  let server: TestServer;
  let dataDir: string;
  let tok: ClipTokenizer;
  const count = (body: unknown) => call(server.url, '/api/v1/tokenize', { body });

  beforeAll(async () => {
    dataDir = makeDataDir();
    tok = await ClipTokenizer.load(clipVocabPath());
    server = await startServer(dataDir);
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('counts as A1111 shows it: N/75, tags stripped, BREAK closing a chunk', async () => {
    const r = await count({ prompt: '<lora:x:1>a red cube, (shiny:1.2)' });
    expect(r.status).toBe(200);
    const n = tok.encode('a red cube, shiny').length;
    expect(r.body).toEqual({ token_count: n, max_length: 75, chunks: [n] });
    const b = await count({ prompt: 'a red cube BREAK table' });
    expect(b.body).toMatchObject({ token_count: 75 + tok.encode('table').length, max_length: 150 });
  });

  it('an embedding put in the folder takes its vector count, found without a restart', async () => {
    const before = (await count({ prompt: 'tokcountemb' })).body.token_count;
    expect(before).toBe(tok.encode('tokcountemb').length);
    mkdirSync(join(dataDir, 'embeddings'), { recursive: true });
    const vectors = 7;
    await writeSafetensors(join(dataDir, 'embeddings', 'tokcountemb.safetensors'), [
      ['emb_params', float32ArrayToTensor(new Float32Array(vectors * 768).fill(0.1), [vectors, 768])],
    ]);
    expect((await count({ prompt: 'tokcountemb' })).body.token_count).toBe(vectors);
  });

  it('with the model loaded, only embeddings of its text width count (as in generation)', async () => {
    // The text encoder's width, from the checkpoint itself (SD 1.x: the token embedding's columns).
    const header = await readSafetensorsHeader(tinyCheckpoint());
    const w = header.tensors.find((t) => t.name.endsWith('token_embedding.weight'))!.shape[1];
    await writeSafetensors(join(dataDir, 'embeddings', 'fitsthemodel.safetensors'), [
      ['emb_params', float32ArrayToTensor(new Float32Array(3 * w).fill(0.1), [3, w])],
    ]);
    expect((await call(server.url, '/sdapi/v1/reload-checkpoint', { method: 'POST' })).status).toBe(200);
    const listed = (await call(server.url, '/sdapi/v1/embeddings')).body;
    expect(w).not.toBe(768);
    expect(Object.keys(listed.loaded)).toContain('fitsthemodel');
    expect(Object.keys(listed.skipped)).toContain('tokcountemb');
    expect((await count({ prompt: 'fitsthemodel' })).body.token_count).toBe(3);
    expect((await count({ prompt: 'tokcountemb' })).body.token_count).toBe(tok.encode('tokcountemb').length);
    const cards = (await call(server.url, '/api/v1/extra-networks')).body.items as {
      name: string;
      compatible?: boolean;
    }[];
    expect(cards.find((c) => c.name === 'tokcountemb')?.compatible).toBe(false);
    expect(cards.find((c) => c.name === 'fitsthemodel')?.compatible).toBe(true);
  });

  it('applies styles first and splits only a positive prompt on AND', async () => {
    const pos = await count({ prompt: 'cat AND a dog in a field' });
    expect(pos.body.token_count).toBe(tok.encode('a dog in a field').length);
    const neg = await count({ prompt: 'cat AND a dog in a field', negative: true });
    expect(neg.body.token_count).toBe(tok.encode('cat AND a dog in a field').length);
    await saveStyles(join(dataDir, 'styles.csv'), [
      { name: 'painterly', prompt: '{prompt}, oil painting', negativePrompt: 'blurry, lowres' },
    ]);
    const styled = await count({ prompt: 'cat', styles: ['painterly'] });
    expect(styled.body.token_count).toBe(tok.encode('cat, oil painting').length);
    const styledNeg = await count({ prompt: 'ugly', styles: ['painterly'], negative: true });
    expect(styledNeg.body.token_count).toBe(tok.encode('ugly, blurry, lowres').length);
  });

  it('bad input is a 422 naming the field', async () => {
    for (const [body, field] of [
      [{}, 'prompt'],
      [{ prompt: 'x'.repeat(100_001) }, 'prompt'],
      [{ prompt: 'x', steps: 0 }, 'steps'],
      [{ prompt: 'x', steps: 1_000_000 }, 'steps'],
      // A count that would hold the server for seconds (schedules are built per step).
      [{ prompt: '[a|b] '.repeat(5000), steps: 1000 }, 'prompt'],
      [{ prompt: 'x', checkpoint: 'no-such-model' }, 'checkpoint'],
      [{ prompt: 'x', styles: [{}] }, 'styles'],
    ] as const) {
      const r = await count(body);
      expect(r.status, JSON.stringify(body)).toBe(422);
      expect(JSON.stringify(r.body.detail), JSON.stringify(body)).toContain(field);
    }
  });

  it('is in the OpenAPI document', async () => {
    const doc = await call(server.url, '/openapi.json');
    expect(Object.keys(doc.body.paths)).toContain('/api/v1/tokenize');
  });
});
