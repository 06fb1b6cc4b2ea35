import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { findSampler, requireSampler, SAMPLERS } from '../../src/sampling/index.js';
import { goldenPath } from '../helpers/golden.js';

interface MapEntry {
  label: string;
  function: string;
  aliases: string[];
  default_scheduler?: string;
  discard_next_to_last_sigma?: boolean;
  second_order?: boolean;
  uses_ensd?: boolean;
  brownian_noise?: boolean;
  solver_type?: string | null;
  eta_default?: number | null;
  options: { scheduler?: string };
}
const map = JSON.parse(readFileSync(goldenPath('schedules', 'samplers_map.json'), 'utf8')) as {
  k_diffusion: MapEntry[];
  timesteps: MapEntry[];
  lcm: MapEntry[];
  schedulers: { name: string; label: string }[];
};

describe("sampler registry matches A1111's table (samplers_map.json)", () => {
  const all = [...map.k_diffusion, ...map.timesteps, ...map.lcm];

  it('has every A1111 sampler with its options', () => {
    expect(all.length).toBeGreaterThan(0);
    for (const e of all) {
      const found = findSampler(e.label);
      expect(found, e.label).toBeDefined();
      const s = found!.sampler;
      expect(s.label).toBe(e.label);
      expect(s.functionName, e.label).toBe(e.function.split('.').pop());
      expect(s.scheduler, e.label).toBe(e.options.scheduler);
      if (e.discard_next_to_last_sigma !== undefined)
        expect(s.discardNextToLastSigma, e.label).toBe(e.discard_next_to_last_sigma);
      if (e.second_order !== undefined) expect(s.secondOrder, e.label).toBe(e.second_order);
      if (e.uses_ensd !== undefined) expect(s.usesEnsd, e.label).toBe(e.uses_ensd);
      if (e.brownian_noise !== undefined) expect(s.brownianNoise, e.label).toBe(e.brownian_noise);
      if (e.solver_type !== undefined) expect(s.solverType ?? null, e.label).toBe(e.solver_type);
      // A1111 passes eta to every function that takes one (DPM2 a included, though the map lists null there).
      if (e.eta_default !== undefined && e.eta_default !== null)
        expect(s.etaDefault, e.label).toBe(e.eta_default);
      for (const a of e.aliases) expect(findSampler(a)?.sampler.label, a).toBe(e.label);
    }
    expect(SAMPLERS.length).toBe(all.length);
  });

  it('maps the old "<sampler> <scheduler>" names to sampler + schedule', () => {
    for (const e of map.k_diffusion) {
      for (const sch of map.schedulers) {
        if (sch.name === 'automatic') continue;
        const found = findSampler(`${e.label} ${sch.label}`);
        expect(found?.sampler.label).toBe(e.label);
        expect(found?.scheduler).toBe(sch.name);
      }
    }
    expect(findSampler('k_dpmpp_2m_ka')).toMatchObject({
      sampler: { label: 'DPM++ 2M' },
      scheduler: 'karras',
    });
    expect(() => requireSampler('Nope')).toThrow(/unknown sampler "Nope"; available: .*Euler a/);
  });
});
