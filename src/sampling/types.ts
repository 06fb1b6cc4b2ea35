/**
 * The vocabulary every sampler speaks. Latents are flat Float32Arrays (a batch of [C, H, W] images
 * back to back); the network is only ever reached through these plain async functions.
 */

/** k-diffusion's denoiser: the predicted clean latent (x0) for x at noise level sigma. */
export type Model = (x: Float32Array, sigma: number) => Promise<Float32Array>;

/** A timestep-space noise predictor (DDIM/PLMS/UniPC): eps for x at model timestep t (may be fractional). */
export type EpsModel = (x: Float32Array, t: number) => Promise<Float32Array>;

/** What a sampler reports after each step (A1111's callback_state). */
export interface StepInfo {
  /** Step index, 0-based. */
  i: number;
  /** The number of steps the sampler expects to make (adaptive samplers: an estimate). */
  total: number;
  x: Float32Array;
  denoised: Float32Array;
  sigma: number;
  sigmaHat: number;
}

/**
 * Where stochastic samplers get their noise. In A1111 both calls end in the image's own generator
 * (ImageRNG.next()); SDE samplers get a Brownian tree for `sample` instead.
 */
export interface NoiseSource {
  /** k-diffusion's `noise_sampler(sigma, sigma_next)`. */
  sample(sigma: number, sigmaNext: number): Float32Array;
  /** `torch.randn_like(x)` inside k-diffusion / A1111 samplers (A1111 routes it to the image generator). */
  randnLike(): Float32Array;
  /** k-diffusion drew `randn_like(x)` but does not use it (no churn): advance the stream the same way. */
  skipRandnLike(): void;
}

export interface SamplerContext {
  model: Model;
  noise: NoiseSource;
  callback?: (info: StepInfo) => void;
}

export interface TimestepSamplerContext {
  model: EpsModel;
  noise: NoiseSource;
  /** The model's alphas_cumprod (float32, as ldm registers it). */
  alphasCumprod: Float32Array;
  callback?: (info: StepInfo) => void;
  /**
   * The unconditional eps of the model's last call (A1111 CFGDenoiser.last_noise_uncond: a skipped
   * uncond pass gives the first cond's); read by DDIM CFG++.
   */
  lastUncond?: () => Float32Array | undefined;
}
