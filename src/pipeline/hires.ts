/**
 * A1111's hires fix, the second half of a txt2img batch: upscale the first pass (in latent space,
 * or decode → resize → encode for the image upscalers), crop to the target as A1111 truncates, and
 * sample again as img2img with A1111's fixed step count, its own sampler/scheduler/prompt if set.
 */
import { resizeRgb } from '../image/images.js';
import { cropLatent, interpolate, LATENT_MODES } from '../image/latents.js';
import { parseExtraNetworks } from '../prompt/extra-networks.js';
import {
  hiresTargetSize,
  inpaintingMaskWeightOf,
  randnSourceOf,
  resolveSampler,
  tokenMergingRatioOf,
  type GenerationParams,
} from '../params/generation.js';
import { ImageRng, type ImageRngOptions } from '../sampling/seeds.js';
import type { Conditioner } from './conditioning.js';
import type { ImageConditioning } from './denoiser.js';
import type { LoadedModel } from './model.js';
import { concat, samplePass, type Dims, type PassArgs, type PassRefiner, type PassResult } from './sample.js';
import { hiresConditioning } from './img2img.js';
import { decodeLatents, encodeImage } from './vae.js';

function upscalerKernel(name: string): 'lanczos3' | 'nearest' {
  return name === 'Nearest' ? 'nearest' : 'lanczos3';
}

export interface HiresArgs {
  model: LoadedModel;
  p: GenerationParams;
  /** The first pass's latents and their dims. */
  latents: Float32Array;
  dims: Dims;
  /** The batch's seeds (the image upscalers' encode noise) and generator options. */
  seeds: readonly number[];
  rngOptions: Omit<ImageRngOptions, 'shape'>;
  /** The batch's prompts and negative prompts, styled (used unless hr_prompt / hr_negative_prompt are set). */
  prompts: readonly string[];
  negatives: readonly string[];
  /** hr_prompt / hr_negative_prompt after styles. */
  hrPrompt: string;
  hrNegative: string;
  /** The conditioner for the pass's image size (height, width: SDXL's vector takes it). */
  conditioner: (height: number, width: number) => Conditioner;
  /**
   * The SDXL refiner of this pass, if any: attaches its conditioning to `conds` (texts, first-pass
   * and hires prompt-editing steps, image size as for the conditioner).
   */
  refiner?: (
    texts: { prompt: string; negative: string }[],
    conds: ImageConditioning[],
    steps: number,
    size: [number, number],
    hiresSteps?: number,
  ) => Promise<PassRefiner | undefined>;
  /** Prompt-editing steps of the first pass (A1111 counts model calls). */
  firstPassCondSteps: number;
  condSteps: (sampler: string, steps: number) => number;
  /** What the pass shares with the first: stop flags, sampler options, model-call observer, NGMS. */
  pass: Pick<PassArgs, 'stop' | 'samplerOptions' | 'onModelCall' | 'sMinUncond' | 'sMinUncondAll'>;
  /** The per-step hooks of the second pass, given its latent dims (previews are sized by them). */
  passHooks?: (dims: Dims) => PassArgs['hooks'];
}

/** The second pass of the hires fix; returns its latents and dims. */
export async function hiresPass(a: HiresArgs): Promise<Pick<PassResult, 'x' | 'stopped'> & { dims: Dims }> {
  const { model, p } = a;
  const C = model.latentChannels;
  const source = randnSourceOf(p);
  const target = hiresTargetSize(p);
  const latentMode = LATENT_MODES[p.hr_upscaler];
  const th = Math.floor(target.height / 8);
  const tw = Math.floor(target.width / 8);
  let up: Float32Array;
  if (latentMode) {
    up = interpolate(a.latents, a.dims, th, tw, latentMode.mode);
  } else {
    const low = await decodeLatents(model.engine, a.latents, a.dims, model.scaleFactor);
    const encoded: Float32Array[] = [];
    for (let i = 0; i < low.length; i++) {
      const big = await resizeRgb(low[i]!, target.width, target.height, upscalerKernel(p.hr_upscaler));
      const fitted = big.width % 8 || big.height % 8 ? await resizeRgb(big, tw * 8, th * 8) : big;
      encoded.push(await encodeImage(model.engine, fitted, model.scaleFactor, C, a.seeds[i]!, source));
    }
    up = concat(encoded);
  }
  const tx = target.truncateX;
  const ty = target.truncateY;
  const batch = a.dims[0];
  const cropped = cropLatent(up, [batch, C, th, tw], ty >> 1, (ty + 1) >> 1, tx >> 1, (tx + 1) >> 1);
  const dims = cropped.dims as Dims;
  // Denoising strength 0: A1111's setup_img2img_steps (fixed steps, as the hires pass runs) gives a
  // schedule of no steps (sigmas [0]), so its sampler takes no step and the upscaled latent goes on
  // unchanged (A1111's own API test sends enable_hr with denoising_strength 0).
  if (p.denoising_strength === 0) return { x: cropped.data as Float32Array, dims };
  const rng = new ImageRng({ ...a.rngOptions, shape: [C, dims[2], dims[3]] });
  const hrSampler =
    p.hr_sampler_name && p.hr_sampler_name !== 'Use same sampler' ? p.hr_sampler_name : p.sampler_name;
  const hrSched = p.hr_scheduler && p.hr_scheduler !== 'Use same scheduler' ? p.hr_scheduler : p.scheduler;
  const resolved = resolveSampler(hrSampler, hrSched);
  const steps = p.hr_second_pass_steps || p.steps;
  const prompts = a.prompts.map((pr) => parseExtraNetworks(p.hr_prompt ? a.hrPrompt : pr));
  // Negative prompts keep their tags as text (A1111 parses only the positive ones).
  const negatives = a.negatives.map((ng) => ({ prompt: p.hr_negative_prompt ? a.hrNegative : ng }));
  // A1111's hr_upscale_to_y/x: the target before truncation.
  const conditioner = a.conditioner(th * 8, tw * 8);
  const hiresSteps = a.condSteps(resolved.sampler, steps);
  const conds = await Promise.all(
    prompts.map((pr, i) =>
      conditioner.forImage(pr.prompt, negatives[i]!.prompt, a.firstPassCondSteps, hiresSteps),
    ),
  );
  const refiner = await a.refiner?.(
    prompts.map((pr, i) => ({ prompt: pr.prompt, negative: negatives[i]!.prompt })),
    conds,
    a.firstPassCondSteps,
    [th * 8, tw * 8],
    hiresSteps,
  );
  const r = await samplePass({
    ...a.pass,
    refiner,
    hooks: a.passHooks?.(dims),
    model,
    sampler: resolved.sampler,
    scheduler: resolved.schedulerName,
    steps,
    cfgScale: p.cfg_scale,
    conds,
    rng,
    seeds: a.seeds,
    x0: cropped.data,
    noise: rng.next(),
    dims,
    denoisingStrength: p.denoising_strength,
    fixSteps: true,
    imageConditioning: await hiresConditioning(
      model,
      cropped.data as Float32Array,
      dims,
      inpaintingMaskWeightOf(p),
    ),
    tokenMergeRatio: tokenMergingRatioOf(p, 'hires'),
  });
  return { ...r, dims };
}
