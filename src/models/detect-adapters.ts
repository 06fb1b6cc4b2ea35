/**
 * Recognisers for the files that are not whole checkpoints: LoRA / LyCORIS, textual-inversion
 * embeddings, hypernetworks, ControlNets and upscalers. Each looks only at key names and shapes
 * and returns its own small config, or undefined when the keys are not its kind.
 */
import { countIndexed, detectUnet, type ShapeOf, type UnetConfig } from './detect-unet.js';

export type Arch = 'sd1' | 'sd2' | 'sdxl' | 'sdxl-refiner';

// ---------------------------------------------------------------- LoRA / LyCORIS

export interface LoraConfig {
  /** kohya (`lora_unet_…` / `lora_te_…`), diffusers-peft (dotted names + lora_A/lora_B). */
  naming: 'kohya' | 'diffusers-peft' | 'other';
  /** Network types present: lora, loha, lokr, ia3, oft, full, glora, norm. */
  algorithms: string[];
  modules: number;
  /** Most common rank over the modules (LoRA down rows, LoHa/LoKr factor rank). */
  rank?: number;
  /** Modules per target: unet, text_encoder (te / te1), text_encoder_2 (te2). */
  targets: Record<string, number>;
  /** Textual-inversion embeddings bundled in the file (`bundle_emb.*`). */
  bundled_embeddings: number;
  /**
   * Most common `.alpha` over the modules (scale = alpha / rank; modules without one use scale 1).
   * Filled by `inspect`, which reads the values: detection itself reads no tensor data.
   */
  alpha?: number;
  /** Module count per alpha value, when the modules do not all share one. */
  alphas?: Record<string, number>;
}

const LORA_SUFFIXES: [RegExp, string][] = [
  [/\.(lora_down|lora_up|lora_mid|lora_A|lora_B)\.weight$/, 'lora'],
  [/\.lora\.(down|up)\.weight$/, 'lora'],
  // Old diffusers attention-processor LoRAs: `…attn1.processor.to_q_lora.down.weight`.
  [/_lora\.(down|up)\.weight$/, 'lora'],
  [/\.hada_(w1_a|w1_b|w2_a|w2_b|t1|t2)$/, 'loha'],
  [/\.lokr_(w1|w1_a|w1_b|w2|w2_a|w2_b|t2)$/, 'lokr'],
  [/\.on_input$/, 'ia3'],
  [/\.(oft_blocks|oft_diag)$/, 'oft'],
  [/\.(a1|a2|b1|b2)\.weight$/, 'glora'],
  [/\.(w_norm|b_norm)$/, 'norm'],
  [/\.diff(_b)?$/, 'full'],
];

const KOHYA_PREFIX = /^(lora_unet_|lora_te\d?_|lora_prior_unet_|oft_unet_|lycoris_)/;

function moduleName(key: string): string {
  const m =
    /^(.*?)\.(lora_down|lora_up|lora_mid|lora_A|lora_B|lora\.|hada_|lokr_|on_input|oft_|alpha|weight|diff|a1\.|a2\.|b1\.|b2\.|w_norm|b_norm|scale)/.exec(
      key,
    );
  return m ? m[1]! : key.slice(0, key.lastIndexOf('.'));
}

function mostCommon(values: number[]): number | undefined {
  const count = new Map<number, number>();
  let best: number | undefined;
  for (const v of values) {
    const c = (count.get(v) ?? 0) + 1;
    count.set(v, c);
    if (best === undefined || c > count.get(best)! || (c === count.get(best) && v > best)) best = v;
  }
  return best;
}

export function detectLora(keys: readonly string[], shapeOf: ShapeOf): LoraConfig | undefined {
  const algorithms = new Set<string>();
  const modules = new Set<string>();
  let kohya = 0;
  let peft = 0;
  let bundled = 0;
  const ranks: number[] = [];
  const targets: Record<string, number> = {};
  for (const k of keys) {
    if (k.startsWith('bundle_emb.')) {
      if (/\.string_to_param\.[^.]+$/.test(k) || /^bundle_emb\.[^.]+\.(clip_l|clip_g)$/.test(k)) bundled++;
      continue;
    }
    const alg = LORA_SUFFIXES.find(([re]) => re.test(k))?.[1];
    if (!alg) continue;
    // IA3's `.weight` is only IA3 when the module also has `.on_input`.
    algorithms.add(alg);
    const mod = moduleName(k);
    modules.add(mod);
    if (KOHYA_PREFIX.test(k)) kohya++;
    if (/\.lora_[AB]\.weight$/.test(k) && !KOHYA_PREFIX.test(k)) peft++;
    const s = shapeOf(k);
    if (s && /\.(lora_down|lora_A)\.weight$|\.hada_w1_b$|\.lokr_w1_b$|\.lokr_w2_b$/.test(k))
      ranks.push(s[0]!);
  }
  if (modules.size === 0 && bundled === 0) return undefined;
  for (const mod of modules) {
    const target = /^(lora_te2_|text_encoder_2\.)/.test(mod)
      ? 'text_encoder_2'
      : /^(lora_te1?_|text_encoder\.|te_)/.test(mod)
        ? 'text_encoder'
        : /^(lora_unet_|lora_prior_unet_|unet\.|oft_unet_|lycoris_)/.test(mod)
          ? 'unet'
          : 'other';
    targets[target] = (targets[target] ?? 0) + 1;
  }
  const cfg: LoraConfig = {
    naming: kohya > 0 ? 'kohya' : peft > 0 ? 'diffusers-peft' : 'other',
    algorithms: [...algorithms].sort(),
    modules: modules.size,
    targets,
    bundled_embeddings: bundled,
  };
  const rank = mostCommon(ranks);
  if (rank !== undefined) cfg.rank = rank;
  return cfg;
}

/** The base model a LoRA was trained for: kohya metadata first, then the widths it touches. */
export function loraArchitecture(
  keys: readonly string[],
  shapeOf: ShapeOf,
  metadata: Record<string, string>,
): Arch | null {
  const base = metadata.ss_base_model_version ?? metadata['modelspec.architecture'] ?? '';
  if (/sdxl|stable-diffusion-xl/i.test(base)) return /refiner/i.test(base) ? 'sdxl-refiner' : 'sdxl';
  if (/^sd_v1|stable-diffusion-v1/i.test(base)) return 'sd1';
  if (/^sd_(v)?2|stable-diffusion-v2/i.test(base)) return 'sd2';
  if (metadata.ss_v2 === 'True') return 'sd2';
  if (keys.some((k) => k.startsWith('lora_te2_') || k.startsWith('text_encoder_2.'))) return 'sdxl';
  for (const k of keys) {
    if (/attn2[._]to_k\.(lora_down|lora_A)\.weight$/.test(k)) {
      const ctx = shapeOf(k)?.[1];
      if (ctx === 768) return 'sd1';
      if (ctx === 1024) return 'sd2';
      if (ctx === 2048) return 'sdxl';
      if (ctx === 1280) return 'sdxl-refiner';
    }
  }
  // A1111's NetworkOnDisk rule: kohya files with metadata but no base version are SD1 trainings.
  if (Object.keys(metadata).some((k) => k.startsWith('ss_'))) return 'sd1';
  return null;
}

// ---------------------------------------------------------------- embeddings

export interface EmbeddingConfig {
  /** `image`: A1111's embedding images (PNG/WebP, data in a text chunk or the pixels). */
  format: 'a1111' | 'emb_params' | 'sdxl' | 'single-tensor' | 'image';
  vectors: number;
  /** Width per vector (768 SD1, 1024 SD2); for SDXL the CLIP-L and bigG widths. */
  dim: number | { clip_l: number; clip_g: number };
}

/** Text-encoder widths an embedding can have: used to tell a lone tensor is an embedding. */
const EMBEDDING_WIDTHS = new Set([768, 1024, 1280]);

export function detectEmbedding(keys: readonly string[], shapeOf: ShapeOf): EmbeddingConfig | undefined {
  const rows = (s: number[]) => (s.length === 1 ? 1 : s[0]!);
  const param = keys.find((k) => /^string_to_param\./.test(k));
  if (param) {
    const s = shapeOf(param)!;
    return { format: 'a1111', vectors: rows(s), dim: s[s.length - 1]! };
  }
  const l = shapeOf('clip_l');
  const g = shapeOf('clip_g');
  if (l && g && keys.length === 2) {
    return { format: 'sdxl', vectors: rows(g), dim: { clip_l: l[l.length - 1]!, clip_g: g[g.length - 1]! } };
  }
  if (keys.length === 1) {
    const s = shapeOf(keys[0]!)!;
    const width = s[s.length - 1]!;
    if ((s.length === 1 || s.length === 2) && (keys[0] === 'emb_params' || EMBEDDING_WIDTHS.has(width))) {
      return {
        format: keys[0] === 'emb_params' ? 'emb_params' : 'single-tensor',
        vectors: rows(s),
        dim: width,
      };
    }
  }
  return undefined;
}

export function embeddingArchitecture(cfg: EmbeddingConfig): Arch | null {
  if (typeof cfg.dim === 'object') return 'sdxl';
  return cfg.dim === 768 ? 'sd1' : cfg.dim === 1024 ? 'sd2' : null;
}

// ---------------------------------------------------------------- hypernetworks

export interface HypernetworkConfig {
  /** Context widths the file has MLPs for (A1111 picks one by the attention input's last dim). */
  sizes: number[];
  /** Linear layers per MLP (= len(layer_structure) - 1); LayerNorms are not counted. */
  linear_layers: number;
  /** The hidden widths as multiples of the input width: A1111's layer_structure, read from shapes. */
  layer_structure: number[];
  /** LayerNorm after the hidden linears (`is_layer_norm`). */
  layer_norm: boolean;
  legacy: boolean;
}

/** A1111 hypernetworks flattened: `<size>.<0|1>.linear.N.weight` (or legacy `linear1`/`linear2`). */
export function detectHypernetwork(
  keys: readonly string[],
  shapeOf: ShapeOf,
): HypernetworkConfig | undefined {
  const sizes = new Set<number>();
  let legacy = false;
  for (const k of keys) {
    const m = /^(\d+)\.([01])\.(linear\.(\d+)|linear([12]))\.(weight|bias)$/.exec(k);
    if (!m) return undefined;
    sizes.add(Number(m[1]));
    if (m[5]) legacy = true;
  }
  if (sizes.size === 0) return undefined;
  const sorted = [...sizes].sort((a, b) => a - b);
  // The K MLP of the first size, in Sequential order: 2-D weights are Linear, 1-D are LayerNorm.
  const first = `${sorted[0]}.0.`;
  const layers = keys
    .filter((k) => k.startsWith(first) && k.endsWith('.weight'))
    .map((k) => ({ index: Number(/linear\.?(\d+)\.weight$/.exec(k)![1]), shape: shapeOf(k)! }))
    .sort((a, b) => a.index - b.index);
  const linears = layers.filter((l) => l.shape.length === 2);
  const width = sorted[0]!;
  const structure =
    linears.length > 0 ? [linears[0]!.shape[1]! / width, ...linears.map((l) => l.shape[0]! / width)] : [];
  return {
    sizes: sorted,
    linear_layers: linears.length,
    layer_structure: structure,
    layer_norm: layers.some((l) => l.shape.length === 1),
    legacy,
  };
}

// ---------------------------------------------------------------- ControlNet

export interface ControlNetConfig {
  layout: 'ldm' | 'diffusers' | 'control-lora';
  /** Key prefix of the control model in the file (`control_model.` or none). */
  prefix: string;
  hint_channels?: number;
  unet?: UnetConfig;
  model_channels?: number;
  context_dim?: number;
}

export function detectControlNet(keys: readonly string[], shapeOf: ShapeOf): ControlNetConfig | undefined {
  if (keys.includes('lora_controlnet')) return { layout: 'control-lora', prefix: '' };
  for (const prefix of ['control_model.', '']) {
    const hint = shapeOf(`${prefix}input_hint_block.0.weight`);
    if (!hint && !keys.some((k) => k.startsWith(`${prefix}zero_convs.`))) continue;
    const cfg: ControlNetConfig = { layout: 'ldm', prefix };
    if (hint) cfg.hint_channels = hint[1]!;
    const unet = detectUnet(keys, shapeOf, prefix);
    if (unet) cfg.unet = unet;
    return cfg;
  }
  const condIn = shapeOf('controlnet_cond_embedding.conv_in.weight');
  if (condIn) {
    const cfg: ControlNetConfig = { layout: 'diffusers', prefix: '', hint_channels: condIn[1]! };
    const convIn = shapeOf('conv_in.weight');
    if (convIn) cfg.model_channels = convIn[0]!;
    const toK = keys.find((k) => /attn2\.to_k\.weight$/.test(k));
    if (toK) cfg.context_dim = shapeOf(toK)![1]!;
    return cfg;
  }
  return undefined;
}

/** SD family of a ControlNet from its UNet half: label_emb ⇒ SDXL, linear proj ⇒ SD2, else SD1. */
export function controlNetArchitecture(
  cfg: ControlNetConfig,
  keys: readonly string[],
  shapeOf: ShapeOf,
): Arch | null {
  if (cfg.unet) return unetArchitecture(cfg.unet);
  if (cfg.layout === 'diffusers') {
    if (keys.some((k) => k.startsWith('add_embedding.'))) return 'sdxl';
    const proj = shapeOf('down_blocks.0.attentions.0.proj_in.weight');
    if (cfg.context_dim === 768) return 'sd1';
    if (cfg.context_dim === 1024) return 'sd2';
    if (proj) return proj.length === 2 ? 'sd2' : 'sd1';
  }
  return null;
}

/**
 * Family of a bare UNet: SDXL's `label_emb` (2816 base / 2560 refiner), the usual context widths,
 * and for non-standard (tiny) widths the projection style: SD2 linear, SD1 conv.
 */
export function unetArchitecture(u: UnetConfig): Arch | null {
  if (u.adm_in_channels !== undefined) return u.adm_in_channels === 2560 ? 'sdxl-refiner' : 'sdxl';
  if (u.context_dim === 768) return 'sd1';
  if (u.context_dim === 1024) return 'sd2';
  if (u.context_dim === 2048) return 'sdxl';
  if (u.context_dim === 1280) return 'sdxl-refiner';
  if (!u.use_spatial_transformer) return null;
  return u.use_linear_in_transformer ? 'sd2' : 'sd1';
}

// ---------------------------------------------------------------- upscalers

export interface UpscalerConfig {
  /** ESRGAN (old and new RRDBNet key layouts), RealESRGAN-compact, SwinIR-family, ScuNET, … */
  arch: string;
  /** Key prefix the weights sit under (`params_ema.` / `params.` in BasicSR files). */
  prefix: string;
  features?: number;
  blocks?: number;
  in_channels?: number;
}

export function detectUpscaler(keys: readonly string[], shapeOf: ShapeOf): UpscalerConfig | undefined {
  for (const prefix of ['', 'params_ema.', 'params.']) {
    const has = (k: string) => shapeOf(prefix + k) !== undefined;
    const some = (p: string) => keys.some((k) => k.startsWith(prefix + p));
    const first = shapeOf(`${prefix}conv_first.weight`) ?? shapeOf(`${prefix}model.0.weight`);
    const withShape = (arch: string, blocksPrefix?: string): UpscalerConfig => {
      const cfg: UpscalerConfig = { arch, prefix };
      if (first) {
        cfg.features = first[0]!;
        cfg.in_channels = first[1]!;
      }
      if (blocksPrefix) cfg.blocks = countIndexed(keys, prefix + blocksPrefix);
      return cfg;
    };
    if (has('model.0.weight') && some('model.1.sub.')) return withShape('ESRGAN', 'model.1.sub.');
    if (has('conv_first.weight') && some('RRDB_trunk.')) return withShape('ESRGAN', 'RRDB_trunk.');
    if (has('conv_first.weight') && some('body.') && keys.some((k) => /\.rdb1\./.test(k))) {
      return withShape('ESRGAN', 'body.');
    }
    if (has('conv_first.weight') && some('layers.0.residual_group.')) return withShape('SwinIR', 'layers.');
    if (has('conv_first.weight') && some('layers.')) return withShape('SwinIR-family', 'layers.');
    if (has('m_head.0.weight') && some('m_down1.')) return withShape('ScuNET');
    if (has('body.0.weight') && keys.every((k) => k.startsWith(prefix + 'body.'))) {
      const b = shapeOf(`${prefix}body.0.weight`)!;
      if (b.length === 4) {
        return {
          arch: 'RealESRGAN-compact',
          prefix,
          features: b[0]!,
          in_channels: b[1]!,
          blocks: countIndexed(keys, prefix + 'body.'),
        };
      }
    }
  }
  return undefined;
}
