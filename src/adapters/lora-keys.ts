/**
 * Which checkpoint layer a LoRA/LyCORIS key belongs to, as A1111 v1.10.1's Lora extension decides.
 *
 * A1111 names every torch module of the loaded model by its dotted path with `.` → `_`
 * (`cond_stage_model.wrapped` gives `transformer_text_model_…`, `sd_model.model` gives
 * `diffusion_model_…`), converts a file key's module part from kohya/diffusers naming to those
 * names, and looks it up. We have no torch modules: the same table is derived from the
 * checkpoint's tensor names (every prefix of a parameter path is a module; the kind of a
 * leaf module comes from its weight's rank).
 *
 * Extension beyond A1111: diffusers/PEFT files (`unet.….lora_A.weight`,
 * `text_encoder.…`), which A1111 1.10 cannot match, are renamed to kohya names first.
 */
import type { TensorSource } from '../formats/tensor.js';

/** The torch module type A1111 would see; decides how a network module is built and applied. */
export type TorchModuleType = 'Linear' | 'Conv2d' | 'LayerNorm' | 'GroupNorm' | 'Embedding' | 'container';

export interface LayerInfo {
  /** A1111's `network_layer_name`, e.g. `diffusion_model_input_blocks_1_1_proj_in`. */
  name: string;
  type: TorchModuleType;
  /** The checkpoint tensor holding the layer's weight (absent for containers). */
  weightKey?: string;
  /** Shape of that weight. */
  shape?: number[];
  /** Conv2d kernel size (from the weight). */
  kernel?: [number, number];
  /**
   * An OpenCLIP `nn.MultiheadAttention` (its weight is the fused `in_proj_weight`): the name of its
   * `out_proj` child, which A1111 patches together with q/k/v (`network_apply_weights`).
   */
  mhaOut?: string;
  /**
   * The `out_proj` of a MultiheadAttention: the parent's name. torch's MHA forward reads this
   * weight directly and never calls its forward, so A1111 never patches it on its own.
   */
  mhaParent?: string;
}

/** A1111's `network_layer_mapping` for one checkpoint. */
export interface LayerTable {
  layers: Map<string, LayerInfo>;
  /** SD2 (OpenCLIP text encoder) naming is in use: `model_transformer_resblocks` exists. */
  isSd2: boolean;
  /** SDXL naming (`conditioner.embedders.N` → `N_…`): CLIP-L as `0_transformer_…`, bigG as `1_model_…`. */
  isSdxl: boolean;
}

/** The module trees A1111 walks and the checkpoint key prefix each one sits under. */
const TREES: { prefix: RegExp; text: boolean }[] = [
  // sd_model.cond_stage_model.wrapped.named_modules(): FrozenCLIPEmbedder (SD1) / OpenCLIP (SD2).
  { prefix: /^cond_stage_model\./, text: true },
  // SDXL: each `conditioner.embedders[i].wrapped.named_modules()`, named `{i}_{name}`.
  { prefix: /^conditioner\.embedders\.(\d+)\./, text: true },
  // sd_model.model.named_modules(): the DiffusionWrapper, whose child is `diffusion_model`.
  { prefix: /^model\./, text: false },
];

/** Build the layer table from a checkpoint's tensor names and shapes (no tensor data is read). */
export function buildLayerTable(source: Pick<TensorSource, 'keys' | 'info'>): LayerTable {
  const layers = new Map<string, LayerInfo>();
  for (const key of source.keys()) {
    let tree: (typeof TREES)[number] | undefined;
    let hit: RegExpExecArray | null = null;
    for (const t of TREES) if (!tree && (hit = t.prefix.exec(key))) tree = t;
    if (!tree || !hit) continue;
    const layerPrefix = hit[1] !== undefined ? `${hit[1]}_` : '';
    const path = key.slice(hit[0].length).split('.');
    const param = path.pop();
    if (!param || path.length === 0) continue;
    // Every prefix of the module path is a module (containers), as torch's named_modules lists them.
    for (let i = 1; i < path.length; i++) {
      const name = layerPrefix + path.slice(0, i).join('_');
      if (!layers.has(name)) layers.set(name, { name, type: 'container' });
    }
    const name = layerPrefix + path.join('_');
    if (param !== 'weight' && param !== 'in_proj_weight') {
      if (!layers.has(name)) layers.set(name, { name, type: 'container' });
      continue;
    }
    const shape = source.info(key)?.shape ?? [];
    let type: TorchModuleType;
    if (shape.length === 4) type = 'Conv2d';
    else if (shape.length === 2) type = /embedding$/.test(path[path.length - 1]!) ? 'Embedding' : 'Linear';
    else if (shape.length === 1)
      type = tree.text || /transformer_blocks_\d+_norm\d$/.test(name) ? 'LayerNorm' : 'GroupNorm';
    else type = 'container';
    const info: LayerInfo = { name, type, weightKey: key, shape: [...shape] };
    if (type === 'Conv2d') info.kernel = [shape[2]!, shape[3]!];
    layers.set(name, info);
  }
  for (const l of layers.values()) {
    const out = layers.get(`${l.name}_out_proj`);
    if (l.weightKey?.endsWith('in_proj_weight') && out?.weightKey) {
      l.mhaOut = out.name;
      out.mhaParent = l.name;
    }
  }
  return {
    layers,
    isSd2: layers.has('model_transformer_resblocks'),
    isSdxl: layers.has('0_transformer_text_model') || layers.has('1_model_transformer_resblocks'),
  };
}

const RESNET_SUFFIX: Record<string, string> = {
  conv1: 'in_layers_2',
  conv2: 'out_layers_3',
  norm1: 'in_layers_0',
  norm2: 'out_layers_0',
  time_emb_proj: 'emb_layers_1',
  conv_shortcut: 'skip_connection',
};

function suffixFor(kind: string, suffix: string): string {
  return kind === 'resnets' ? (RESNET_SUFFIX[suffix] ?? suffix) : suffix;
}

function openClipName(rest: string): string {
  if (rest.includes('mlp_fc1')) return rest.replace('mlp_fc1', 'mlp_c_fc');
  if (rest.includes('mlp_fc2')) return rest.replace('mlp_fc2', 'mlp_c_proj');
  return rest.replace('self_attn', 'attn');
}

/** A1111's `convert_diffusers_name_to_compvis`: a kohya module name to the ldm layer name. */
export function convertDiffusersNameToCompvis(key: string, isSd2: boolean): string {
  let m: RegExpExecArray | null;
  const n = (s: string) => Number(s);
  if ((m = /^lora_unet_conv_in(.*)/.exec(key))) return `diffusion_model_input_blocks_0_0${m[1]}`;
  if ((m = /^lora_unet_conv_out(.*)/.exec(key))) return `diffusion_model_out_2${m[1]}`;
  if ((m = /^lora_unet_time_embedding_linear_(\d+)(.*)/.exec(key)))
    return `diffusion_model_time_embed_${n(m[1]!) * 2 - 2}${m[2]}`;
  if ((m = /^lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)/.exec(key)))
    return `diffusion_model_input_blocks_${1 + n(m[1]!) * 3 + n(m[3]!)}_${m[2] === 'attentions' ? 1 : 0}_${suffixFor(m[2]!, m[4]!)}`;
  if ((m = /^lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)/.exec(key)))
    return `diffusion_model_middle_block_${m[1] === 'attentions' ? 1 : n(m[2]!) * 2}_${suffixFor(m[1]!, m[3]!)}`;
  if ((m = /^lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)/.exec(key)))
    return `diffusion_model_output_blocks_${n(m[1]!) * 3 + n(m[3]!)}_${m[2] === 'attentions' ? 1 : 0}_${suffixFor(m[2]!, m[4]!)}`;
  if ((m = /^lora_unet_down_blocks_(\d+)_downsamplers_0_conv/.exec(key)))
    return `diffusion_model_input_blocks_${3 + n(m[1]!) * 3}_0_op`;
  if ((m = /^lora_unet_up_blocks_(\d+)_upsamplers_0_conv/.exec(key)))
    return `diffusion_model_output_blocks_${2 + n(m[1]!) * 3}_${n(m[1]!) > 0 ? 2 : 1}_conv`;
  if ((m = /^lora_te_text_model_encoder_layers_(\d+)_(.+)/.exec(key))) {
    if (isSd2) return `model_transformer_resblocks_${m[1]}_${openClipName(m[2]!)}`;
    return `transformer_text_model_encoder_layers_${m[1]}_${m[2]}`;
  }
  if ((m = /^lora_te2_text_model_encoder_layers_(\d+)_(.+)/.exec(key)))
    return `1_model_transformer_resblocks_${m[1]}_${openClipName(m[2]!)}`;
  return key;
}

/** The outcome of matching one file key's module part. */
export interface KeyMatch {
  /** The layer name A1111 last tried (the matched one when `layer` is set). */
  key: string;
  layer?: LayerInfo;
}

/** A1111's lookup in `load_network`: convert, try `_[qkv]_proj` on MHA, then the compvis-name fallbacks. */
export function matchModuleName(moduleName: string, table: LayerTable): KeyMatch {
  let key = convertDiffusersNameToCompvis(moduleName, table.isSd2);
  let layer = table.layers.get(key);
  if (!layer) {
    const m = /^(.*)_([qkv]_proj)$/.exec(key);
    // Only a MultiheadAttention (OpenCLIP in_proj_weight) takes q/k/v parts; its key stays `…_q_proj`.
    if (m) {
      const mha = table.layers.get(m[1]!);
      if (mha && mha.weightKey?.endsWith('in_proj_weight')) layer = mha;
    }
  }
  if (!layer && moduleName.includes('lora_unet')) {
    key = moduleName.replace('lora_unet', 'diffusion_model');
    layer = table.layers.get(key);
  } else if (!layer && moduleName.includes('lora_te1_text_model')) {
    key = moduleName.replace('lora_te1_text_model', '0_transformer_text_model');
    layer = table.layers.get(key);
    if (!layer) {
      key = moduleName.replace('lora_te1_text_model', 'transformer_text_model');
      layer = table.layers.get(key);
    }
  }
  return layer ? { key, layer } : { key };
}

/**
 * Ours, for names that came from a diffusers/PEFT file: A1111's matching, then the upsampler
 * placement A1111's conversion gets wrong on SDXL (its `up_blocks.0` has attentions, so the
 * upsampler is `output_blocks.2.2`, not `.2.1`).
 */
export function matchDiffusersModule(moduleName: string, table: LayerTable): KeyMatch {
  const hit = matchModuleName(moduleName, table);
  if (hit.layer) return hit;
  const m = /^lora_unet_up_blocks_(\d+)_upsamplers_0_conv$/.exec(moduleName);
  if (m) {
    for (const slot of [1, 2]) {
      const key = `diffusion_model_output_blocks_${2 + Number(m[1]) * 3}_${slot}_conv`;
      const layer = table.layers.get(key);
      if (layer?.type === 'Conv2d') return { key, layer };
    }
  }
  return hit;
}

/** A file key split into its module part and its network part (`lora_down.weight`, `alpha`, …). */
export interface SplitKey {
  module: string;
  part: string;
}

/** A1111: `key.partition('.')`. */
export function splitA1111(key: string): SplitKey {
  const i = key.indexOf('.');
  return i < 0 ? { module: key, part: '' } : { module: key.slice(0, i), part: key.slice(i + 1) };
}

const DIFFUSERS_PART: [RegExp, string][] = [
  [/\.lora_A\.weight$/, 'lora_down.weight'],
  [/\.lora_B\.weight$/, 'lora_up.weight'],
  [/\.lora_A\.[^.]+\.weight$/, 'lora_down.weight'], // PEFT adapter names: lora_A.default.weight
  [/\.lora_B\.[^.]+\.weight$/, 'lora_up.weight'],
  [/\.lora\.down\.weight$/, 'lora_down.weight'],
  [/\.lora\.up\.weight$/, 'lora_up.weight'],
  [/\.lora_linear_layer\.down\.weight$/, 'lora_down.weight'],
  [/\.lora_linear_layer\.up\.weight$/, 'lora_up.weight'],
  [/_lora\.down\.weight$/, 'lora_down.weight'],
  [/_lora\.up\.weight$/, 'lora_up.weight'],
  [/\.alpha$/, 'alpha'],
];

/**
 * Our extension: a diffusers/PEFT key (`unet.down_blocks.0….to_q.lora_A.weight`,
 * `text_encoder.text_model.….q_proj.lora_B.weight`, old attention-processor `…processor.to_q_lora.down.weight`)
 * as the kohya key it stands for, or undefined when the key is not in that layout.
 */
export function diffusersToKohya(key: string, sdxl = false): SplitKey | undefined {
  const m = /^(unet|text_encoder|text_encoder_2)\.(.+)$/.exec(key);
  if (!m) return undefined;
  for (const [re, part] of DIFFUSERS_PART) {
    const hit = re.exec(m[2]!);
    if (!hit) continue;
    let path = m[2]!.slice(0, hit.index);
    if (re.source.startsWith('_lora')) path = path.replace(/\.processor\.(to_[qkv]|to_out)$/, '.$1');
    if (path.endsWith('.to_out')) path += '.0';
    // SDXL's first encoder is CLIP-L: kohya names it `lora_te1_` there (A1111's `0_transformer_…` fallback).
    const te1 = sdxl ? 'lora_te1_' : 'lora_te_';
    const prefix = m[1] === 'unet' ? 'lora_unet_' : m[1] === 'text_encoder' ? te1 : 'lora_te2_';
    return { module: prefix + path.replace(/\./g, '_'), part };
  }
  return undefined;
}
