import { describe, expect, it } from 'vitest';
import { findExtraNetworkTags, parseExtraNetworks, RE_EXTRA_NET } from '../../src/prompt/extra-networks.js';

describe('findExtraNetworkTags equals re_extra_net', () => {
  it('on random text of the characters that matter', () => {
    let seed = 17;
    const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const bits = ['<', '>', ':', 'lora', 'a', '_', '1', ' ', '\n', '𝒜', 'é', '=', '0.8', '-'];
    for (let k = 0; k < 5000; k++) {
      let s = '';
      for (let n = Math.floor(next() * 16); n > 0; n--) s += bits[Math.floor(next() * bits.length)];
      const expected = [...s.matchAll(RE_EXTRA_NET)].map((m) => [m.index, m[0].length, m[1], m[2]]);
      const got = findExtraNetworkTags(s).map((t) => [t.start, t.end - t.start, t.name, t.args]);
      expect(got, JSON.stringify(s)).toEqual(expected);
      expect(parseExtraNetworks(s).prompt).toBe(s.replace(RE_EXTRA_NET, ''));
    }
  });

  it('is linear when no ">" closes the tags', () => {
    const t = performance.now();
    parseExtraNetworks('<lora:'.repeat(100_000));
    parseExtraNetworks('<lora:x'.repeat(50_000) + '>');
    expect(performance.now() - t).toBeLessThan(1000);
  });
});
