/**
 * LoRA / LyCORIS conformance against A1111 v1.10.1's Lora extension: every `lora_apply`,
 * `lora_combo` and `lora_tag_parse` case of $SDSTUDIO_GOLDEN/adapters/cases.json.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matmulOptions, matmulStats } from '../../src/adapters/fast-matmul.js';
import { buildLayerTable } from '../../src/adapters/lora-keys.js';
import { computeUpdown, multiplierKind } from '../../src/adapters/lora-modules.js';
import {
  applyNetworks,
  loadNetwork,
  networkErrorsComment,
  type ActiveNetwork,
  type LoraNetwork,
} from '../../src/adapters/lora.js';
import {
  loraAlias,
  loraHash,
  loraHashesInfotext,
  loraSdVersion,
  parseLoraMetadata,
  parseLoraTag,
} from '../../src/adapters/lora-tags.js';
import { parseExtraNetworks } from '../../src/prompt/extra-networks.js';
import { hashFile } from '../../src/tools/hash.js';
import {
  adapterPath,
  casesOf,
  closeAll,
  expectClose,
  openCached,
  type AdapterCase,
  type Tol,
} from './helpers.js';

afterAll(closeAll);
const defaultMinMacs = matmulOptions.minMacsForOrt;

interface MatchedModule {
  network_layer: string;
  checkpoint_weight: string;
  module_class: string;
  torch_module: string;
  network_key: string;
  multiplier: 'te' | 'unet';
  scale: number;
  dim: number | null;
  alpha: number | null;
}

async function load(adapter: string, checkpoint: string, diffusersNames = true): Promise<LoraNetwork> {
  const ckpt = await openCached(adapterPath(checkpoint));
  const file = await openCached(adapterPath(adapter));
  return loadNetwork(file, buildLayerTable(ckpt), { diffusersNames });
}

async function readWeightFrom(checkpoint: string) {
  const ckpt = await openCached(adapterPath(checkpoint));
  return async (key: string) => ({ shape: [...ckpt.info(key)!.shape], data: await ckpt.readFloat32(key) });
}

/** The tags of a prompt as active networks (name from the tag resolved to the case's files). */
function tagsOf(prompt: string) {
  return parseExtraNetworks(prompt).networks.map(parseLoraTag);
}

/** The case's deltas (multiplier 1) and patched weights (the tag's multipliers) against the goldens. */
async function checkDeltasAndPatched(c: AdapterCase): Promise<void> {
  const adapter = c.adapter as string;
  const checkpoint = c.checkpoint as string;
  const net = await load(adapter, checkpoint, false);
  const readWeight = await readWeightFrom(checkpoint);
  const tol = c.tolerance as Record<'delta' | 'patched', Tol>;
  const deltaNames = c.delta_tensors as string[];
  const patchedNames = c.patched_tensors as string[];
  const golden = c.golden ? await openCached(adapterPath(c.golden as string)) : undefined;
  let deltasSeen = 0;
  for (const m of net.modules.values()) {
    const key = m.layer.weightKey;
    if (!key || !deltaNames.includes(`delta.${key}`)) continue;
    const orig = await readWeight(key);
    const d = await computeUpdown(m, orig, 1.0);
    expectClose(`delta.${key}`, d.data, await golden!.readFloat32(`delta.${key}`), tol.delta);
    deltasSeen++;
  }
  expect(deltasSeen).toBe(deltaNames.length);
  const tag = tagsOf(c.prompt_tag as string)[0]!;
  const result = await applyNetworks(readWeight, [{ network: { ...net, name: tag.name }, ...tag }]);
  expect([...result.patched.keys()].map((k) => `patched.${k}`).sort()).toEqual([...patchedNames].sort());
  for (const [key, t] of result.patched) {
    expectClose(`patched.${key}`, t.data, await golden!.readFloat32(`patched.${key}`), tol.patched);
  }
  expect(Object.fromEntries(result.errors)).toEqual(c.apply_errors);
  const comment = networkErrorsComment(result.errors);
  expect(comment ? [comment] : []).toEqual(c.comments_after_deactivate);
}

describe('lora_apply', () => {
  for (const c of casesOf('lora_apply')) {
    const adapter = c.adapter as string;
    const checkpoint = c.checkpoint as string;
    const matched = c.matched_modules as MatchedModule[];
    const isDiffusersLayout =
      matched.length === 0 && (c.file_tensors as string[]).some((k) => /^(unet|text_encoder)\./.test(k));

    it(`${c.name}: metadata, alias, version and hash as A1111 reads them`, async () => {
      const file = await openCached(adapterPath(adapter));
      const disk = c.a1111_on_disk as Record<string, unknown>;
      expect(file.metadata).toEqual(c.metadata_raw);
      expect(parseLoraMetadata(file.metadata)).toEqual(disk.metadata_parsed);
      const name = adapter.replace(/\.[^.]*$/, '');
      expect(loraAlias(name, file.metadata)).toBe(disk.alias);
      expect(loraSdVersion(file.metadata)).toBe(disk.sd_version);
      const { addnet } = await hashFile(adapterPath(adapter), { noCache: true });
      const hash = loraHash(file.metadata, addnet);
      expect(hash).toBe(disk.hash);
      expect(hash.slice(0, 12)).toBe(disk.shorthash);
      const tag = tagsOf(c.prompt_tag as string)[0]!;
      expect(loraHashesInfotext([{ name: tag.name, hash }])).toBe(c.infotext_lora_hashes);
    });

    it(`${c.name}: tag multipliers`, () => {
      const tag = tagsOf(c.prompt_tag as string)[0]!;
      expect(tag.te).toBe(c.te_multiplier);
      expect(tag.unet).toBe(c.unet_multiplier);
    });

    it(`${c.name}: matched modules and unmatched keys as A1111`, async () => {
      const net = await load(adapter, checkpoint, false);
      const ours = [...net.modules.values()].map((m) => ({
        network_layer: m.sdKey,
        checkpoint_weight: m.layer.weightKey,
        module_class: m.moduleClass,
        torch_module: m.layer.type,
        network_key: m.networkKey,
        multiplier: multiplierKind(m.sdKey),
        dim: m.dim,
        alpha: m.alpha,
      }));
      const golden = matched.map(({ scale: _s, ...rest }) => rest);
      const byLayer = (a: { network_layer: string }, b: { network_layer: string }) =>
        a.network_layer < b.network_layer ? -1 : 1;
      expect(ours.sort(byLayer)).toEqual([...golden].sort(byLayer));
      for (const m of net.modules.values()) {
        const g = matched.find((x) => x.network_layer === m.sdKey)!;
        const s = m.scale ?? (m.dim !== null && m.alpha !== null ? m.alpha / m.dim : 1);
        expect(Math.abs(s - g.scale), `${m.sdKey} scale`).toBeLessThan(1e-6);
      }
      expect(Object.fromEntries(net.unmatched)).toEqual(c.unmatched_keys);
    });

    it(`${c.name}: deltas at multiplier 1 and patched weights at the tag's multipliers`, () =>
      checkDeltasAndPatched(c));

    if (isDiffusersLayout) {
      it(`${c.name}: SD Studio matches the diffusers/PEFT layout A1111 cannot`, async () => {
        const net = await load(adapter, checkpoint, true);
        const files = c.file_tensors as string[];
        expect(net.unmatched.size).toBe(0);
        // Every lora_A/lora_B pair becomes one module on the layer its dotted path names.
        expect(net.modules.size).toBe(files.length / 2);
        const readWeight = await readWeightFrom(checkpoint);
        const file = await openCached(adapterPath(adapter));
        for (const m of net.modules.values()) {
          const prefix = m.networkKey.replace(/\.lora_[AB]\.weight$/, '');
          const A = await file.readFloat32(`${prefix}.lora_A.weight`);
          const B = await file.readFloat32(`${prefix}.lora_B.weight`);
          const [r, inF] = file.info(`${prefix}.lora_A.weight`)!.shape as [number, number];
          const outF = file.info(`${prefix}.lora_B.weight`)!.shape[0]!;
          expect(m.layer.shape).toEqual([outF, inF]);
          // The dotted path names the same layer as its checkpoint key (to_out.0 included).
          const dotted = prefix
            .replace(/^unet\./, 'model.diffusion_model.')
            .replace(/^text_encoder\./, 'cond_stage_model.transformer.');
          expect(
            m.layer.weightKey!.startsWith('model.diffusion_model.') ||
              m.layer.weightKey === `${dotted}.weight`,
          ).toBe(true);
          const d = await computeUpdown(m, await readWeight(m.layer.weightKey!), 1.0);
          const want = new Float32Array(outF * inF);
          for (let i = 0; i < outF; i++)
            for (let j = 0; j < inF; j++) {
              let s = 0;
              for (let k = 0; k < r; k++) s += B[i * r + k]! * A[k * inF + j]!;
              want[i * inF + j] = s;
            }
          expectClose(m.sdKey, d.data, want, { max_abs: 1e-6, rel_l2: 1e-6 });
        }
      });
    }
  }
});

describe('lora_apply with every product on onnxruntime GEMM (the path large LoRAs take)', () => {
  beforeAll(() => {
    matmulOptions.minMacsForOrt = 0;
  });
  afterAll(() => {
    matmulOptions.minMacsForOrt = defaultMinMacs;
  });
  for (const c of casesOf('lora_apply')) it(`${c.name}`, () => checkDeltasAndPatched(c));
  it('the products ran on onnxruntime', () => expect(matmulStats.ortCalls).toBeGreaterThan(0));
});

describe('lora_combo', () => {
  for (const c of casesOf('lora_combo')) {
    it(`${c.name}: networks applied in prompt order`, async () => {
      const checkpoint = c.checkpoint as string;
      const tags = tagsOf(c.prompt_tags as string);
      const order = c.networks_in_order as { name: string; te_multiplier: number; unet_multiplier: number }[];
      expect(tags.map((t) => ({ name: t.name, te_multiplier: t.te, unet_multiplier: t.unet }))).toEqual(
        order,
      );
      const active: ActiveNetwork[] = [];
      for (const t of tags) {
        const net = await load(`${t.name}.safetensors`, checkpoint, false);
        active.push({ network: net, te: t.te, unet: t.unet, dynDim: t.dynDim });
      }
      const result = await applyNetworks(await readWeightFrom(checkpoint), active);
      const golden = await openCached(adapterPath(c.golden as string));
      const tol = (c.tolerance as Record<'patched', Tol>).patched;
      expect([...result.patched.keys()].map((k) => `patched.${k}`).sort()).toEqual(
        [...(c.patched_tensors as string[])].sort(),
      );
      for (const [key, t] of result.patched)
        expectClose(`patched.${key}`, t.data, await golden.readFloat32(`patched.${key}`), tol);
      expect(Object.fromEntries(result.errors)).toEqual(c.apply_errors);
    });
  }
});

describe('lora_tag_parse', () => {
  for (const c of casesOf('lora_tag_parse')) {
    it(`${c.name}: multipliers from every tag form`, () => {
      const entries = c.entries as {
        tag: string;
        positional: string[];
        named: Record<string, string>;
        te_multiplier: number;
        unet_multiplier: number;
        dyn_dim: number | null;
      }[];
      expect(entries.length).toBeGreaterThan(0);
      for (const e of entries) {
        const parsed = parseExtraNetworks(e.tag).networks;
        expect(parsed.length, e.tag).toBe(1);
        expect(parsed[0]!.positional, e.tag).toEqual(e.positional);
        expect(parsed[0]!.named, e.tag).toEqual(e.named);
        const t = parseLoraTag(parsed[0]!);
        expect([t.te, t.unet, t.dynDim], e.tag).toEqual([e.te_multiplier, e.unet_multiplier, e.dyn_dim]);
      }
    });
  }
});
