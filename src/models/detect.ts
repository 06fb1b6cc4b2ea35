/**
 * What a model file is, from its tensor names and shapes alone (plus an optional `<ckpt>.yaml`
 * sidecar, as A1111 reads): the kind of file, the SD family, prediction type, variant, which
 * components it holds and their hyper-parameters. Pure: reads no tensor data.
 *
 * Kinds are tried in order: ControlNet, checkpoint, LoRA, VAE, embedding, hypernetwork, upscaler.
 * Checkpoint families follow A1111's `guess_model_config_from_state_dict` order (SDXL, SDXL
 * refiner, SD2 depth, SD2 by its OpenCLIP text tower, then SD1), extended to files without a text
 * encoder by the UNet's shapes.
 */
import { numel, type TensorSource } from '../formats/tensor.js';
import {
  controlNetArchitecture,
  detectControlNet,
  detectEmbedding,
  detectHypernetwork,
  detectLora,
  detectUpscaler,
  embeddingArchitecture,
  loraArchitecture,
  unetArchitecture,
  type Arch,
  type ControlNetConfig,
  type EmbeddingConfig,
  type HypernetworkConfig,
  type LoraConfig,
  type UpscalerConfig,
} from './detect-adapters.js';
import { readSidecar, type SidecarConfig } from './detect-sidecar.js';
import { detectTextEncoder, type TextEncoderConfig } from './detect-text.js';
import { detectUnet, type ShapeOf, type UnetConfig } from './detect-unet.js';
import { detectVae, type VaeConfig } from './detect-vae.js';

export type ModelKind =
  'checkpoint' | 'lora' | 'embedding' | 'hypernetwork' | 'vae' | 'controlnet' | 'upscaler' | 'unknown';
export type Architecture = Arch;
export type Prediction = 'eps' | 'v';
export type Variant = 'normal' | 'inpaint' | 'instruct-pix2pix' | 'depth' | 'unclip';

export interface ModelConfig {
  unet?: UnetConfig;
  vae?: VaeConfig;
  text_encoder?: TextEncoderConfig;
  text_encoder_2?: TextEncoderConfig;
  lora?: LoraConfig;
  embedding?: EmbeddingConfig;
  hypernetwork?: HypernetworkConfig;
  controlnet?: ControlNetConfig;
  upscaler?: UpscalerConfig;
  /** The `<ckpt>.yaml` that was read, and what it said. */
  sidecar?: SidecarConfig;
}

export interface ModelInfo {
  kind: ModelKind;
  architecture: Architecture | null;
  /**
   * eps / v. SD2 512-base (eps) and 768-v (v) have identical keys, so for SD2 this is null unless
   * a sidecar's `parameterization` or the `vPred` override says; SD1/SDXL default to eps (an SDXL
   * file with a `v_pred` marker key is v). null for files that are not diffusion models.
   */
  prediction: Prediction | null;
  variant: Variant;
  /** Component name → parameter count (float tensors): unet, vae, text_encoder, text_encoder_2, ema, … */
  components: Record<string, number>;
  /** dtype → number of tensors. */
  dtypes: Record<string, number>;
  tensors: number;
  config: ModelConfig;
}

export interface DetectOptions {
  /** An ldm config sidecar to read (see `sidecarPathFor`). */
  yamlPath?: string;
  /** Force v-prediction (what `--v-pred` and A1111's v-yaml choice mean). */
  vPred?: boolean;
}

/** Which component a checkpoint key belongs to. Order matters: the first matching prefix wins. */
const COMPONENT_PREFIXES: [string, string][] = [
  ['model_ema.', 'ema'],
  ['model.diffusion_model.', 'unet'],
  ['first_stage_model.', 'vae'],
  ['cond_stage_model.', 'text_encoder'],
  ['conditioner.embedders.0.', 'text_encoder'],
  ['conditioner.embedders.1.', 'text_encoder_2'],
  ['depth_model.', 'depth_model'],
  ['embedder.', 'image_embedder'],
  ['control_model.', 'controlnet'],
];

const FLOAT = new Set(['F64', 'F32', 'F16', 'BF16']);

export function componentOf(key: string): string {
  for (const [p, name] of COMPONENT_PREFIXES) if (key.startsWith(p)) return name;
  return 'other';
}

export function detectModel(source: TensorSource, opts: DetectOptions = {}): ModelInfo {
  const keys = source.keys();
  const shapes = new Map<string, number[]>();
  const dtypes: Record<string, number> = {};
  for (const k of keys) {
    const info = source.info(k);
    if (!info) continue;
    shapes.set(k, info.shape);
    dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + 1;
  }
  const shapeOf: ShapeOf = (name) => shapes.get(name);
  const floatParams = (k: string) => {
    const info = source.info(k);
    return info && FLOAT.has(info.dtype) ? numel(info.shape) : 0;
  };
  const sidecar = opts.yamlPath ? readSidecar(opts.yamlPath) : undefined;

  const info: ModelInfo = {
    kind: 'unknown',
    architecture: null,
    prediction: null,
    variant: 'normal',
    components: {},
    dtypes,
    tensors: keys.length,
    config: {},
  };
  if (sidecar) info.config.sidecar = sidecar;
  // Adapters, embeddings, upscalers: one component named after the kind.
  const totalParams = (): Record<string, number> => ({
    [info.kind]: keys.reduce((s, k) => s + floatParams(k), 0),
  });

  // ControlNets first: old full-model ControlNet files also carry model.diffusion_model.*.
  // Checkpoints come before LoRAs so that no weight name of a real model is read as a LoRA suffix.
  const control = detectControlNet(keys, shapeOf);
  if (control) {
    info.kind = 'controlnet';
    info.config.controlnet = control;
    info.architecture = controlNetArchitecture(control, keys, shapeOf);
    info.components = {
      controlnet: keys.filter((k) => k.startsWith(control.prefix)).reduce((s, k) => s + floatParams(k), 0),
    };
    return info;
  }

  const unetPrefix = shapeOf('model.diffusion_model.input_blocks.0.0.weight')
    ? 'model.diffusion_model.'
    : shapeOf('input_blocks.0.0.weight')
      ? ''
      : undefined;
  const unet = unetPrefix !== undefined ? detectUnet(keys, shapeOf, unetPrefix) : undefined;
  const vaePrefix = shapeOf('first_stage_model.encoder.conv_in.weight') ? 'first_stage_model.' : '';
  const vae = detectVae(keys, shapeOf, vaePrefix);
  const te = textEncoders(keys, shapeOf);

  if (unet || te.text_encoder || te.text_encoder_2) {
    info.kind = 'checkpoint';
    if (unet) info.config.unet = unet;
    if (vae) info.config.vae = vae;
    Object.assign(info.config, te);
    for (const k of keys) {
      let comp = componentOf(k);
      // Standalone files: a bare UNet's or text encoder's keys have no component prefix.
      if (comp === 'other' && unetPrefix === '') comp = 'unet';
      if (comp === 'other' && te.bareText && k.startsWith('text_model.')) comp = 'text_encoder';
      info.components[comp] = (info.components[comp] ?? 0) + floatParams(k);
    }
    classifyCheckpoint(info, keys, shapeOf, sidecar, opts);
    return info;
  }

  const lora = detectLora(keys, shapeOf);
  if (lora) {
    info.kind = 'lora';
    info.config.lora = lora;
    info.architecture = loraArchitecture(keys, shapeOf, source.metadata);
    info.components = totalParams();
    return info;
  }

  if (vae) {
    info.kind = 'vae';
    info.config.vae = vae;
    info.components = { vae: keys.reduce((s, k) => s + floatParams(k), 0) };
    return info;
  }

  const emb = detectEmbedding(keys, shapeOf);
  if (emb) {
    info.kind = 'embedding';
    info.config.embedding = emb;
    info.architecture = embeddingArchitecture(emb);
    info.components = totalParams();
    return info;
  }

  const hn = detectHypernetwork(keys, shapeOf);
  if (hn) {
    info.kind = 'hypernetwork';
    info.config.hypernetwork = hn;
    info.components = totalParams();
    return info;
  }

  const up = detectUpscaler(keys, shapeOf);
  if (up) {
    info.kind = 'upscaler';
    info.config.upscaler = up;
    info.components = totalParams();
    return info;
  }

  info.components = totalParams();
  return info;
}

function textEncoders(
  keys: readonly string[],
  shapeOf: ShapeOf,
): { text_encoder?: TextEncoderConfig; text_encoder_2?: TextEncoderConfig; bareText?: boolean } {
  const out: { text_encoder?: TextEncoderConfig; text_encoder_2?: TextEncoderConfig; bareText?: boolean } =
    {};
  const first =
    detectTextEncoder(keys, shapeOf, 'cond_stage_model.transformer.') ??
    detectTextEncoder(keys, shapeOf, 'cond_stage_model.model.') ??
    detectTextEncoder(keys, shapeOf, 'conditioner.embedders.0.transformer.') ??
    detectTextEncoder(keys, shapeOf, 'conditioner.embedders.0.model.');
  if (first) out.text_encoder = first;
  const second = detectTextEncoder(keys, shapeOf, 'conditioner.embedders.1.model.');
  if (second) out.text_encoder_2 = second;
  if (!first && !second) {
    // A standalone text encoder (HF CLIPTextModel names), as `extract --part text-encoder` writes.
    const bare = detectTextEncoder(keys, shapeOf, '');
    if (bare && bare.layout === 'hf-clip') {
      out.text_encoder = bare;
      out.bareText = true;
    }
  }
  return out;
}

function classifyCheckpoint(
  info: ModelInfo,
  keys: readonly string[],
  shapeOf: ShapeOf,
  sidecar: SidecarConfig | undefined,
  opts: DetectOptions,
): void {
  const unet = info.config.unet;
  const has = (k: string) => shapeOf(k) !== undefined;
  let arch: Arch | null = null;
  if (has('conditioner.embedders.1.model.ln_final.weight')) arch = 'sdxl';
  else if (has('conditioner.embedders.0.model.ln_final.weight')) {
    // SD2.1-turbo ships in SGM layout with a 1024-wide OpenCLIP as embedder 0 (A1111 remaps it).
    arch = shapeOf('conditioner.embedders.0.model.ln_final.weight')![0] === 1024 ? 'sd2' : 'sdxl-refiner';
  } else if (keys.some((k) => k.startsWith('depth_model.'))) arch = 'sd2';
  else if (
    has('cond_stage_model.model.ln_final.weight') ||
    has('cond_stage_model.model.token_embedding.weight')
  ) {
    arch = 'sd2';
  } else if (has('cond_stage_model.transformer.text_model.embeddings.token_embedding.weight')) arch = 'sd1';
  else if (unet) arch = unetArchitecture(unet);
  else if (info.config.text_encoder?.layout === 'hf-clip') {
    arch =
      info.config.text_encoder.hidden_size === 768 || info.config.text_encoder.hidden_size < 768
        ? 'sd1'
        : null;
  }
  info.architecture = arch;

  const inCh = unet?.in_channels;
  if (keys.some((k) => k.startsWith('depth_model.')) || inCh === 5) info.variant = 'depth';
  // SD 2.1 unCLIP: a CLIP image embedder and its noise augmentor beside a 4-channel UNet.
  else if (keys.some((k) => k.startsWith('embedder.') || k.startsWith('noise_augmentor.')))
    info.variant = 'unclip';
  else if (inCh === 9) info.variant = 'inpaint';
  else if (inCh === 8) info.variant = 'instruct-pix2pix';

  if (unet) {
    // The heads rule is not in the weights: SD1 uses 8 heads, SD2/SDXL 64-wide heads (ldm configs).
    if (sidecar?.num_heads !== undefined || sidecar?.num_head_channels !== undefined) {
      if (sidecar.num_heads !== undefined) unet.num_heads = sidecar.num_heads;
      if (sidecar.num_head_channels !== undefined) unet.num_head_channels = sidecar.num_head_channels;
    } else if (arch === 'sd1') unet.num_heads = 8;
    else if (arch !== null) unet.num_head_channels = 64;
  }

  // A sidecar that spells its text towers out (the tiny test models) says their heads.
  const heads = sidecar?.text_heads ?? [];
  const towers = [info.config.text_encoder, info.config.text_encoder_2].filter((t) => t !== undefined);
  towers.forEach((t, i) => {
    if (heads[i]) t.num_attention_heads = heads[i];
  });

  if (opts.vPred) info.prediction = 'v';
  else if (sidecar) info.prediction = sidecar.parameterization;
  else if (!unet || arch === null) info.prediction = null;
  else if (arch === 'sd2')
    info.prediction = info.variant === 'normal' || info.variant === 'unclip' ? null : 'eps';
  else info.prediction = has('v_pred') ? 'v' : 'eps';
}
