import { beforeAll, describe, expect, it } from 'vitest';
import { entryAtStep, planConditioning } from '../../src/prompt/conditioning.js';
import { tokenizeLine } from '../../src/prompt/chunking.js';
import { ClipTokenizer } from '../../src/prompt/tokenizer.js';
import { clipVocabPath } from '../helpers/golden.js';

let tok: ClipTokenizer;
beforeAll(async () => {
  tok = await ClipTokenizer.load(clipVocabPath());
});

describe('planConditioning', () => {
  it('strips extra networks, splits AND, schedules each part and chunks each text', () => {
    const plan = planConditioning('<lora:detail:0.5> a [cat:dog:10] AND (sunset:1.2) :0.7', {
      tokenizer: tok,
      steps: 20,
    });
    expect(plan.networks.map((n) => [n.name, n.items])).toEqual([['lora', ['detail', '0.5']]]);
    expect(plan.parts.map((p) => p.weight)).toEqual([1, 0.7]);
    expect(plan.parts[0].schedule.map((s) => [s.endAtStep, s.text])).toEqual([
      [10, ' a cat'],
      [20, ' a dog'],
    ]);
    expect(plan.parts[1].schedule[0].chunks).toEqual(tokenizeLine(' (sunset:1.2)', tok).chunks);
    expect(entryAtStep(plan.parts[0].schedule, 10).text).toBe(' a cat');
    expect(entryAtStep(plan.parts[0].schedule, 11).text).toBe(' a dog');
  });

  it('splices embeddings by name in every scheduled text', () => {
    const embeddings = new Map([['badhands', { name: 'badhands', vectors: 2 }]]);
    const plan = planConditioning('[badhands:ok:5], cat', { tokenizer: tok, steps: 20, embeddings });
    expect(plan.parts[0].schedule[0].chunks[0].fixes.map((f) => [f.offset, f.embedding.name])).toEqual([
      [0, 'badhands'],
    ]);
    expect(plan.parts[0].schedule[1].chunks[0].fixes).toEqual([]);
  });

  it('keeps AND and extra-network tags as text for negative prompts', () => {
    const plan = planConditioning('blurry AND <lora:x:1> ugly', {
      tokenizer: tok,
      steps: 20,
      negative: true,
    });
    expect(plan.networks).toEqual([]);
    expect(plan.parts).toHaveLength(1);
    expect(plan.parts[0].schedule[0].text).toBe('blurry AND <lora:x:1> ugly');
  });
});
