/**
 * The tensors the runtime hands across its modules: plain float32 data with dims, the UNet's inputs
 * and the VAE posterior. A module of their own so the engine, the tiled VAE and the family-neutral
 * model interface share them without importing each other.
 */
import type { UnetHypernetworks } from '../models/hypernetwork-graph.js';

export interface TensorF32 {
  data: Float32Array;
  dims: number[];
}

export interface UNetInputs {
  /** Latent [B, C, H, W]. */
  x: TensorF32;
  /** Timesteps [B] (fractional allowed). */
  t: TensorF32;
  /** Cross-attention context [B, 77·k, contextDim]. */
  context: TensorF32;
  /** ControlNet residuals: one per skip connection (input block order) plus the middle block. */
  control?: { skips: TensorF32[]; middle: TensorF32 };
  /** Separate key/value contexts for cross-attention (default: context). */
  contextK?: TensorF32;
  contextV?: TensorF32;
  /** Hypernetworks on the attention keys/values (a UNet graph variant; models/hypernetwork-graph.ts). */
  hypernetworks?: UnetHypernetworks;
  /** SDXL `vector` conditioning [B, admInChannels] (required exactly when the UNet has label_emb). */
  y?: TensorF32;
  /**
   * Token merging before the full-resolution self-attentions (A1111 "Token merging ratio",
   * models/token-merging.ts): 0 … 0.75, default 0 = off. Faster, and the image changes a little.
   */
  tokenMergeRatio?: number;
}

/**
 * One layer's low-rank branch, y += (x·downᵀ)·upᵀ (LoRA fed to the UNet as graph inputs,
 * adapters/lora-branches.ts): down [rank, inF], up [outF, rank], row-major float32 (kohya's layout).
 */
export interface LowRankBranch {
  inF: number;
  outF: number;
  rank: number;
  down: Float32Array;
  up: Float32Array;
}

/** Layer key prefix (the weight key without `.weight`) → its branch. */
export type LowRankBranches = ReadonlyMap<string, LowRankBranch>;

// A type alias (not an interface) so it fits encodeTiled's Record<string, TensorF32>.
export type VaePosterior = {
  moments: TensorF32;
  mean: TensorF32;
  logvar: TensorF32;
  std: TensorF32;
  /** mean + std·noise (no 0.18215 scale). */
  sample: TensorF32;
};
