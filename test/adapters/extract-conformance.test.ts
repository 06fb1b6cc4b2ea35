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

describe('lora_extract: SD Studio extraction', () => {
  for (const c of casesOf('lora_extract')) {
    it(`${c.name}: kohya's svd() — same modules, same deltas with LAPACK's signs, same errors`, async () => {
      const { extractLora } = await import('../../src/adapters/extract-lora.js');
      const { PatchedTensorSource } = await import('../../src/adapters/patched-source.js');
      const { MemoryTensorSource } = await import('../../src/formats/memory.js');
      const a = await openCached(adapterPath(c.checkpoint_a as string));
      const changedFile = await openCached(
        adapterPath((c.checkpoint_b as string).match(/(\S+\.safetensors)/)![1]!),
      );
      const replaced = new Map<string, { shape: number[]; data: Float32Array }>();
      for (const k of changedFile.keys())
        replaced.set(k, { shape: [...changedFile.info(k)!.shape], data: await changedFile.readFloat32(k) });
      const b = new PatchedTensorSource(a, replaced);
      const kohya = await openCached(adapterPath(c.file as string));
      const golden = await openCached(adapterPath(c.golden as string));
      const params = c.params as { dim: number; conv_dim: number; clamp_quantile: number; min_diff: number };
      const tol = c.tolerance as { rel_error_abs_diff: number; delta_of_unchanged_modules_max_abs: number };
      const { tensors, layers } = await extractLora(b, a, {
        dim: params.dim,
        convDim: params.conv_dim,
        clampQuantile: params.clamp_quantile,
        minDiff: params.min_diff,
        signReference: async (m) =>
          kohya.has(`${m}.lora_down.weight`) ? kohya.readFloat32(`${m}.lora_down.weight`) : undefined,
      });
      expect([...tensors.keys()].sort()).toEqual([...(c.file_tensors as string[])].sort());
      for (const k of c.changed_but_not_extracted as string[])
        expect(layers.some((l) => l.weightKey === k)).toBe(false);
      for (const [k, t] of tensors) expect(t.shape, k).toEqual(kohya.info(k)!.shape);

      const ours = new MemoryTensorSource(tensors, { path: 'extracted.safetensors' });
      const net = await loadNetwork(ours, buildLayerTable(a));
      const modules = c.modules as ExtractModule[];
      for (const g of modules) {
        const m = [...net.modules.values()].find((x) => x.layer.weightKey === g.checkpoint_weight)!;
        const orig = {
          shape: [...a.info(g.checkpoint_weight)!.shape],
          data: await a.readFloat32(g.checkpoint_weight),
        };
        const delta = await computeUpdown(m, orig, 1.0);
        const layer = layers.find((l) => l.weightKey === g.checkpoint_weight)!;
        if (!g.changed_in_b) {
          let max = 0;
          for (const v of delta.data) max = Math.max(max, Math.abs(v));
          expect(max, g.network_key).toBeLessThanOrEqual(tol.delta_of_unchanged_modules_max_abs);
          continue;
        }
        expectClose(
          `delta.${g.checkpoint_weight}`,
          delta.data,
          await golden.readFloat32(`delta.${g.checkpoint_weight}`),
          { max_abs: 1e-4, rel_l2: 1e-5 },
        );
        expect(
          Math.abs(layer.relError - g.rel_error_a1111_delta_vs_true_diff!),
          g.network_key,
        ).toBeLessThanOrEqual(tol.rel_error_abs_diff);
      }
    });
  }
});

describe('sdstudio extract-lora', () => {
  for (const c of casesOf('lora_extract')) {
    it(`${c.name}: the CLI writes a kohya-layout LoRA that loads, with per-layer errors`, async () => {
      const { mkdtemp, rm } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const { writeSafetensors } = await import('../../src/formats/safetensors.js');
      const { openModel } = await import('../../src/formats/open.js');
      const { runCli } = await import('../pipeline/cli-helpers.js');
      const dir = await mkdtemp(join(tmpdir(), 'sd-extract-'));
      try {
        const a = await openCached(adapterPath(c.checkpoint_a as string));
        const changedFile = await openCached(
          adapterPath((c.checkpoint_b as string).match(/(\S+\.safetensors)/)![1]!),
        );
        const bPath = join(dir, 'b.safetensors');
        const entries: [string, Awaited<ReturnType<typeof a.read>>][] = [];
        for (const k of a.keys())
          entries.push([k, changedFile.has(k) ? await changedFile.read(k) : await a.read(k)]);
        await writeSafetensors(bPath, entries);
        const params = c.params as {
          dim: number;
          conv_dim: number;
          clamp_quantile: number;
          min_diff: number;
        };
        const out = join(dir, 'lora.safetensors');
        const r = await runCli(
          [
            'extract-lora',
            bPath,
            adapterPath(c.checkpoint_a as string),
            '--rank',
            String(params.dim),
            '--conv-rank',
            String(params.conv_dim),
            '--clamp',
            String(params.clamp_quantile),
            '--out',
            out,
          ],
          dir,
        );
        expect(r.code, r.stderr).toBe(0);
        const changed = (c.modules as ExtractModule[]).filter((m) => m.changed_in_b);
        expect(
          r.stdout
            .trim()
            .split('\n')
            .filter((l) => /relative error/.test(l)),
        ).toHaveLength(changed.length);
        const lora = await openModel(out);
        try {
          const meta = { ...lora.metadata };
          const golden = { ...(c.metadata as Record<string, string>) };
          for (const k of ['sshs_model_hash', 'sshs_legacy_hash']) {
            expect(meta[k]).toMatch(/^[0-9a-f]+$/);
            delete meta[k];
            delete golden[k];
          }
          expect(meta).toEqual(golden);
          const net = await loadNetwork(lora, buildLayerTable(a));
          expect(net.modules.size).toBe(c.n_modules);
          expect(net.unmatched.size).toBe(0);
        } finally {
          await lora.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }, 120_000);
  }
});
