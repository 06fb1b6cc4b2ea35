/**
 * The family-neutral diffusion model: what pipeline/ and the adapters may ask of any checkpoint
 * (SD 1.x, SD 2.x, SDXL base and refiner). One class implements it for every family today
 * (`Sd1Model` in sd1.ts, loaded by `loadDiffusionModel`): the families differ in configuration
 * (models/family.ts) — text towers and which of their outputs condition, the UNet's shape and
 * `label_emb`, prediction type, latent scale — not in code paths.
 */
import type { DiffusionConfig, ModelFamily, PredictionType, TextTower } from '../models/config.js';
import type { SamplingPlan } from '../sampling/index.js';
import type { StepInfo } from '../sampling/types.js';
import type { TileOptions } from './tiling.js';
import type { TensorF32, UNetInputs, VaePosterior } from './tensors.js';

/** A prompt's text conditioning: the cross-attention context and (SDXL) the pooled text output. */
export interface TextConditioning {
  /** [B, 77·k, contextDim]: every tower's context concatenated along channels. */
  context: TensorF32;
  /** [B, P]: the pooled output of the tower that has one (SDXL bigG), for the `vector`. */
  pooled?: TensorF32;
}

export interface DiffusionModel {
  readonly config: DiffusionConfig;
  readonly family: ModelFamily;
  /** What the UNet predicts: eps (noise) or v (SD 2.x 768-v). */
  readonly prediction: PredictionType;
  /** The VAE sees latent / scaleFactor (0.18215 SD 1.x/2.x, 0.13025 SDXL). */
  readonly scaleFactor: number;
  readonly latentChannels: number;
  /** Text towers in conditioning order (tokenizer padding, widths, embeddings per tower). */
  readonly towers: readonly TextTower[];

  /** Token ids [batch, 77] of tower `tower` → token embeddings (textual inversion is spliced here). */
  tokenEmbeddings(ids: Int32Array | BigInt64Array, batch: number, tower?: number): Promise<TensorF32>;
  /** Every tower's token embeddings (and ids, for the pooled output) → conditioning. */
  encodeConditioning(
    embeds: readonly TensorF32[],
    ids: readonly (Int32Array | BigInt64Array)[],
    clipSkip?: number,
  ): Promise<TextConditioning>;
  /** UNet(x, t, context[, y, control residuals, separate K/V context]) → eps or v. */
  unet(inp: UNetInputs): Promise<TensorF32>;
  /** Latent already divided by scaleFactor → image in about [-1, 1]. */
  vaeDecode(z: TensorF32, tiled?: boolean | TileOptions): Promise<TensorF32>;
  vaeEncode(image: TensorF32, noise?: TensorF32, tiled?: boolean | TileOptions): Promise<VaePosterior>;
  release(): Promise<void>;
}

/**
 * A per-step hook of the UNet call in a sampling pass (pipeline/sample.ts): previews and progress
 * there, adapters (hypernetwork K/V context, ControlNet residuals) here — it lives with the model
 * interface so adapters/ need not import pipeline/.
 */
export interface UnetStepHook {
  /** Once, when the pass is planned (before the first UNet call). */
  start?(plan: SamplingPlan): void;
  /** Before each UNet call, with the inputs it is about to run on (mutable). */
  beforeUnet?(inputs: UNetInputs): void | Promise<void>;
  /** After each sampler step. */
  afterStep?(info: StepInfo): void;
}
