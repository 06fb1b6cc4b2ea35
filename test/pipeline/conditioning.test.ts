import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer } from '../../src/prompt/tokenizer.js';
import { Conditioner, applyEmphasisOriginal, type TextEmbedding } from '../../src/pipeline/conditioning.js';
import { loadSd1, type Sd1Model } from '../../src/runtime/sd1.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';

let engine: Sd1Model;
let tokenizer: ClipTokenizer;
beforeAll(async () => {
  engine = await loadSd1(goldenPath('tiny-sd', 'tiny-sd.safetensors'));
  tokenizer = await ClipTokenizer.load(clipVocabPath());
});
afterAll(async () => {
  await engine?.release();
});

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('Conditioner', () => {
  it('matches the encoder on the tokenized prompt, and chunks long prompts into 77-token blocks', async () => {
    const c = new Conditioner({ model: engine, tokenizer, clipSkip: 1 });
    const [entry] = await c.schedule('a photo of a cat', 20);
    expect(entry!.endAtStep).toBe(20);
    const ids = [tokenizer.bos, ...tokenizer.encode('a photo of a cat')];
    while (ids.length < 77) ids.push(tokenizer.eos);
    const direct = await engine.encodeIds(Int32Array.from(ids), 1, 1);
    expect(maxDiff(entry!.cond.data, direct.data)).toBeLessThan(1e-6);
    const long = await c.schedule(Array(100).fill('cat').join(' '), 20);
    expect(long[0]!.cond.dims).toEqual([154, 64]);
  });

  it('prompt editing switches the conditioning at the step, AND parts keep their weights', async () => {
    const c = new Conditioner({ model: engine, tokenizer, clipSkip: 1 });
    const sched = await c.schedule('a [cat:dog:2] house', 4);
    expect(sched.map((e) => e.endAtStep)).toEqual([2, 4]);
    const cat = (await c.schedule('a cat house', 4))[0]!.cond;
    const dog = (await c.schedule('a dog house', 4))[0]!.cond;
    expect(maxDiff(sched[0]!.cond.data, cat.data)).toBeLessThan(1e-6);
    expect(maxDiff(sched[1]!.cond.data, dog.data)).toBeLessThan(1e-6);
    const img = await c.forImage('a cat AND a dog :0.5', 'ugly', 4);
    expect(img.parts.map((p) => p.weight)).toEqual([1, 0.5]);
    expect(img.uncond).toHaveLength(1);
  });

  it('clip skip 2 differs from 1', async () => {
    const a = (await new Conditioner({ model: engine, tokenizer, clipSkip: 1 }).schedule('a cat', 1))[0]!
      .cond;
    const b = (await new Conditioner({ model: engine, tokenizer, clipSkip: 2 }).schedule('a cat', 1))[0]!
      .cond;
    expect(maxDiff(a.data, b.data)).toBeGreaterThan(1e-3);
  });

  it('splices a textual-inversion embedding in place of its name', async () => {
    const catId = tokenizer.encode('cat')[0]!;
    const ids = new Int32Array(77).fill(catId);
    const table = await engine.tokenEmbeddings(ids, 1);
    const width = engine.config.text.width;
    const emb: TextEmbedding = { name: 'mycatemb', vectors: 1, vec: table.data.slice(0, width) };
    const c = new Conditioner({
      model: engine,
      tokenizer,
      clipSkip: 1,
      embeddings: new Map([[emb.name, emb]]),
    });
    const withEmb = (await c.schedule('a mycatemb house', 1))[0]!.cond;
    const plain = (await c.schedule('a cat house', 1))[0]!.cond;
    expect(maxDiff(withEmb.data, plain.data)).toBeLessThan(1e-6);
    expect([...c.usedEmbeddings]).toEqual(['mycatemb']);
  });
});

describe('emphasis (A1111 Original)', () => {
  it('scales tokens by their weight and restores the mean', () => {
    const z = Float32Array.from([1, 2, 3, 4, 5, 6]);
    applyEmphasisOriginal(z, [[1, 2, 1]], 2);
    const mean = z.reduce((a, v) => a + v, 0) / z.length;
    expect(mean).toBeCloseTo(3.5, 5);
    expect(z[2]! / z[0]!).toBeCloseTo(6, 5); // 3·2 / 1
    const same = Float32Array.from([1, 2]);
    applyEmphasisOriginal(same, [[1]], 2);
    expect(Array.from(same)).toEqual([1, 2]);
  });
});

describe("emphasis modes (A1111's emphasis setting) through the Conditioner", () => {
  const weighted = 'a (cat:1.5) house';
  const encode = async (text: string): Promise<Float32Array> => {
    const ids = [tokenizer.bos, ...tokenizer.encode(text)];
    while (ids.length < 77) ids.push(tokenizer.eos);
    return (await engine.encodeIds(Int32Array.from(ids), 1, 1)).data;
  };
  const run = async (emphasis: 'Original' | 'No norm' | 'Ignore' | 'None', text = weighted) =>
    (await new Conditioner({ model: engine, tokenizer, clipSkip: 1, emphasis }).schedule(text, 1))[0]!.cond
      .data;

  it('"No norm" multiplies the weighted token only; "Original" then restores the mean', async () => {
    const plain = await encode('a cat house');
    expect(tokenizer.encode('a cat house')).toHaveLength(3);
    const width = engine.config.text.width;
    // Row 2 is "cat" (BOS, "a", "cat", …): hand-computed expectations from the unweighted encoding.
    const noNorm = plain.slice();
    for (let k = 0; k < width; k++) noNorm[2 * width + k] = Math.fround(plain[2 * width + k]! * 1.5);
    const mean = (z: Float32Array) => z.reduce((a, v) => a + v, 0) / z.length;
    const ratio = mean(plain) / mean(noNorm);
    const original = noNorm.map((v) => v * ratio);

    expect(maxDiff(await run('No norm'), noNorm)).toBeLessThan(1e-5);
    expect(maxDiff(await run('Original'), original)).toBeLessThan(1e-5);
    expect(maxDiff(await run('Original'), noNorm)).toBeGreaterThan(1e-4);
  });

  it('"Ignore" drops the weights; "None" reads the brackets as text', async () => {
    expect(maxDiff(await run('Ignore'), await encode('a cat house'))).toBeLessThan(1e-6);
    const literal = await encode(weighted);
    expect(maxDiff(await run('None'), literal)).toBeLessThan(1e-6);
    expect(maxDiff(literal, await encode('a cat house'))).toBeGreaterThan(1e-3);
  });
});
