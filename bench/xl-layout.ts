/**
 * The tensor lists of single-file SD 2.x and SDXL checkpoints (ldm / sgm key names, as in the files
 * people download), built from bench/ldm-layout.ts's UNet, VAE and Hugging Face CLIP helpers plus
 * the open_clip text tower (SD 2.x's ViT-H, SDXL's bigG). Checked against the golden tiny-sd2 and
 * tiny-sdxl trees in test/bench/xl.test.ts, so the full-size files below have real files' keys.
 */
import {
  clipLayout,
  LayoutBuilder,
  RESIDUAL_GAIN,
  SCHEDULE_BUFFERS,
  SD15_ARCH,
  unetLayout,
  vaeLayout,
  type ClipTextArch,
  type LdmUNetArch,
  type LdmVaeArch,
  type ParamSpec,
} from './ldm-layout.js';

/** open_clip's text transformer (`model.*` keys: packed in_proj, c_fc / c_proj MLP). */
export interface OpenClipTextArch {
  width: number;
  layers: number;
  heads: number;
  mlp: number;
  vocab: number;
  positions: number;
  /** text_projection's output width (the pooled embedding). */
  projDim: number;
}

export interface Sd2Arch {
  unet: LdmUNetArch;
  vae: LdmVaeArch;
  text: OpenClipTextArch;
}

export interface SdxlArch {
  unet: LdmUNetArch;
  vae: LdmVaeArch;
  clipL: ClipTextArch;
  bigG: OpenClipTextArch;
}

/** SD 2.x 768-v (v2-inference-v.yaml): linear projections, 64-wide heads, ViT-H text (all 24 layers stored). */
export const SD2_768_ARCH: Sd2Arch = {
  unet: {
    ...SD15_ARCH.unet,
    contextDim: 1024,
    linearProj: true,
  },
  vae: SD15_ARCH.vae,
  text: { width: 1024, layers: 24, heads: 16, mlp: 4096, vocab: 49408, positions: 77, projDim: 1024 },
};

/** SDXL base 1.0 (sd_xl_base.yaml): 3 levels, transformer depth [0, 2, 10], label_emb 2816 → 1280. */
export const SDXL_BASE_ARCH: SdxlArch = {
  unet: {
    inChannels: 4,
    outChannels: 4,
    modelChannels: 320,
    channelMult: [1, 2, 4],
    numResBlocks: 2,
    attentionLevels: [1, 2],
    numHeads: 0, // num_head_channels 64 (heads do not change the tensors)
    contextDim: 2048,
    transformerDepth: 10,
    depthPerLevel: [0, 2, 10],
    depthMiddle: 10,
    linearProj: true,
    admInChannels: 2816,
  },
  vae: SD15_ARCH.vae,
  clipL: SD15_ARCH.clip,
  bigG: { width: 1280, layers: 32, heads: 20, mlp: 5120, vocab: 49408, positions: 77, projDim: 1280 },
};

const TINY_VAE: LdmVaeArch = {
  ch: 32,
  chMult: [1, 1, 2, 2],
  numResBlocks: 1,
  zChannels: 4,
  embedDim: 4,
  inChannels: 3,
  outChannels: 3,
};

/** The golden tiny-sd2 checkpoint's architecture (tiny-sd2-v.yaml). */
export const TINY_SD2_ARCH: Sd2Arch = {
  unet: {
    inChannels: 4,
    outChannels: 4,
    modelChannels: 32,
    channelMult: [1, 1, 2, 2],
    numResBlocks: 2,
    attentionLevels: [0, 1, 2],
    numHeads: 0,
    contextDim: 64,
    transformerDepth: 1,
    linearProj: true,
  },
  vae: TINY_VAE,
  text: { width: 64, layers: 2, heads: 4, mlp: 256, vocab: 49408, positions: 77, projDim: 64 },
};

/** The golden tiny-sdxl base checkpoint's architecture (tiny-sdxl.yaml). */
export const TINY_SDXL_ARCH: SdxlArch = {
  unet: {
    inChannels: 4,
    outChannels: 4,
    modelChannels: 32,
    channelMult: [1, 1, 2],
    numResBlocks: 2,
    attentionLevels: [1, 2],
    numHeads: 0,
    contextDim: 32,
    transformerDepth: 2,
    depthPerLevel: [0, 1, 2],
    linearProj: true,
    admInChannels: 216,
  },
  vae: TINY_VAE,
  clipL: { width: 16, layers: 2, heads: 2, mlp: 64, vocab: 49408, positions: 77 },
  bigG: { width: 16, layers: 2, heads: 2, mlp: 64, vocab: 49408, positions: 77, projDim: 24 },
};

export function openClipLayout(b: LayoutBuilder, a: OpenClipTextArch, p: string): void {
  b.add(`${p}.token_embedding.weight`, [a.vocab, a.width], { kind: 'normal', mean: 0, std: 0.5 });
  b.add(`${p}.positional_embedding`, [a.positions, a.width], { kind: 'normal', mean: 0, std: 0.2 });
  for (let l = 0; l < a.layers; l++) {
    const q = `${p}.transformer.resblocks.${l}`;
    b.norm(`${q}.ln_1`, a.width);
    b.add(`${q}.attn.in_proj_weight`, [3 * a.width, a.width], { kind: 'weight', fanIn: a.width, gain: 1 });
    b.add(`${q}.attn.in_proj_bias`, [3 * a.width], { kind: 'normal', mean: 0, std: 0.1 });
    b.linear(`${q}.attn.out_proj`, a.width, a.width, { gain: RESIDUAL_GAIN });
    b.norm(`${q}.ln_2`, a.width);
    b.linear(`${q}.mlp.c_fc`, a.mlp, a.width);
    b.linear(`${q}.mlp.c_proj`, a.width, a.mlp, { gain: RESIDUAL_GAIN });
  }
  b.norm(`${p}.ln_final`, a.width);
  // open_clip stores text_projection as [width, embed_dim] (x @ proj).
  b.add(`${p}.text_projection`, [a.width, a.projDim], { kind: 'weight', fanIn: a.width, gain: 1 });
  b.add(`${p}.logit_scale`, [], { kind: 'normal', mean: Math.log(100), std: 0 });
}

const byName = (specs: ParamSpec[]) => specs.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));

/** Every tensor of a single-file SD 2.x checkpoint (ldm names: cond_stage_model.model.*, schedule buffers). */
export function sd2CheckpointLayout(arch: Sd2Arch, timesteps = 1000): ParamSpec[] {
  const b = new LayoutBuilder();
  unetLayout(b, arch.unet, 'model.diffusion_model');
  vaeLayout(b, arch.vae, 'first_stage_model');
  openClipLayout(b, arch.text, 'cond_stage_model.model');
  for (const buffer of SCHEDULE_BUFFERS) b.add(buffer, [timesteps], { kind: 'schedule', buffer });
  return byName(b.specs);
}

/** The name of sgm's DiscreteDenoiser buffer, sqrt((1 − ᾱ) / ᾱ) of the DDPM schedule. */
export const SDXL_SIGMAS = 'denoiser.sigmas';

/** Every tensor of a single-file SDXL base checkpoint (sgm names: conditioner.embedders.{0,1}.*). */
export function sdxlCheckpointLayout(arch: SdxlArch, timesteps = 1000): ParamSpec[] {
  const b = new LayoutBuilder();
  unetLayout(b, arch.unet, 'model.diffusion_model');
  vaeLayout(b, arch.vae, 'first_stage_model');
  clipLayout(b, arch.clipL, 'conditioner.embedders.0.transformer.text_model');
  openClipLayout(b, arch.bigG, 'conditioner.embedders.1.model');
  // sqrt(1/ᾱ − 1) is exactly sgm's sigma = sqrt((1 − ᾱ)/ᾱ).
  b.add(SDXL_SIGMAS, [timesteps], { kind: 'schedule', buffer: 'sqrt_recipm1_alphas_cumprod' });
  return byName(b.specs);
}
