/**
 * LoRA on SD 2.x and SDXL: tiny random networks built from the tiny-sd2 / tiny-sdxl checkpoints'
 * own layers (family-loras.ts), matched as A1111 v1.10.1 matches them (kohya `lora_te_`/`lora_te1_`/
 * `lora_te2_`, SD2's OpenCLIP attention as q/k/v/out onto `in_proj_weight`, diffusers-style and
 * compvis-style UNet names), diffusers/PEFT and LoHa layouts, another family's LoRA skipped, and
 * end to end through the CLI: `<lora:x:1>` = `sdstudio merge --lora`, `<lora:x:0>` = no tag,
 * te-only and unet-only multipliers, negative-prompt tags, `bundle_emb` embeddings.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listLoras } from '../../src/adapters/listing.js';
import { loraFamily } from '../../src/adapters/lora-family.js';
import {
  buildLayerTable,
  diffusersToKohya,
  matchModuleName,
  type LayerTable,
} from '../../src/adapters/lora-keys.js';
import { activateLoras } from '../../src/adapters/lora-library.js';
import { computeUpdown } from '../../src/adapters/lora-modules.js';
import { applyNetworks, loadNetwork, type ActiveNetwork, type LoraNetwork } from '../../src/adapters/lora.js';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { openModel } from '../../src/formats/open.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { goldenPath } from '../helpers/golden.js';
import { infotextOf, runCli } from '../pipeline/cli-helpers.js';
import {
  familyCheckpoint,
  kohyaTargets,
  loraTensors,
  rand,
  writeLora,
  type LoraLayout,
  type Target,
} from './family-loras.js';
import { txt2imgOne as one, pixels, maxDiff } from './cli-images.js';

const SETS = ['tiny-sd2', 'tiny-sdxl'];
const dirs: string[] = [];
const sources: TensorSource[] = [];
afterAll(async () => {
  for (const s of sources) await s.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tmp(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

async function load(path: string, table: LayerTable, diffusersNames = true): Promise<LoraNetwork> {
  const f = await openModel(path);
  try {
    return await loadNetwork(f, table, { diffusersNames });
  } finally {
    await f.close();
  }
}

const reader = (src: TensorSource) => async (k: string) => ({
  shape: [...src.info(k)!.shape],
  data: await src.readFloat32(k),
});

const active = (network: LoraNetwork, te = 1, unet = 1): ActiveNetwork => ({
  network,
  te,
  unet,
  dynDim: null,
});

/** Which A1111 key family a kohya module name belongs to. */
function keyFamily(module: string, table: LayerTable): string {
  if (module.startsWith('lora_unet_')) return 'unet';
  if (module.startsWith('lora_te2_') || (table.isSd2 && module.startsWith('lora_te_'))) return 'openclip';
  return 'clip-l';
}

for (const set of SETS) {
  describe(`${set}: LoRA key matching and patching`, () => {
    let ckpt: TensorSource;
    let table: LayerTable;
    let targets: Target[];
    let dir: string;
    const files = new Map<LoraLayout, string>();
    beforeAll(async () => {
      ckpt = await openModel(familyCheckpoint(set));
      sources.push(ckpt);
      table = buildLayerTable(ckpt);
      targets = kohyaTargets(table);
      dir = await tmp('sdlora-fam-');
      for (const layout of ['kohya', 'peft', 'loha'] as const) {
        const p = join(dir, `${layout}.safetensors`);
        await writeLora(p, loraTensors(targets, layout, 11));
        files.set(layout, p);
      }
    });

    it('kohya names of every key family land on the layer they were made for', async () => {
      const fams = new Set(targets.map((t) => keyFamily(t.module, table)));
      expect([...fams].sort()).toEqual(table.isSdxl ? ['clip-l', 'openclip', 'unet'] : ['openclip', 'unet']);
      const net = await load(files.get('kohya')!, table);
      expect([...net.unmatched.keys()]).toEqual([]);
      for (const t of targets) {
        const m = [...net.modules.values()].find((x) => x.networkKey.startsWith(`${t.module}.`));
        expect(m?.layer, t.module).toBe(t.layer);
      }
      // Every key family patches its tower's weights.
      const r = await applyNetworks(reader(ckpt), [active(net)]);
      expect(r.errors.size).toBe(0);
      const keys = [...r.patched.keys()];
      const towers = table.isSdxl
        ? ['conditioner.embedders.0.', 'conditioner.embedders.1.', 'model.diffusion_model.']
        : ['cond_stage_model.', 'model.diffusion_model.'];
      for (const p of towers)
        expect(
          keys.some((k) => k.startsWith(p)),
          p,
        ).toBe(true);
    });

    it('OpenCLIP attention: q/k/v/out patch in_proj_weight and out_proj together, as A1111', async () => {
      const net = await load(files.get('kohya')!, table);
      const mha = [...table.layers.values()].find((l) => l.mhaOut)!;
      expect(mha).toBeDefined();
      const outLayer = table.layers.get(mha.mhaOut!)!;
      const r = await applyNetworks(reader(ckpt), [active(net, 0.7, 1)]);
      const inW = await reader(ckpt)(mha.weightKey!);
      const parts = await Promise.all(
        ['q', 'k', 'v'].map((p) => computeUpdown(net.modules.get(`${mha.name}_${p}_proj`)!, inW, 0.7)),
      );
      const want = Float32Array.from(inW.data, (w, i) => {
        const rows = parts[0]!.data.length;
        const part = parts[Math.floor(i / rows)]!;
        return w + part.data[i % rows]!;
      });
      expect([...r.patched.get(mha.weightKey!)!.data]).toEqual([...want]);
      const outW = await reader(ckpt)(outLayer.weightKey!);
      const d = await computeUpdown(net.modules.get(outLayer.name)!, outW, 0.7);
      expect([...r.patched.get(outLayer.weightKey!)!.data]).toEqual(
        Array.from(outW.data, (w, i) => Math.fround(w + d.data[i]!)),
      );

      // Without out_proj the set is incomplete: A1111 patches neither, and counts no error.
      const partial = join(dir, 'partial.safetensors');
      const qkvOnly = targets.filter((t) => t.layer === mha);
      expect(qkvOnly).toHaveLength(3);
      await writeLora(partial, loraTensors(qkvOnly, 'kohya', 3));
      const pr = await applyNetworks(reader(ckpt), [active(await load(partial, table))]);
      expect(pr.patched.size).toBe(0);
      expect(pr.errors.size).toBe(0);
    });

    it('diffusers/PEFT (which A1111 cannot match) and LoHa files match the same layers', async () => {
      const kohya = await load(files.get('kohya')!, table);
      const peft = await load(files.get('peft')!, table);
      expect([...peft.unmatched.keys()]).toEqual([]);
      const peftTargets = targets.filter((t) => t.peft);
      expect(peftTargets.length).toBeGreaterThan(0);
      expect(peftTargets.some((t) => t.te)).toBe(true);
      expect(new Set([...peft.modules.values()].map((m) => m.sdKey))).toEqual(
        new Set(
          [...kohya.modules.values()]
            .filter((m) => peftTargets.some((t) => t.layer === m.layer) && true)
            .map((m) => m.sdKey),
        ),
      );
      // Upsamplers: on SDXL A1111's conversion would put `up_blocks.0` on output_blocks.2.1 (a
      // SpatialTransformer there); ours finds the conv at .2.2.
      const ups = peftTargets.find((t) => /upsamplers/.test(t.peft!));
      expect(ups, 'an upsampler in the PEFT file').toBeDefined();
      expect([...peft.modules.values()].some((m) => m.layer === ups!.layer)).toBe(true);
      if (table.isSdxl) {
        const renamed = diffusersToKohya(`${ups!.peft!}.lora_A.weight`, true)!;
        expect(matchModuleName(renamed.module, table).layer).not.toBe(ups!.layer);
      }
      // A1111 1.10 (no renaming): none of them.
      const a1111 = await load(files.get('peft')!, table, false);
      expect(a1111.modules.size).toBe(0);

      const loha = await load(files.get('loha')!, table);
      expect([...loha.unmatched.keys()]).toEqual([]);
      expect([...loha.modules.keys()].sort()).toEqual([...kohya.modules.keys()].sort());
      const r = await applyNetworks(reader(ckpt), [active(loha)]);
      expect(r.errors.size).toBe(0);
      const rk = await applyNetworks(reader(ckpt), [active(kohya)]);
      expect([...r.patched.keys()].sort()).toEqual([...rk.patched.keys()].sort());
    });

    it('a LoRA for another family is skipped as A1111 skips it: a warning, never a crash', async () => {
      const sd1 = await openModel(goldenPath('tiny-sd', 'tiny-sd.safetensors'));
      sources.push(sd1);
      const other = join(dir, 'sd1.safetensors');
      await writeLora(other, loraTensors(kohyaTargets(buildLayerTable(sd1)), 'kohya', 5), {
        ss_base_model_version: 'sd_v1',
      });
      const warnings: string[] = [];
      const act = await activateLoras(ckpt, [{ name: 'sd1', path: other, te: 1, unet: 1, dynDim: null }], {
        warn: (m) => warnings.push(m),
        noHashCache: true,
      });
      expect(warnings.join('\n')).toMatch(
        new RegExp(
          `key\\(s\\) match no layer .*a LoRA for SD 1\\.x, this is ${table.isSdxl ? 'SDXL' : 'SD 2\\.x'}: not compatible`,
        ),
      );
      // Layers whose names exist here but whose shapes differ are A1111's "Networks with errors".
      if (act.errorsComment) expect(act.errorsComment).toMatch(/^Networks with errors: sd1 \(\d+\)$/);
    });
  });
}

describe('LoRA base model for list loras', () => {
  it('from metadata, else from the keys and widths', async () => {
    const info = (name: string, shape: number[]) => ({ name, dtype: 'F32' as const, shape });
    expect(loraFamily({ ss_base_model_version: 'sdxl_base_v1-0' }, []).family).toBe('sdxl');
    expect(loraFamily({ ss_v2: 'True' }, []).family).toBe('sd2');
    expect(loraFamily({ ss_sd_model_name: 'v1-5-pruned-emaonly.safetensors' }, []).family).toBe('sd1');
    expect(loraFamily({ ss_sd_model_name: 'sd_xl_base_1.0.safetensors' }, [])).toEqual({
      family: 'sdxl',
      from: 'metadata',
    });
    const k = (w: number) => [
      info('lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight', [8, w]),
    ];
    expect(loraFamily({}, k(768))).toEqual({ family: 'sd1', from: 'keys' });
    expect(loraFamily({}, k(1024)).family).toBe('sd2');
    expect(loraFamily({}, k(2048)).family).toBe('sdxl');
    expect(
      loraFamily({}, [info('lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight', [4, 1280])])
        .family,
    ).toBe('sdxl');
    expect(
      loraFamily({}, [
        info('lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', [4, 1024]),
      ]).family,
    ).toBe('sd2');
    expect(loraFamily({}, [info('something.weight', [3, 3])])).toEqual({ family: 'unknown', from: 'none' });

    // `sdstudio list loras --json` on files without metadata: SDXL told from its second text encoder.
    const data = await tmp('sdlora-list-');
    await mkdir(join(data, 'models', 'Lora'), { recursive: true });
    const xl = await openModel(familyCheckpoint('tiny-sdxl'));
    sources.push(xl);
    await writeLora(
      join(data, 'models', 'Lora', 'xl.safetensors'),
      loraTensors(kohyaTargets(buildLayerTable(xl)), 'kohya', 2),
    );
    const listed = await listLoras([join(data, 'models', 'Lora')]);
    expect(listed.map((l) => [l.name, l.family, l.familyFrom, l.baseModel])).toEqual([
      ['xl', 'sdxl', 'keys', 'Unknown'],
    ]);
    const r = await runCli(['list', 'loras', '--data-dir', data], data);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^xl {2}sdxl/m);
  }, 60_000);
});

// ---- end to end through the CLI -------------------------------------------------------------

/** A checkpoint with its sidecar yaml (the tiny towers' config lives there) copied beside `to`. */
async function withSidecar(from: string, to: string): Promise<void> {
  const yaml = from.replace(/\.safetensors$/, '.yaml');
  if (existsSync(yaml)) await copyFile(yaml, to.replace(/\.safetensors$/, '.yaml'));
}

for (const set of SETS) {
  describe(`${set}: sdstudio txt2img with <lora:…>`, () => {
    const ckpt = familyCheckpoint(set);
    let dir: string;
    let common: string[];
    let noTag: Buffer;
    beforeAll(async () => {
      dir = await tmp('sdcli-famlora-');
      await mkdir(join(dir, 'models', 'Lora'), { recursive: true });
      const src = await openModel(ckpt);
      try {
        await writeLora(
          join(dir, 'models', 'Lora', 'x.safetensors'),
          loraTensors(kohyaTargets(buildLayerTable(src)), 'kohya', 21),
        );
      } finally {
        await src.close();
      }
      common = [
        '--steps',
        '2',
        '--width',
        '64',
        '--height',
        '64',
        '--seed',
        '7',
        '--no-grid',
        '--data-dir',
        dir,
      ];
    });

    it('<lora:x:1> = the checkpoint merged with sdstudio merge --lora; <lora:x:0> = no tag; te-only and unet-only each change it', async () => {
      const merged = join(dir, 'merged.safetensors');
      const m = await runCli(['merge', ckpt, '--lora', 'x:1', '--out', merged, '--data-dir', dir], dir);
      expect(m.code, m.stderr).toBe(0);
      expect(m.stdout).toMatch(/patched by 1 LoRA/);
      await withSidecar(ckpt, merged);

      const withTag = await one(['a red cube <lora:x:1>', '--model', ckpt, ...common], dir);
      expect(withTag.stderr).toBe('');
      const onMerged = await one(['a red cube', '--model', merged, ...common], dir);
      const plain = await one(['a red cube', '--model', ckpt, ...common], dir);
      noTag = await pixels(plain.path);
      const tagged = await pixels(withTag.path);
      expect(maxDiff(tagged, await pixels(onMerged.path))).toBeLessThanOrEqual(1);
      expect(maxDiff(tagged, noTag)).toBeGreaterThan(0);
      expect((await infotextOf(withTag.path))['Lora hashes']).toMatch(/^x: [0-9a-f]{12}$/);

      const zero = await one(['a red cube <lora:x:0>', '--model', ckpt, ...common], dir);
      expect((await pixels(zero.path)).equals(noTag)).toBe(true);
      const teOnly = await pixels(
        (await one(['a red cube <lora:x:1:0>', '--model', ckpt, ...common], dir)).path,
      );
      const unetOnly = await pixels(
        (await one(['a red cube <lora:x:0:1>', '--model', ckpt, ...common], dir)).path,
      );
      expect(maxDiff(teOnly, noTag)).toBeGreaterThan(0);
      expect(maxDiff(unetOnly, noTag)).toBeGreaterThan(0);
      expect(maxDiff(teOnly, unetOnly)).toBeGreaterThan(0);
    }, 800_000);

    it('an SD 1.x LoRA on this model: skipped with the reason, the image made anyway', async () => {
      const sd1 = await openModel(goldenPath('tiny-sd', 'tiny-sd.safetensors'));
      try {
        await writeLora(
          join(dir, 'models', 'Lora', 'old.safetensors'),
          loraTensors(kohyaTargets(buildLayerTable(sd1)), 'kohya', 8),
          { ss_base_model_version: 'sd_v1' },
        );
      } finally {
        await sd1.close();
      }
      const r = await one(['a red cube <lora:old:1>', '--model', ckpt, ...common], dir);
      expect(r.stderr).toMatch(
        /old\.safetensors: \d+ of \d+ key\(s\) match no layer .*a LoRA for SD 1\.x, this is/,
      );
    }, 400_000);

    it('a negative-prompt tag is not applied and stays in the negative prompt as text (A1111)', async () => {
      const neg = ['--negative', 'blurry <lora:x:1>'];
      const r = await one(['a red cube', '--model', ckpt, ...neg, ...common], dir);
      expect(r.stderr).toMatch(/negative prompt are not applied/);
      // The same text with no LoRA file anywhere gives the same image: nothing was activated.
      const empty = await tmp('sdcli-nolora-');
      const bare = common.map((a) => (a === dir ? empty : a));
      const noFile = await one(['a red cube', '--model', ckpt, ...neg, ...bare], empty);
      expect((await pixels(r.path)).equals(await pixels(noFile.path))).toBe(true);
      // And the tag's text is encoded: not the image of the negative prompt without it.
      const without = await one(['a red cube', '--model', ckpt, '--negative', 'blurry', ...bare], empty);
      expect(maxDiff(await pixels(r.path), await pixels(without.path))).toBeGreaterThan(0);
      expect((await infotextOf(r.path))['Negative prompt']).toBe('blurry <lora:x:1>');
    }, 400_000);
  });
}

describe('bundle_emb: embeddings inside a LoRA file', () => {
  it('are usable in the prompt while the LoRA is active, like the same embedding from the embeddings folder; an SD 1.x embedding is skipped', async () => {
    const ckpt = familyCheckpoint('tiny-sd2');
    const src = await openModel(ckpt);
    const table = buildLayerTable(src);
    await src.close();
    const width = [...table.layers.values()].find((l) => l.name === 'model_token_embedding')!.shape![1]!;
    const vec = float32ArrayToTensor(rand(9)(2 * width, 0.5), [2, width]);
    const dir = await tmp('sdcli-bundle-');
    await mkdir(join(dir, 'models', 'Lora'), { recursive: true });
    const someTargets = kohyaTargets(table)
      .filter((t) => !t.te)
      .slice(0, 4);
    await writeLora(join(dir, 'models', 'Lora', 'b.safetensors'), [
      ...loraTensors(someTargets, 'kohya', 4),
      ['bundle_emb.zqxtoken.string_to_param.*', vec],
    ]);
    const common = [
      '--steps',
      '2',
      '--width',
      '64',
      '--height',
      '64',
      '--seed',
      '3',
      '--no-grid',
      '--data-dir',
      dir,
    ];
    const withEmb = await one(['a zqxtoken cube <lora:b:0>', '--model', ckpt, ...common], dir);
    expect(withEmb.stderr).toBe('');
    expect((await infotextOf(withEmb.path))['TI hashes']).toBe('zqxtoken: b');
    const plainWords = await one(['a zqxtoken cube', '--model', ckpt, ...common], dir);
    expect(maxDiff(await pixels(withEmb.path), await pixels(plainWords.path))).toBeGreaterThan(0);

    // The same vectors as a file in the embeddings folder give the same picture without the LoRA.
    const other = await tmp('sdcli-emb-');
    await mkdir(join(other, 'embeddings'), { recursive: true });
    await writeSafetensors(join(other, 'embeddings', 'zqxtoken.safetensors'), [['emb_params', vec]]);
    // An SD 1.x embedding (768 wide) beside it is skipped as A1111 skips it, with a warning.
    await writeSafetensors(join(other, 'embeddings', 'oldtok.safetensors'), [
      ['emb_params', float32ArrayToTensor(rand(2)(768, 0.5), [1, 768])],
    ]);
    const bare = common.map((a) => (a === dir ? other : a));
    const fromFolder = await one(['a zqxtoken cube oldtok', '--model', ckpt, ...bare], other);
    expect(fromFolder.stderr).toMatch(
      /Textual inversion embeddings skipped\(1\): oldtok \(oldtok\.safetensors, 768 wide\)/,
    );
    const oldWords = await one(['a zqxtoken cube <lora:b:0> oldtok', '--model', ckpt, ...common], dir);
    expect((await pixels(fromFolder.path)).equals(await pixels(oldWords.path))).toBe(true);
    expect(basename(fromFolder.path)).toMatch(/\.png$/);
  }, 400_000);
});
