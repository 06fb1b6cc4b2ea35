import { existsSync, readdirSync, readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { openModel } from '../../src/formats/open.js';
import { numel } from '../../src/formats/tensor.js';
import { detectModel, type ModelInfo } from '../../src/models/detect.js';
import { parseSidecarText, readSidecar, MAX_SIDECAR_BYTES } from '../../src/models/detect-sidecar.js';
import { RenamedSource } from '../../src/formats/key-renames.js';
import { UserError } from '../../src/util/errors.js';
import { goldenPath, readPythonJson } from '../helpers/golden.js';
import { ShapeSource } from './shape-source.js';

type Yaml = Record<string, unknown>;
const get = (o: unknown, ...path: string[]): unknown =>
  path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Yaml)[k] : undefined), o);

async function detectFile(path: string, opts: Parameters<typeof detectModel>[1] = {}): Promise<ModelInfo> {
  const src = await openModel(path);
  try {
    return detectModel(src, opts);
  } finally {
    await src.close();
  }
}

/** Every field the yaml block and our config both name must agree; `required` must be in both. */
function expectSameFields(ours: object | undefined, yaml: unknown, required: string[]): void {
  expect(ours).toBeDefined();
  const o = ours as Record<string, unknown>;
  for (const k of required) {
    expect(o[k], `config field ${k}`).toBeDefined();
    expect(get(yaml, k), `yaml field ${k}`).toBeDefined();
  }
  for (const [k, v] of Object.entries(yaml as Yaml)) {
    if (k in o) expect(o[k], `field ${k}`).toEqual(v);
  }
}

const UNET_FIELDS = [
  'in_channels',
  'model_channels',
  'attention_resolutions',
  'num_res_blocks',
  'channel_mult',
  'num_heads',
  'transformer_depth',
  'context_dim',
];

function checkAgainstLdmYaml(info: ModelInfo, yamlFile: string): void {
  const doc = parse(readFileSync(yamlFile, 'utf8')) as Yaml;
  const params = get(doc, 'model', 'params');
  const unet = get(params, 'unet_config', 'params') as Yaml;
  expectSameFields(info.config.unet, unet, [...UNET_FIELDS, 'out_channels']);
  expect(info.config.unet!.use_linear_in_transformer).toBe(unet.use_linear_in_transformer ?? false);
  const first = get(params, 'first_stage_config', 'params') as Yaml;
  expect(info.config.vae?.embed_dim).toBe(first.embed_dim);
  expectSameFields(info.config.vae, first.ddconfig, [
    'double_z',
    'z_channels',
    'in_channels',
    'out_ch',
    'ch',
    'ch_mult',
    'num_res_blocks',
    'attn_resolutions',
  ]);
  const clip = get(params, 'cond_stage_config', 'params', 'clip_text_config');
  expectSameFields(info.config.text_encoder, clip, [
    'vocab_size',
    'max_position_embeddings',
    'hidden_size',
    'num_hidden_layers',
    'num_attention_heads',
    'intermediate_size',
  ]);
  const param = get(params, 'parameterization') ?? 'eps';
  expect(info.prediction).toBe(param);
  const inCh = unet.in_channels as number;
  expect(info.variant).toBe(
    inCh === 9 ? 'inpaint' : inCh === 8 ? 'instruct-pix2pix' : inCh === 5 ? 'depth' : 'normal',
  );
}

const tinyDir = goldenPath('tiny-sd');
const tinyCheckpoints = readdirSync(tinyDir).filter(
  (f) => f.endsWith('.safetensors') && existsSync(join(tinyDir, f.replace(/\.safetensors$/, '.yaml'))),
);

describe('detect: tiny-sd checkpoints against their ldm yaml', () => {
  it('finds checkpoints with sidecars', () => expect(tinyCheckpoints.length).toBeGreaterThan(0));

  for (const f of tinyCheckpoints) {
    const path = join(tinyDir, f);
    const yaml = path.replace(/\.safetensors$/, '.yaml');
    it(`${f}: exact hyper-parameters from shapes alone`, async () => {
      const info = await detectFile(path);
      expect(info.kind).toBe('checkpoint');
      expect(info.architecture).toBe('sd1');
      checkAgainstLdmYaml(info, yaml);
      expect(info.config.sidecar).toBeUndefined();
    });

    it(`${f}: same with the sidecar read`, async () => {
      const info = await detectFile(path, { yamlPath: yaml });
      expect(info.config.sidecar?.path).toBe(yaml);
      checkAgainstLdmYaml(info, yaml);
    });

    it(`${f}: components, dtypes and tensor count add up`, async () => {
      const src = await openModel(path);
      try {
        const info = detectModel(src);
        expect(info.tensors).toBe(src.keys().length);
        const dtypes: Record<string, number> = {};
        let floats = 0;
        for (const k of src.keys()) {
          const i = src.info(k)!;
          dtypes[i.dtype] = (dtypes[i.dtype] ?? 0) + 1;
          if (['F32', 'F16', 'BF16', 'F64'].includes(i.dtype)) floats += numel(i.shape);
        }
        expect(info.dtypes).toEqual(dtypes);
        expect(Object.values(info.components).reduce((a, b) => a + b, 0)).toBe(floats);
        for (const c of ['unet', 'vae', 'text_encoder']) expect(info.components[c]).toBeGreaterThan(0);
        const unet = src.keys().filter((k) => k.startsWith('model.diffusion_model.'));
        expect(info.components.unet).toBe(unet.reduce((s, k) => s + numel(src.info(k)!.shape), 0));
      } finally {
        await src.close();
      }
    });
  }

  it('the .ckpt twins in formats/ are the same checkpoint', async () => {
    const dir = goldenPath('formats');
    const ckpts = readdirSync(dir).filter((f) => f.endsWith('.ckpt'));
    expect(ckpts.length).toBeGreaterThan(0);
    for (const f of ckpts) {
      const twin = join(tinyDir, f.replace(/\.ckpt$/, '.yaml'));
      const info = await detectFile(join(dir, f));
      expect(info.kind).toBe('checkpoint');
      expect(info.architecture).toBe('sd1');
      if (existsSync(twin)) checkAgainstLdmYaml(info, twin);
    }
  });
});

describe('detect: parts, variants and families from shapes', () => {
  const tiny = join(tinyDir, tinyCheckpoints[0]!);

  async function view(edit: (m: Map<string, { dtype: 'F32' | 'F16' | 'I64'; shape: number[] }>) => void) {
    const src = await openModel(tiny);
    try {
      return ShapeSource.from(src, edit as never);
    } finally {
      await src.close();
    }
  }

  it('a VAE with or without the first_stage_model. prefix is a VAE', async () => {
    const src = await openModel(tiny);
    try {
      const prefixed = new Map(
        src
          .keys()
          .filter((k) => k.startsWith('first_stage_model.'))
          .map((k) => [k, k]),
      );
      const bare = new Map([...prefixed.keys()].map((k) => [k.slice('first_stage_model.'.length), k]));
      const full = detectModel(src);
      for (const names of [prefixed, bare]) {
        const info = detectModel(new RenamedSource(src, names));
        expect(info.kind).toBe('vae');
        expect(info.config.vae).toEqual(full.config.vae);
        expect(info.components.vae).toBe(full.components.vae);
      }
    } finally {
      await src.close();
    }
  });

  it('a bare UNet is a checkpoint holding only a unet, same config and family', async () => {
    const src = await openModel(tiny);
    try {
      const names = new Map(
        src
          .keys()
          .filter((k) => k.startsWith('model.diffusion_model.'))
          .map((k) => [k.slice('model.diffusion_model.'.length), k]),
      );
      const full = detectModel(src);
      const info = detectModel(new RenamedSource(src, names));
      expect(info.kind).toBe('checkpoint');
      expect(Object.keys(info.components)).toEqual(['unet']);
      expect(info.components.unet).toBe(full.components.unet);
      expect(info.config.unet).toEqual(full.config.unet);
      expect(info.architecture).toBe('sd1');
    } finally {
      await src.close();
    }
  });

  for (const [channels, variant] of [
    [9, 'inpaint'],
    [8, 'instruct-pix2pix'],
    [5, 'depth'],
  ] as const) {
    it(`${channels} input channels => ${variant}`, async () => {
      const s = await view((m) => {
        const k = 'model.diffusion_model.input_blocks.0.0.weight';
        const i = m.get(k)!;
        m.set(k, { ...i, shape: [i.shape[0]!, channels, 3, 3] });
      });
      const info = detectModel(s);
      expect(info.variant).toBe(variant);
      expect(info.config.unet!.in_channels).toBe(channels);
    });
  }

  it('EMA copies are counted as their own component', async () => {
    const s = await view((m) =>
      m.set('model_ema.diffusion_modelout2weight', { dtype: 'F32', shape: [4, 32, 3, 3] }),
    );
    expect(detectModel(s).components.ema).toBe(4 * 32 * 9);
  });

  it('SDXL base / refiner / SD2 by their text towers and label_emb, heads rule by family', async () => {
    const unet = {
      'model.diffusion_model.input_blocks.0.0.weight': [320, 4, 3, 3],
      'model.diffusion_model.input_blocks.1.0.in_layers.2.weight': [320, 320, 3, 3],
      'model.diffusion_model.input_blocks.2.0.op.weight': [320, 320, 3, 3],
      'model.diffusion_model.input_blocks.3.0.in_layers.2.weight': [640, 320, 3, 3],
      'model.diffusion_model.input_blocks.3.1.proj_in.weight': [640, 640],
      'model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight': [640, 2048],
      'model.diffusion_model.input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight': [640, 2048],
      'model.diffusion_model.input_blocks.4.0.op.weight': [640, 640, 3, 3],
      'model.diffusion_model.input_blocks.5.0.in_layers.2.weight': [1280, 640, 3, 3],
      'model.diffusion_model.input_blocks.5.1.proj_in.weight': [1280, 1280],
      'model.diffusion_model.input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight': [1280, 2048],
      'model.diffusion_model.input_blocks.5.1.transformer_blocks.2.attn2.to_k.weight': [1280, 2048],
      'model.diffusion_model.out.2.weight': [4, 320, 3, 3],
    };
    const xl = detectModel(
      new ShapeSource({
        ...unet,
        'model.diffusion_model.label_emb.0.0.weight': [1280, 2816],
        'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight': [49408, 768],
        'conditioner.embedders.1.model.token_embedding.weight': [49408, 1280],
        'conditioner.embedders.1.model.ln_final.weight': [1280],
      }),
    );
    expect(xl.architecture).toBe('sdxl');
    expect(xl.prediction).toBe('eps');
    expect(xl.config.unet).toMatchObject({
      channel_mult: [1, 2, 4],
      num_res_blocks: 1,
      attention_resolutions: [4, 2],
      transformer_depth: [0, 2, 3],
      use_linear_in_transformer: true,
      context_dim: 2048,
      adm_in_channels: 2816,
      num_head_channels: 64,
    });
    expect(xl.config.text_encoder_2?.layout).toBe('open-clip');
    expect(xl.config.text_encoder_2?.num_attention_heads).toBe(20);

    const refiner = detectModel(
      new ShapeSource({
        ...unet,
        'model.diffusion_model.label_emb.0.0.weight': [1280, 2560],
        'conditioner.embedders.0.model.ln_final.weight': [1280],
      }),
    );
    expect(refiner.architecture).toBe('sdxl-refiner');

    const sd2 = detectModel(
      new ShapeSource({
        ...unet,
        'cond_stage_model.model.token_embedding.weight': [49408, 1024],
        'cond_stage_model.model.ln_final.weight': [1024],
      }),
    );
    expect(sd2.architecture).toBe('sd2');
    expect(sd2.prediction).toBeNull();
    expect(
      detectModel(new ShapeSource({ ...unet, 'cond_stage_model.model.ln_final.weight': [1024] }), {
        vPred: true,
      }).prediction,
    ).toBe('v');
    expect(
      detectModel(
        new ShapeSource({ ...unet, 'model.diffusion_model.label_emb.0.0.weight': [1280, 2816], v_pred: [] }),
      ).prediction,
    ).toBe('v');
  });

  it('ESRGAN / RealESRGAN / SwinIR weights are upscalers', () => {
    const esrgan = detectModel(
      new ShapeSource({
        'model.0.weight': [64, 3, 3, 3],
        'model.1.sub.0.RDB1.conv1.0.weight': [32, 64, 3, 3],
        'model.1.sub.1.RDB1.conv1.0.weight': [32, 64, 3, 3],
      }),
    );
    expect(esrgan.kind).toBe('upscaler');
    expect(esrgan.config.upscaler).toMatchObject({ arch: 'ESRGAN', features: 64, in_channels: 3, blocks: 2 });
    const real = detectModel(
      new ShapeSource({
        'params_ema.conv_first.weight': [64, 3, 3, 3],
        'params_ema.body.0.rdb1.conv1.weight': [32, 64, 3, 3],
      }),
    );
    expect(real.config.upscaler).toMatchObject({ arch: 'ESRGAN', prefix: 'params_ema.' });
    const swin = detectModel(
      new ShapeSource({
        'conv_first.weight': [180, 3, 3, 3],
        'layers.0.residual_group.blocks.0.attn.relative_position_bias_table': [225, 6],
      }),
    );
    expect(swin.config.upscaler?.arch).toBe('SwinIR');
  });

  it('absurd block indices in hostile names are handled without looping over them', () => {
    const info = detectModel(
      new ShapeSource({
        'model.diffusion_model.input_blocks.0.0.weight': [32, 4, 3, 3],
        'model.diffusion_model.input_blocks.4000000000.0.in_layers.2.weight': [32, 32, 3, 3],
        'model.diffusion_model.input_blocks.99999999999999999999.0.op.weight': [32, 32, 3, 3],
        'first_stage_model.encoder.conv_in.weight': [32, 3, 3, 3],
        'first_stage_model.encoder.conv_out.weight': [8, 32, 3, 3],
        'first_stage_model.decoder.conv_in.weight': [32, 4, 3, 3],
        'first_stage_model.decoder.conv_out.weight': [3, 32, 3, 3],
        'first_stage_model.encoder.down.9007199254740991.block.0.conv2.weight': [32, 32, 3, 3],
      }),
    );
    expect(info.kind).toBe('checkpoint');
    expect(info.config.unet?.num_res_blocks).toBe(1);
    expect(info.config.vae?.ch_mult).toHaveLength(1);
  });

  it('something else entirely is unknown', async () => {
    const info = await detectFile(goldenPath('formats', 'state_dict.safetensors'));
    expect(info.kind).toBe('unknown');
    expect(info.architecture).toBeNull();
  });
});

/** Expected kind of an adapter-folder file from its name, per the folder's README. */
function adapterKind(f: string): string | undefined {
  if (/^(lora_|lycoris_|extracted_lora)/.test(f)) return 'lora';
  if (/^hn_.*\.pt$/.test(f)) return 'hypernetwork';
  if (/^extract_model_b/.test(f)) return 'checkpoint';
  return undefined;
}

describe('detect: adapters, embeddings, ControlNets', () => {
  const adapterDir = goldenPath('adapters');
  const adapterFiles = readdirSync(adapterDir).filter(
    (f) => /\.(safetensors|pt)$/.test(f) && !f.startsWith('golden_'),
  );
  // Python's json writes NaN/Infinity; none of the fields read here use them.
  const cases = readPythonJson<{
    cases: {
      kind: string;
      adapter?: string;
      file?: string;
      a1111_on_disk?: { sd_version: string };
      loaded_fields?: { sizes: number[]; layer_structure: number[]; add_layer_norm: boolean };
    }[];
  }>('adapters', 'cases.json');

  it('every adapter file has a known expected kind', () => {
    expect(adapterFiles.length).toBeGreaterThan(0);
    for (const f of adapterFiles) expect(adapterKind(f), f).toBeDefined();
  });

  for (const f of adapterFiles) {
    it(`${f} is a ${adapterKind(f)}`, async () => {
      const info = await detectFile(join(adapterDir, f));
      expect(info.kind).toBe(adapterKind(f));
      if (info.kind === 'lora') {
        expect(info.config.lora!.modules).toBeGreaterThan(0);
        expect(info.config.lora!.algorithms.length).toBeGreaterThan(0);
      }
      if (info.kind === 'hypernetwork') expect(info.config.hypernetwork!.sizes.length).toBeGreaterThan(0);
    });
  }

  const hnCases = cases.cases.filter((c) => c.kind === 'hypernetwork' && c.file);
  for (const c of hnCases) {
    it(`${c.file}: sizes, layer structure and LayerNorm as A1111 loads them`, async () => {
      const info = await detectFile(join(adapterDir, c.file!));
      const loaded = c.loaded_fields!;
      expect(info.kind).toBe('hypernetwork');
      expect(info.config.hypernetwork).toMatchObject({
        sizes: [...loaded.sizes].sort((a, b) => a - b),
        layer_structure: loaded.layer_structure,
        linear_layers: loaded.layer_structure.length - 1,
        layer_norm: loaded.add_layer_norm,
      });
    });
  }

  it("LoRA families agree with A1111's sd_version where A1111 knows it", async () => {
    const map: Record<string, string> = { SD1: 'sd1', SD2: 'sd2', SDXL: 'sdxl' };
    const loraCases = cases.cases.filter((c) => c.kind === 'lora_apply' && c.adapter && c.a1111_on_disk);
    expect(loraCases.length).toBeGreaterThan(0);
    for (const c of loraCases) {
      const info = await detectFile(join(adapterDir, c.adapter!));
      expect(info.kind).toBe('lora');
      const v = c.a1111_on_disk!.sd_version;
      expect(info.architecture, c.adapter).toBe(map[v] ?? null);
    }
  });

  it('every embedding file listed in embeddings.json (tensor files) is an embedding of that size', async () => {
    const listing = JSON.parse(readFileSync(goldenPath('formats', 'embeddings.json'), 'utf8')) as {
      files: Record<string, { vectors: number; shape: number }>;
    };
    const entries = Object.entries(listing.files).filter(([f]) => !f.endsWith('.png'));
    expect(entries.length).toBeGreaterThan(0);
    for (const [f, e] of entries) {
      const info = await detectFile(goldenPath('formats', f));
      expect(info.kind, f).toBe('embedding');
      const emb = info.config.embedding!;
      expect(emb.vectors, f).toBe(e.vectors);
      const width = typeof emb.dim === 'number' ? emb.dim : emb.dim.clip_l + emb.dim.clip_g;
      expect(width, f).toBe(e.shape);
    }
  });

  it('ControlNets (ldm and diffusers layouts) with the yaml hyper-parameters', async () => {
    const dir = goldenPath('controlnet');
    const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors') && !f.startsWith('golden_'));
    const diffusers = join(dir, 'diffusers', 'diffusion_pytorch_model.safetensors');
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const info = await detectFile(join(dir, f));
      expect(info.kind).toBe('controlnet');
      expect(info.architecture).toBe('sd1');
      const yaml = join(dir, f.replace(/\.safetensors$/, '.yaml'));
      if (existsSync(yaml)) {
        const cfg = get(
          parse(readFileSync(yaml, 'utf8')),
          'model',
          'params',
          'control_stage_config',
          'params',
        );
        const { num_heads: _h, ...shapeFields } = cfg as Yaml;
        expectSameFields(info.config.controlnet!.unet, shapeFields, [
          'in_channels',
          'model_channels',
          'channel_mult',
        ]);
        expect(info.config.controlnet!.hint_channels).toBe((cfg as Yaml).hint_channels);
      }
    }
    if (existsSync(diffusers)) {
      const info = await detectFile(diffusers);
      expect(info.kind).toBe('controlnet');
      expect(info.config.controlnet!.layout).toBe('diffusers');
    }
  });
});

describe('detect: the yaml sidecar is read defensively', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdstudio-sidecar-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('parameterization v gives v-prediction; the override wins over an eps file', async () => {
    const yaml = join(dir, 'v.yaml');
    writeFileSync(
      yaml,
      'model:\n  params:\n    parameterization: "v"\n    unet_config:\n      params:\n        num_head_channels: 64\n',
    );
    const tiny = join(tinyDir, tinyCheckpoints[0]!);
    const info = await detectFile(tiny, { yamlPath: yaml });
    expect(info.prediction).toBe('v');
    expect(info.config.unet!.num_head_channels).toBe(64);
    expect(info.config.unet!.num_heads).toBeUndefined();
    expect((await detectFile(tiny, { vPred: true })).prediction).toBe('v');
  });

  it('rejects oversized files, alias bombs, bad values and non-configs with a UserError', () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, 'a: ' + 'x'.repeat(MAX_SIDECAR_BYTES + 1));
    expect(() => readSidecar(big)).toThrow(UserError);
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 0; i < 8; i++)
      bomb.push(
        `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`,
      );
    bomb.push('model: {params: {}}');
    expect(() => parseSidecarText('bomb.yaml', bomb.join('\n'))).toThrow(UserError);
    expect(() => parseSidecarText('p.yaml', 'model: {params: {parameterization: x0}}')).toThrow(
      /parameterization/,
    );
    expect(() => parseSidecarText('n.yaml', '- just a list')).toThrow(/ldm config/);
    expect(() => parseSidecarText('m.yaml', 'model: {params: [unclosed')).toThrow(UserError);
    expect(() => readSidecar(join(dir, 'missing.yaml'))).toThrow(UserError);
    // Deep nesting makes YAML parsers crawl or overflow their stack: refused up front.
    for (const deep of [
      '['.repeat(20000),
      '{a: '.repeat(10000),
      '- '.repeat(20000) + 'x',
      'model: ' + '['.repeat(65),
    ]) {
      const start = performance.now();
      expect(() => parseSidecarText('deep.yaml', deep)).toThrow(/nests deeper/);
      expect(performance.now() - start).toBeLessThan(2000);
    }
  });
});
