/**
 * `lora_extract` cases: kohya's extract_lora_from_models.py output loads and applies in SD Studio
 * as in A1111 — every module matched, the delta of each changed layer equal to A1111's, unchanged
 * layers untouched, and each layer's reconstruction error against the true difference B − A as
 * the golden reports it. (SD Studio's own extraction is not built yet.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { buildLayerTable } from '../../src/adapters/lora-keys.js';
import { computeUpdown } from '../../src/adapters/lora-modules.js';
import { loadNetwork } from '../../src/adapters/lora.js';
import { adapterPath, casesOf, closeAll, expectClose, openCached } from './helpers.js';

afterAll(closeAll);

interface ExtractModule {
  network_key: string;
  checkpoint_weight: string;
  rank: number;
  scale: number;
  rel_error_a1111_delta_vs_true_diff: number | null;
  changed_in_b: boolean;
}

describe('lora_extract', () => {
  for (const c of casesOf('lora_extract')) {
    it(`${c.name}: kohya's extracted LoRA applies as in A1111`, async () => {
      const a = await openCached(adapterPath(c.checkpoint_a as string));
      const changed = await openCached(
        adapterPath((c.checkpoint_b as string).match(/(\S+\.safetensors)/)![1]!),
      );
      const file = await openCached(adapterPath(c.file as string));
      const golden = await openCached(adapterPath(c.golden as string));
      const tol = c.tolerance as { rel_error_abs_diff: number; delta_of_unchanged_modules_max_abs: number };
      const modules = c.modules as ExtractModule[];

      expect(file.metadata).toEqual(c.metadata);
      expect([...file.keys()].sort()).toEqual([...(c.file_tensors as string[])].sort());
      const net = await loadNetwork(file, buildLayerTable(a));
      expect(net.unmatched.size).toBe(0);
      expect(net.modules.size).toBe(c.n_modules);

      const byWeight = new Map([...net.modules.values()].map((m) => [m.layer.weightKey!, m]));
      let changedSeen = 0;
      for (const g of modules) {
        const m = byWeight.get(g.checkpoint_weight);
        expect(m, g.network_key).toBeDefined();
        expect(m!.networkKey.startsWith(g.network_key + '.')).toBe(true);
        expect(m!.dim).toBe(g.rank);
        const orig = {
          shape: [...a.info(g.checkpoint_weight)!.shape],
          data: await a.readFloat32(g.checkpoint_weight),
        };
        const delta = await computeUpdown(m!, orig, 1.0);
        if (!g.changed_in_b) {
          let max = 0;
          for (const v of delta.data) max = Math.max(max, Math.abs(v));
          expect(max, g.network_key).toBeLessThanOrEqual(tol.delta_of_unchanged_modules_max_abs);
          continue;
        }
        changedSeen++;
        const gd = await golden.readFloat32(`delta.${g.checkpoint_weight}`);
        expectClose(`delta.${g.checkpoint_weight}`, delta.data, gd, { max_abs: 1e-4, rel_l2: 1e-5 });
        // ‖delta − (B − A)‖ / ‖B − A‖ as the golden computed it.
        const b = await changed.readFloat32(g.checkpoint_weight);
        let num = 0;
        let den = 0;
        for (let i = 0; i < b.length; i++) {
          const diff = b[i]! - orig.data[i]!;
          num += (delta.data[i]! - diff) ** 2;
          den += diff * diff;
        }
        const rel = Math.sqrt(num / den);
        expect(Number.isNaN(rel)).toBe(false);
        expect(Math.abs(rel - g.rel_error_a1111_delta_vs_true_diff!), g.network_key).toBeLessThanOrEqual(
          tol.rel_error_abs_diff,
        );
      }
      expect(changedSeen).toBe(golden.keys().filter((k) => k.startsWith('delta.')).length);
    });
  }
});
