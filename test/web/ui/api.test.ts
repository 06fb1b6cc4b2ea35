import { describe, expect, it } from 'vitest';
import { errorMessage, imageUrl, parseInfo, type GenerationInfo } from '../../../web/src/api.ts';
import { seedOf } from '../../../web/src/generation.ts';
import { parseOption } from '../../../web/src/screens/Settings.tsx';

describe('server answers as the UI shows them', () => {
  it('error bodies: FastAPI validation lists, HTTPException details, A1111 error bodies', () => {
    expect(
      errorMessage(422, {
        detail: [
          { loc: ['body', 'steps'], msg: 'value is not a valid integer' },
          { loc: ['body', 'width'], msg: 'must be ≤ 8192' },
        ],
      }),
    ).toBe('steps: value is not a valid integer; width: must be ≤ 8192');
    expect(
      errorMessage(422, { error: 'HTTPException', detail: "Script 'x' not found", body: '', errors: '' }),
    ).toBe("Script 'x' not found");
    expect(errorMessage(500, { error: 'KeyError', detail: '', body: '', errors: "'nope'" })).toBe("'nope'");
    expect(errorMessage(502, '')).toBe('HTTP 502');
  });

  it('images from base64 get their MIME type from their bytes', () => {
    expect(imageUrl('iVBORw0KGgo=')).toBe('data:image/png;base64,iVBORw0KGgo=');
    expect(imageUrl('/9j/4AAQ')).toBe('data:image/jpeg;base64,/9j/4AAQ');
    expect(imageUrl('UklGRiQ')).toBe('data:image/webp;base64,UklGRiQ');
    expect(imageUrl('data:image/png;base64,xx')).toBe('data:image/png;base64,xx');
  });

  it('the seed of each returned image, a prepended grid included', () => {
    const info = { seed: 10, all_seeds: [10, 11, 12], index_of_first_image: 1 } as unknown as GenerationInfo;
    expect([0, 1, 2, 3].map((i) => seedOf(info, i))).toEqual([10, 10, 11, 12]);
    const noGrid = parseInfo(JSON.stringify({ seed: 5, all_seeds: [5, 6] }));
    expect([0, 1].map((i) => seedOf(noGrid, i))).toEqual([5, 6]);
    expect(seedOf(parseInfo('not json'), 0)).toBeNull();
  });

  it('settings drafts are read back in the option’s own type', () => {
    expect(parseOption(1, '2')).toEqual({ value: 2 });
    expect(parseOption(1, 'x')).toEqual({ error: 'must be a number' });
    expect(parseOption(1, ' ')).toEqual({ error: 'must be a number' });
    expect(parseOption(true, false)).toEqual({ value: false });
    expect(parseOption('a', 'b')).toEqual({ value: 'b' });
    expect(parseOption(['a'], '["a","b"]')).toEqual({ value: ['a', 'b'] });
    expect(parseOption({}, '{')).toEqual({ error: 'must be JSON' });
  });
});
