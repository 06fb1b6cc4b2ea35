/**
 * Hyper-parameters of the networks, in the vocabulary of the ldm configs. The detector
 * (models/detect.ts) produces these from a checkpoint's shapes; `sd1ConfigFromTensors` here is
 * the minimal reading of SD 1.x shapes the engine itself needs.
 */
import type { TensorSource } from '../formats/tensor.js';
import { UserError } from '../util/errors.js';

export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  modelChannels: number;
  channelMult: number[];
  numResBlocks: number;
  /** Downsampling factors (1, 2, 4, …) at which a SpatialTransformer follows each ResBlock. */
  attentionResolutions: number[];
  /** Either a fixed head count (SD1: 8) … */
  numHeads: number;
  /** … or a fixed head width (SD2: 64); when > 0 it wins over numHeads. */
  numHeadChannels: number;
  /** Transformer blocks per SpatialTransformer (every attention level, unless the next field says). */
  transformerDepth: number;
  /**
   * SDXL: blocks per SpatialTransformer for each level (0 = no attention at that level; same
   * length as channelMult). Absent: `transformerDepth` at every level in attentionResolutions.
   */
  transformerDepthPerLevel?: number[];
  /** Blocks in the middle block's SpatialTransformer (default: the deepest level's, as sgm). */
  transformerDepthMiddle?: number;
  contextDim: number;
  /** SD2 uses Linear proj_in/proj_out, SD1 1×1 convs. */
  useLinearInProjection: boolean;
  /**
   * SDXL: width of the `vector` input `y` that `label_emb` (Linear, SiLU, Linear) adds to the
   * time embedding (2816 base, 2560 refiner). Absent: no `label_emb`, no `y` input.
   */
  admInChannels?: number;
}

/** Transformer depth at a UNet level (0 = the level has no SpatialTransformer). */
export function levelDepth(cfg: UNetConfig, level: number): number {
  if (cfg.transformerDepthPerLevel) return cfg.transformerDepthPerLevel[level] ?? 0;
  return cfg.attentionResolutions.includes(2 ** level) ? cfg.transformerDepth : 0;
}

/** Transformer depth of the middle block. */
export function middleDepth(cfg: UNetConfig): number {
  if (cfg.transformerDepthMiddle !== undefined) return cfg.transformerDepthMiddle;
  if (cfg.transformerDepthPerLevel)
    return cfg.transformerDepthPerLevel[cfg.transformerDepthPerLevel.length - 1]!;
  return cfg.transformerDepth;
}

export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  ch: number;
  chMult: number[];
  numResBlocks: number;
  zChannels: number;
  embedDim: number;
  /** Whether quant_conv / post_quant_conv exist (they do in every SD VAE). */
  hasQuantConv: boolean;
}

export interface ClipTextConfig {
  vocabSize: number;
  maxPositions: number;
  width: number;
  layers: number;
  heads: number;
  intermediate: number;
  activation: 'quick_gelu' | 'gelu';
  layerNormEps: number;
}

export interface Sd1Config {
  unet: UNetConfig;
  vae: VaeConfig;
  /** The (first) text tower's configuration; DiffusionConfig.towers lists every tower. */
  text: ClipTextConfig;
  /** Checkpoint key prefixes of the three parts. */
  prefixes: { unet: string; vae: string; text: string };
}

export const SD1_PREFIXES = {
  unet: 'model.diffusion_model',
  vae: 'first_stage_model',
  text: 'cond_stage_model.transformer.text_model',
};

function shapeOf(src: TensorSource, key: string): number[] {
  const info = src.info(key);
  if (!info) {
    throw new UserError(
      `${src.path}: tensor "${key}" is missing; this does not look like a complete Stable Diffusion checkpoint`,
    );
  }
  return info.shape;
}

function countIndexed(src: TensorSource, prefix: string): number {
  let n = 0;
  const re = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)\\.`);
  for (const k of src.keys()) {
    const m = re.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

/** Read the UNet/VAE/CLIP hyper-parameters of an SD 1.x-style checkpoint from its tensor shapes. */
export function sd1ConfigFromTensors(src: TensorSource): Sd1Config {
  const u = SD1_PREFIXES.unet;
  const conv0 = shapeOf(src, `${u}.input_blocks.0.0.weight`);
  const modelChannels = conv0[0]!;
  const inChannels = conv0[1]!;
  const outChannels = shapeOf(src, `${u}.out.2.weight`)[0]!;
  const nInput = countIndexed(src, `${u}.input_blocks`);
  // Levels: each level but the last ends with a Downsample (`.0.op.weight`).
  const downs: number[] = [];
  for (let i = 0; i < nInput; i++) if (src.has(`${u}.input_blocks.${i}.0.op.weight`)) downs.push(i);
  const numResBlocks = downs.length > 0 ? downs[0]! - 1 : nInput - 1;
  const levels = downs.length + 1;
  if (nInput !== 1 + levels * numResBlocks + downs.length) {
    throw new UserError(`${src.path}: unexpected UNet layout (${nInput} input blocks)`);
  }
  const channelMult: number[] = [];
  const attentionResolutions: number[] = [];
  let contextDim = 0;
  let useLinear = false;
  let depth = 1;
  for (let level = 0; level < levels; level++) {
    const first = 1 + level * (numResBlocks + 1);
    const out = shapeOf(src, `${u}.input_blocks.${first}.0.out_layers.3.weight`)[0]!;
    channelMult.push(out / modelChannels);
    const attn = `${u}.input_blocks.${first}.1`;
    if (src.has(`${attn}.proj_in.weight`)) {
      attentionResolutions.push(2 ** level);
      useLinear = shapeOf(src, `${attn}.proj_in.weight`).length === 2;
      contextDim = shapeOf(src, `${attn}.transformer_blocks.0.attn2.to_k.weight`)[1]!;
      depth = countIndexed(src, `${attn}.transformer_blocks`);
    }
  }
  const unet: UNetConfig = {
    inChannels,
    outChannels,
    modelChannels,
    channelMult,
    numResBlocks,
    attentionResolutions,
    numHeads: 8,
    numHeadChannels: -1,
    transformerDepth: depth,
    contextDim,
    useLinearInProjection: useLinear,
  };

  const vae = vaeConfigFromTensors(src, SD1_PREFIXES.vae);

  const text = hfClipConfigFromTensors(src, SD1_PREFIXES.text);
  return { unet, vae, text, prefixes: { ...SD1_PREFIXES } };
}

/** The ldm AutoencoderKL hyper-parameters under `prefix` (`first_stage_model`), from shapes. */
export function vaeConfigFromTensors(src: TensorSource, prefix: string): VaeConfig {
  const v = prefix;
  const vConvIn = shapeOf(src, `${v}.encoder.conv_in.weight`);
  const ch = vConvIn[0]!;
  const nDown = countIndexed(src, `${v}.encoder.down`);
  const chMult: number[] = [];
  for (let i = 0; i < nDown; i++)
    chMult.push(shapeOf(src, `${v}.encoder.down.${i}.block.0.conv1.weight`)[0]! / ch);
  return {
    inChannels: vConvIn[1]!,
    outChannels: shapeOf(src, `${v}.decoder.conv_out.weight`)[0]!,
    ch,
    chMult,
    numResBlocks: countIndexed(src, `${v}.encoder.down.0.block`),
    zChannels: shapeOf(src, `${v}.decoder.conv_in.weight`)[1]!,
    embedDim: shapeOf(src, `${v}.post_quant_conv.weight`)[1]!,
    hasQuantConv: src.has(`${v}.quant_conv.weight`),
  };
}

/**
 * A Hugging Face CLIPTextModel's hyper-parameters under `prefix` (ending in `text_model`). Heads:
 * `heads` when a sidecar says, else width / 64 (every CLIP tower SD uses has 64-wide heads).
 */
export function hfClipConfigFromTensors(src: TensorSource, prefix: string, heads?: number): ClipTextConfig {
  const t = prefix;
  const tok = shapeOf(src, `${t}.embeddings.token_embedding.weight`);
  const width = tok[1]!;
  return {
    vocabSize: tok[0]!,
    maxPositions: shapeOf(src, `${t}.embeddings.position_embedding.weight`)[0]!,
    width,
    layers: countIndexed(src, `${t}.encoder.layers`),
    heads: heads ?? Math.max(1, Math.round(width / 64)),
    intermediate: shapeOf(src, `${t}.encoder.layers.0.mlp.fc1.weight`)[0]!,
    activation: 'quick_gelu',
    layerNormEps: 1e-5,
  };
}

/** An open_clip text tower's hyper-parameters under `prefix` (ending before `token_embedding`). */
export function openClipConfigFromTensors(src: TensorSource, prefix: string, heads?: number): ClipTextConfig {
  const tok = shapeOf(src, `${prefix}.token_embedding.weight`);
  const width = tok[1]!;
  return {
    vocabSize: tok[0]!,
    maxPositions: shapeOf(src, `${prefix}.positional_embedding`)[0]!,
    width,
    layers: countIndexed(src, `${prefix}.transformer.resblocks`),
    heads: heads ?? Math.max(1, Math.round(width / 64)),
    intermediate: shapeOf(src, `${prefix}.transformer.resblocks.0.mlp.c_fc.weight`)[0]!,
    // ViT-H-14 and ViT-bigG-14 use exact GELU (open_clip's default act).
    activation: 'gelu',
    layerNormEps: 1e-5,
  };
}

/** The full-size SD 1.5 configuration (used by the benchmark and as documentation). */
export const SD15_CONFIG: Sd1Config = {
  unet: {
    inChannels: 4,
    outChannels: 4,
    modelChannels: 320,
    channelMult: [1, 2, 4, 4],
    numResBlocks: 2,
    attentionResolutions: [4, 2, 1],
    numHeads: 8,
    numHeadChannels: -1,
    transformerDepth: 1,
    contextDim: 768,
    useLinearInProjection: false,
  },
  vae: {
    inChannels: 3,
    outChannels: 3,
    ch: 128,
    chMult: [1, 2, 4, 4],
    numResBlocks: 2,
    zChannels: 4,
    embedDim: 4,
    hasQuantConv: true,
  },
  text: {
    vocabSize: 49408,
    maxPositions: 77,
    width: 768,
    layers: 12,
    heads: 12,
    intermediate: 3072,
    activation: 'quick_gelu',
    layerNormEps: 1e-5,
  },
  prefixes: { ...SD1_PREFIXES },
};

/** The model families the engine runs (the detector's architectures). */
export type ModelFamily = 'sd1' | 'sd2' | 'sdxl' | 'sdxl-refiner';
export type PredictionType = 'eps' | 'v';

/** One text tower of a checkpoint and how its outputs become conditioning. */
export interface TextTower {
  /** Key layout: Hugging Face CLIPTextModel (`…text_model`) or open_clip (`…model`). */
  layout: 'hf-clip' | 'open-clip';
  /** Key prefix: ends in `text_model` (hf-clip) or before `token_embedding` (open-clip). */
  prefix: string;
  config: ClipTextConfig;
  /** Padding token id after EOS: EOS (49407) for OpenAI CLIP towers, 0 for open_clip ones (A1111). */
  padId: number;
  /**
   * Which hidden state is the cross-attention context (A1111 / ldm / sgm):
   * 'last-normed' (SD1: final layer norm of the last layer, or of an earlier one with clip skip),
   * 'penultimate-normed' (SD2: ln_final of the input of the last resblock),
   * 'penultimate' (SDXL both towers: the input of the last layer, no final norm).
   */
  layer: 'last-normed' | 'penultimate-normed' | 'penultimate';
  /** Width of the pooled output (text_projection) for towers whose pooled output is used (SDXL bigG). */
  pooledDim?: number;
}

/**
 * Everything the engine needs to run one checkpoint of any family: the networks' hyper-parameters
 * (read by models/family.ts from models/detect), the text towers, how the output is parameterised,
 * the latent scale and SDXL's vector conditioning.
 */
export interface DiffusionConfig extends Omit<Sd1Config, 'vae'> {
  family: ModelFamily;
  prediction: PredictionType;
  /** Latent scale (ldm `scale_factor`): the VAE sees latent / scaleFactor. */
  scaleFactor: number;
  /** Absent for files without a VAE (SDXL refiner checkpoints). */
  vae?: VaeConfig;
  /** Text towers in conditioning order (their contexts are concatenated along channels). */
  towers: TextTower[];
  /**
   * SDXL `vector` layout: the pooled width, then timestep embeddings of `sizeEmbedDim` per number:
   * base = original size (h, w), crop (top, left), target size (h, w); refiner = original size,
   * crop, aesthetic score. Absent for SD 1.x/2.x.
   */
  vector?: { kind: 'base' | 'refiner'; pooledDim: number; sizeEmbedDim: number };
  /** A1111's default image size for the family (512 SD1 / SD2 eps, 768 SD2 v, 1024 SDXL). */
  defaultSize: number;
}
