/**
 * The one config reader of the engine: what `models/detect` says a checkpoint is (family,
 * prediction, UNet hyper-parameters with per-level transformer depth, `label_emb`, linear
 * projections and the heads rule, sidecar fields) turned into the `DiffusionConfig` the graph
 * builders and runtime/ take. Detection stays a pure function of names and shapes; this adds the
 * few shape reads the builders need (text tower and VAE sizes).
 */
import type { TensorSource } from '../formats/tensor.js';
import { UserError } from '../util/errors.js';
import {
  hfClipConfigFromTensors,
  openClipConfigFromTensors,
  sd1ConfigFromTensors,
  SD1_PREFIXES,
  vaeConfigFromTensors,
  type DiffusionConfig,
  type ModelFamily,
  type PredictionType,
  type Sd1Config,
  type TextTower,
  type UNetConfig,
} from './config.js';
import { detectModel, type ModelInfo } from './detect.js';
import type { UnetConfig as DetectedUnet } from './detect-unet.js';

export const CLIP_EOS = 49407;
/** ldm `scale_factor` defaults by family (a sidecar's value wins). */
export const SCALE_FACTOR = { sd: 0.18215, sdxl: 0.13025 } as const;

export interface FamilyOptions {
  /** The `<checkpoint>.yaml` sidecar, when there is one (A1111 reads it too). */
  yamlPath?: string;
  /** `--prediction v|eps`: overrides keys and sidecar. */
  prediction?: PredictionType;
}

/** What the caller still has to decide: SD2 files whose prediction nothing in the file tells. */
export interface FamilyConfigResult {
  config: DiffusionConfig;
  /** True when the prediction is a default (SD2 without sidecar or override): see `loadDiffusionModel`. */
  predictionUnknown: boolean;
  info: ModelInfo;
}

function unetFromDetected(u: DetectedUnet, family: ModelFamily): UNetConfig {
  if (u.out_channels === undefined || u.context_dim === undefined) {
    throw new UserError('this file has a UNet without output blocks or cross-attention; not a txt2img model');
  }
  const levels = u.channel_mult.length;
  const perLevel = Array.isArray(u.transformer_depth) ? u.transformer_depth : undefined;
  const depth = perLevel ? Math.max(...perLevel) : u.transformer_depth;
  const cfg: UNetConfig = {
    inChannels: u.in_channels,
    outChannels: u.out_channels,
    modelChannels: u.model_channels,
    channelMult: u.channel_mult,
    numResBlocks: u.num_res_blocks,
    attentionResolutions: u.attention_resolutions,
    numHeads: u.num_heads ?? (family === 'sd1' ? 8 : -1),
    numHeadChannels: u.num_heads !== undefined ? -1 : (u.num_head_channels ?? -1),
    transformerDepth: depth as number,
    contextDim: u.context_dim,
    useLinearInProjection: u.use_linear_in_transformer,
  };
  if (perLevel) {
    if (perLevel.length !== levels)
      throw new UserError(`UNet depth list ${perLevel.join(',')} does not match its ${levels} levels`);
    cfg.transformerDepthPerLevel = perLevel;
  }
  if (u.transformer_depth_middle !== undefined) cfg.transformerDepthMiddle = u.transformer_depth_middle;
  if (u.adm_in_channels !== undefined) cfg.admInChannels = u.adm_in_channels;
  return cfg;
}

/** The family's text towers, with heads from the sidecar where it spells the tower out. */
function towersFor(src: TensorSource, family: ModelFamily, heads: (number | null)[] = []): TextTower[] {
  const h = (i: number) => heads[i] ?? undefined;
  const hf = (prefix: string, i: number, layer: TextTower['layer']): TextTower => ({
    layout: 'hf-clip',
    prefix,
    config: hfClipConfigFromTensors(src, prefix, h(i)),
    padId: CLIP_EOS,
    layer,
  });
  const oc = (prefix: string, i: number, layer: TextTower['layer'], pooled: boolean): TextTower => {
    const tower: TextTower = {
      layout: 'open-clip',
      prefix,
      config: openClipConfigFromTensors(src, prefix, h(i)),
      padId: 0,
      layer,
    };
    if (pooled) {
      const proj = src.info(`${prefix}.text_projection`);
      if (!proj || proj.shape.length !== 2)
        throw new UserError(`${src.path}: ${prefix}.text_projection is missing`);
      tower.pooledDim = proj.shape[1]!;
    }
    return tower;
  };
  switch (family) {
    case 'sd1':
      return [hf(SD1_PREFIXES.text, 0, 'last-normed')];
    case 'sd2':
      return [oc('cond_stage_model.model', 0, 'penultimate-normed', false)];
    case 'sdxl':
      return [
        hf('conditioner.embedders.0.transformer.text_model', 0, 'penultimate'),
        oc('conditioner.embedders.1.model', 1, 'penultimate', true),
      ];
    case 'sdxl-refiner':
      return [oc('conditioner.embedders.0.model', 0, 'penultimate', true)];
  }
}

/** Read a checkpoint's family and networks through models/detect. */
export function diffusionConfigFromSource(src: TensorSource, opts: FamilyOptions = {}): FamilyConfigResult {
  const info = detectModel(src, { yamlPath: opts.yamlPath });
  if (info.kind !== 'checkpoint' || !info.config.unet) {
    throw new UserError(
      `${src.path} is not a Stable Diffusion checkpoint (detected: ${info.kind}); ` +
        'txt2img needs a file with a UNet, a VAE and its text encoders',
    );
  }
  const family = info.architecture;
  if (family === null) throw new UserError(`${src.path}: cannot tell which Stable Diffusion family this is`);
  if (info.variant === 'depth' || info.variant === 'unclip') {
    // Both need an extra input we do not make (a depth map; a CLIP image embedding).
    const what = info.variant === 'depth' ? 'an SD 2.0 depth (depth2img) model' : 'an SD 2.x unCLIP model';
    throw new UserError(
      `${src.path} is ${what}, which SD Studio does not run; use an SD 2.x, SDXL or inpainting checkpoint`,
    );
  }
  if (info.variant === 'instruct-pix2pix') {
    throw new UserError(`${src.path}: instruct-pix2pix models are not supported`);
  }
  const sidecar = info.config.sidecar;
  const unet = unetFromDetected(info.config.unet, family);
  if (unet.numHeads <= 0 && unet.numHeadChannels <= 0) unet.numHeadChannels = 64;
  const towers = towersFor(src, family, sidecar?.text_heads);
  const vaePrefix = SD1_PREFIXES.vae;
  const vae = src.has(`${vaePrefix}.encoder.conv_in.weight`)
    ? vaeConfigFromTensors(src, vaePrefix)
    : undefined;
  const xl = family === 'sdxl' || family === 'sdxl-refiner';
  const predictionUnknown = !opts.prediction && info.prediction === null;
  const prediction: PredictionType = opts.prediction ?? info.prediction ?? 'eps';
  const config: DiffusionConfig = {
    family,
    prediction,
    scaleFactor: sidecar?.scale_factor ?? (xl ? SCALE_FACTOR.sdxl : SCALE_FACTOR.sd),
    unet,
    text: towers[0]!.config,
    towers,
    prefixes: { unet: SD1_PREFIXES.unet, vae: vaePrefix, text: towers[0]!.prefix },
    defaultSize: xl ? 1024 : family === 'sd2' && prediction === 'v' ? 768 : 512,
  };
  if (vae) config.vae = vae;
  if (xl) {
    const pooled = towers.find((t) => t.pooledDim !== undefined)?.pooledDim;
    const adm = unet.admInChannels;
    const numbers = family === 'sdxl' ? 6 : 5;
    if (pooled === undefined || adm === undefined || (adm - pooled) % numbers !== 0 || adm <= pooled) {
      throw new UserError(
        `${src.path}: SDXL UNet label_emb width ${adm} does not fit a pooled width ${pooled} plus ${numbers} size embeddings`,
      );
    }
    config.vector = {
      kind: family === 'sdxl' ? 'base' : 'refiner',
      pooledDim: pooled,
      sizeEmbedDim: (adm - pooled) / numbers,
    };
  }
  return { config, predictionUnknown, info };
}

/** A caller-given SD 1.x-shaped config as a DiffusionConfig (SD1, or SD2 by its text keys). */
export function diffusionConfigFromSd1(src: TensorSource, cfg: Sd1Config): DiffusionConfig {
  const openClip = src.has('cond_stage_model.model.token_embedding.weight');
  const towers: TextTower[] = openClip
    ? [
        {
          layout: 'open-clip',
          prefix: 'cond_stage_model.model',
          config: cfg.text,
          padId: 0,
          layer: 'penultimate-normed',
        },
      ]
    : [
        {
          layout: 'hf-clip',
          prefix: cfg.prefixes.text,
          config: cfg.text,
          padId: CLIP_EOS,
          layer: 'last-normed',
        },
      ];
  return {
    ...cfg,
    family: openClip ? 'sd2' : 'sd1',
    prediction: 'eps',
    scaleFactor: SCALE_FACTOR.sd,
    towers,
    defaultSize: 512,
  };
}

export { sd1ConfigFromTensors };
