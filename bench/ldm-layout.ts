/**
 * The tensor list of a single-file SD 1.x checkpoint (ldm key names, as in real SD 1.5 files),
 * derived from the architecture the way ldm's constructors derive it: UNetModel (openaimodel.py),
 * AutoencoderKL Encoder/Decoder (model.py) and the Hugging Face CLIPTextModel names A1111 SD1 files
 * carry. Each entry also says how to initialise it so a random checkpoint keeps activations O(1).
 */
import type { DType } from '../src/formats/tensor.js';
import { SCHEDULE_BUFFER_NAMES } from '../src/tools/convert.js';

export interface LdmUNetArch {
  inChannels: number;
  outChannels: number;
  modelChannels: number;
  channelMult: number[];
  numResBlocks: number;
  /** Levels (index into channelMult) that get a SpatialTransformer after each ResBlock. */
  attentionLevels: number[];
  numHeads: number;
  contextDim: number;
  transformerDepth: number;
  /** SD 2.x / SDXL: Linear proj_in / proj_out (`use_linear_in_transformer`) instead of 1×1 convs. */
  linearProj?: boolean;
  /** SDXL: transformer depth per level (overrides transformerDepth; 0 = no transformer there). */
  depthPerLevel?: number[];
  /** SDXL: the middle block's transformer depth (default: the deepest level's). */
  depthMiddle?: number;
  /** SDXL: `label_emb` input width (pooled text + size embeddings); absent = no label_emb. */
  admInChannels?: number;
}

export interface LdmVaeArch {
  ch: number;
  chMult: number[];
  numResBlocks: number;
  zChannels: number;
  embedDim: number;
  inChannels: number;
  outChannels: number;
}

export interface ClipTextArch {
  width: number;
  layers: number;
  heads: number;
  mlp: number;
  vocab: number;
  positions: number;
}

export interface LdmArch {
  unet: LdmUNetArch;
  vae: LdmVaeArch;
  clip: ClipTextArch;
}

/** SD 1.5 (v1-inference.yaml). */
export const SD15_ARCH: LdmArch = {
  unet: {
    inChannels: 4,
    outChannels: 4,
    modelChannels: 320,
    channelMult: [1, 2, 4, 4],
    numResBlocks: 2,
    attentionLevels: [0, 1, 2],
    numHeads: 8,
    contextDim: 768,
    transformerDepth: 1,
  },
  vae: {
    ch: 128,
    chMult: [1, 2, 4, 4],
    numResBlocks: 2,
    zChannels: 4,
    embedDim: 4,
    inChannels: 3,
    outChannels: 3,
  },
  clip: { width: 768, layers: 12, heads: 12, mlp: 3072, vocab: 49408, positions: 77 },
};

/** The golden tiny-sd checkpoint's architecture (tiny-sd.yaml), used to check this layout. */
export const TINY_SD_ARCH: LdmArch = {
  unet: {
    inChannels: 4,
    outChannels: 4,
    modelChannels: 32,
    channelMult: [1, 1, 1, 2],
    numResBlocks: 2,
    attentionLevels: [0, 1, 2],
    numHeads: 8,
    contextDim: 64,
    transformerDepth: 1,
  },
  vae: {
    ch: 32,
    chMult: [1, 1, 2, 2],
    numResBlocks: 1,
    zChannels: 4,
    embedDim: 4,
    inChannels: 3,
    outChannels: 3,
  },
  clip: { width: 64, layers: 2, heads: 1, mlp: 256, vocab: 49408, positions: 77 },
};

/** How a tensor is filled (standard deviations, not variances). */
export type Init =
  /** conv/linear weight: N(0, gain^2 / fanIn). */
  | { kind: 'weight'; fanIn: number; gain: number }
  /** N(0, std^2) around `mean` (biases, norm weights, embeddings). */
  | { kind: 'normal'; mean: number; std: number }
  /** One of the DDPM schedule buffers ldm's register_schedule stores. */
  | { kind: 'schedule'; buffer: ScheduleBuffer }
  /** CLIP position ids 0..n-1. */
  | { kind: 'arange' };

export type ScheduleBuffer = (typeof SCHEDULE_BUFFER_NAMES)[number];

export const SCHEDULE_BUFFERS: readonly ScheduleBuffer[] = SCHEDULE_BUFFER_NAMES;

export interface ParamSpec {
  name: string;
  dtype: DType;
  shape: number[];
  init: Init;
}

/** Output layers of residual branches are zero-initialised upstream; half-scale keeps them live but tame. */
export const RESIDUAL_GAIN = 0.5;
export const BIAS: Init = { kind: 'normal', mean: 0, std: 0.1 };
export const NORM_WEIGHT: Init = { kind: 'normal', mean: 1, std: 0.1 };

export class LayoutBuilder {
  readonly specs: ParamSpec[] = [];

  add(name: string, shape: number[], init: Init, dtype: DType = 'F32'): void {
    this.specs.push({ name, dtype, shape, init });
  }

  norm(prefix: string, channels: number): void {
    this.add(`${prefix}.weight`, [channels], NORM_WEIGHT);
    this.add(`${prefix}.bias`, [channels], BIAS);
  }

  linear(prefix: string, out: number, inp: number, opts: { bias?: boolean; gain?: number } = {}): void {
    this.add(`${prefix}.weight`, [out, inp], { kind: 'weight', fanIn: inp, gain: opts.gain ?? 1 });
    if (opts.bias ?? true) this.add(`${prefix}.bias`, [out], BIAS);
  }

  conv(prefix: string, out: number, inp: number, k: number, gain = 1): void {
    this.add(`${prefix}.weight`, [out, inp, k, k], { kind: 'weight', fanIn: inp * k * k, gain });
    this.add(`${prefix}.bias`, [out], BIAS);
  }
}

export function unetLayout(b: LayoutBuilder, a: LdmUNetArch, p: string): void {
  const mc = a.modelChannels;
  const embDim = 4 * mc;
  const resBlock = (q: string, inCh: number, outCh: number) => {
    b.norm(`${q}.in_layers.0`, inCh);
    b.conv(`${q}.in_layers.2`, outCh, inCh, 3);
    b.linear(`${q}.emb_layers.1`, outCh, embDim);
    b.norm(`${q}.out_layers.0`, outCh);
    b.conv(`${q}.out_layers.3`, outCh, outCh, 3, RESIDUAL_GAIN);
    if (inCh !== outCh) b.conv(`${q}.skip_connection`, outCh, inCh, 1);
  };
  const depthAt = (level: number) =>
    a.attentionLevels.includes(level) ? (a.depthPerLevel?.[level] ?? a.transformerDepth) : 0;
  const proj = (q: string, out: number, inp: number, gain = 1) =>
    a.linearProj ? b.linear(q, out, inp, { gain }) : b.conv(q, out, inp, 1, gain);
  const spatialTransformer = (q: string, ch: number, depth: number) => {
    // heads × dim_head = ch in every family, so inner dim = ch; SD 1.x has 1×1 conv proj_in / proj_out.
    const inner = ch;
    b.norm(`${q}.norm`, ch);
    proj(`${q}.proj_in`, inner, ch);
    for (let d = 0; d < depth; d++) {
      const t = `${q}.transformer_blocks.${d}`;
      b.linear(`${t}.attn1.to_q`, inner, inner, { bias: false });
      b.linear(`${t}.attn1.to_k`, inner, inner, { bias: false });
      b.linear(`${t}.attn1.to_v`, inner, inner, { bias: false });
      b.linear(`${t}.attn1.to_out.0`, inner, inner, { gain: RESIDUAL_GAIN });
      b.linear(`${t}.ff.net.0.proj`, inner * 8, inner); // GEGLU: 2 x (4 x dim)
      b.linear(`${t}.ff.net.2`, inner, inner * 4, { gain: RESIDUAL_GAIN });
      b.linear(`${t}.attn2.to_q`, inner, inner, { bias: false });
      b.linear(`${t}.attn2.to_k`, inner, a.contextDim, { bias: false });
      b.linear(`${t}.attn2.to_v`, inner, a.contextDim, { bias: false });
      b.linear(`${t}.attn2.to_out.0`, inner, inner, { gain: RESIDUAL_GAIN });
      b.norm(`${t}.norm1`, inner);
      b.norm(`${t}.norm2`, inner);
      b.norm(`${t}.norm3`, inner);
    }
    proj(`${q}.proj_out`, ch, inner, RESIDUAL_GAIN);
  };

  b.linear(`${p}.time_embed.0`, embDim, mc);
  b.linear(`${p}.time_embed.2`, embDim, embDim);
  if (a.admInChannels !== undefined) {
    b.linear(`${p}.label_emb.0.0`, embDim, a.admInChannels);
    b.linear(`${p}.label_emb.0.2`, embDim, embDim);
  }

  const levels = a.channelMult.length;
  b.conv(`${p}.input_blocks.0.0`, mc, a.inChannels, 3);
  const skipChannels = [mc];
  let ch = mc;
  let block = 1;
  for (let level = 0; level < levels; level++) {
    const depth = depthAt(level);
    for (let r = 0; r < a.numResBlocks; r++) {
      const outCh = mc * a.channelMult[level]!;
      resBlock(`${p}.input_blocks.${block}.0`, ch, outCh);
      ch = outCh;
      if (depth > 0) spatialTransformer(`${p}.input_blocks.${block}.1`, ch, depth);
      skipChannels.push(ch);
      block++;
    }
    if (level !== levels - 1) {
      b.conv(`${p}.input_blocks.${block}.0.op`, ch, ch, 3);
      skipChannels.push(ch);
      block++;
    }
  }

  resBlock(`${p}.middle_block.0`, ch, ch);
  spatialTransformer(
    `${p}.middle_block.1`,
    ch,
    a.depthMiddle ?? a.depthPerLevel?.at(-1) ?? a.transformerDepth,
  );
  resBlock(`${p}.middle_block.2`, ch, ch);

  block = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const depth = depthAt(level);
    for (let r = 0; r <= a.numResBlocks; r++) {
      const skip = skipChannels.pop()!;
      const outCh = mc * a.channelMult[level]!;
      resBlock(`${p}.output_blocks.${block}.0`, ch + skip, outCh);
      ch = outCh;
      let sub = 1;
      if (depth > 0) spatialTransformer(`${p}.output_blocks.${block}.${sub++}`, ch, depth);
      if (level > 0 && r === a.numResBlocks) b.conv(`${p}.output_blocks.${block}.${sub}.conv`, ch, ch, 3);
      block++;
    }
  }

  b.norm(`${p}.out.0`, ch);
  b.conv(`${p}.out.2`, a.outChannels, ch, 3, RESIDUAL_GAIN);
}

export function vaeLayout(b: LayoutBuilder, a: LdmVaeArch, p: string): void {
  const resnet = (q: string, inCh: number, outCh: number) => {
    b.norm(`${q}.norm1`, inCh);
    b.conv(`${q}.conv1`, outCh, inCh, 3);
    b.norm(`${q}.norm2`, outCh);
    b.conv(`${q}.conv2`, outCh, outCh, 3);
    if (inCh !== outCh) b.conv(`${q}.nin_shortcut`, outCh, inCh, 1);
  };
  const attnBlock = (q: string, ch: number) => {
    b.norm(`${q}.norm`, ch);
    for (const n of ['q', 'k', 'v', 'proj_out']) b.conv(`${q}.${n}`, ch, ch, 1);
  };
  const mid = (q: string, ch: number) => {
    resnet(`${q}.block_1`, ch, ch);
    attnBlock(`${q}.attn_1`, ch);
    resnet(`${q}.block_2`, ch, ch);
  };
  const levels = a.chMult.length;

  // Encoder
  const e = `${p}.encoder`;
  b.conv(`${e}.conv_in`, a.ch, a.inChannels, 3);
  let ch = a.ch;
  for (let level = 0; level < levels; level++) {
    const outCh = a.ch * a.chMult[level]!;
    for (let r = 0; r < a.numResBlocks; r++) {
      resnet(`${e}.down.${level}.block.${r}`, ch, outCh);
      ch = outCh;
    }
    if (level !== levels - 1) b.conv(`${e}.down.${level}.downsample.conv`, ch, ch, 3);
  }
  mid(`${e}.mid`, ch);
  b.norm(`${e}.norm_out`, ch);
  b.conv(`${e}.conv_out`, 2 * a.zChannels, ch, 3);
  b.conv(`${p}.quant_conv`, 2 * a.embedDim, 2 * a.zChannels, 1);

  // Decoder (runs the deepest level, up.{levels-1}, first)
  b.conv(`${p}.post_quant_conv`, a.zChannels, a.embedDim, 1);
  const d = `${p}.decoder`;
  ch = a.ch * a.chMult[levels - 1]!;
  b.conv(`${d}.conv_in`, ch, a.zChannels, 3);
  mid(`${d}.mid`, ch);
  for (let level = levels - 1; level >= 0; level--) {
    const outCh = a.ch * a.chMult[level]!;
    for (let r = 0; r <= a.numResBlocks; r++) {
      resnet(`${d}.up.${level}.block.${r}`, ch, outCh);
      ch = outCh;
    }
    if (level !== 0) b.conv(`${d}.up.${level}.upsample.conv`, ch, ch, 3);
  }
  b.norm(`${d}.norm_out`, ch);
  b.conv(`${d}.conv_out`, a.outChannels, ch, 3);
}

export function clipLayout(b: LayoutBuilder, a: ClipTextArch, p: string): void {
  b.add(`${p}.embeddings.token_embedding.weight`, [a.vocab, a.width], { kind: 'normal', mean: 0, std: 0.5 });
  b.add(`${p}.embeddings.position_embedding.weight`, [a.positions, a.width], {
    kind: 'normal',
    mean: 0,
    std: 0.2,
  });
  b.add(`${p}.embeddings.position_ids`, [1, a.positions], { kind: 'arange' }, 'I64');
  for (let l = 0; l < a.layers; l++) {
    const q = `${p}.encoder.layers.${l}`;
    b.norm(`${q}.layer_norm1`, a.width);
    b.linear(`${q}.self_attn.q_proj`, a.width, a.width);
    b.linear(`${q}.self_attn.k_proj`, a.width, a.width);
    b.linear(`${q}.self_attn.v_proj`, a.width, a.width);
    b.linear(`${q}.self_attn.out_proj`, a.width, a.width, { gain: RESIDUAL_GAIN });
    b.norm(`${q}.layer_norm2`, a.width);
    b.linear(`${q}.mlp.fc1`, a.mlp, a.width);
    b.linear(`${q}.mlp.fc2`, a.width, a.mlp, { gain: RESIDUAL_GAIN });
  }
  b.norm(`${p}.final_layer_norm`, a.width);
}

/** Every tensor of a single-file SD 1.x checkpoint of this architecture, sorted by name. */
export function ldmCheckpointLayout(arch: LdmArch, timesteps = 1000): ParamSpec[] {
  const b = new LayoutBuilder();
  unetLayout(b, arch.unet, 'model.diffusion_model');
  vaeLayout(b, arch.vae, 'first_stage_model');
  clipLayout(b, arch.clip, 'cond_stage_model.transformer.text_model');
  for (const buffer of SCHEDULE_BUFFERS) b.add(buffer, [timesteps], { kind: 'schedule', buffer });
  return b.specs.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

/**
 * ldm's register_schedule for the "linear" schedule (computed in float64, stored float32):
 * betas = linspace(sqrt(start), sqrt(end), n)^2, v_posterior = 0.
 */
export function ddpmSchedule(
  timesteps = 1000,
  linearStart = 0.00085,
  linearEnd = 0.012,
): Record<ScheduleBuffer, Float64Array> {
  const n = timesteps;
  const s0 = Math.sqrt(linearStart);
  const s1 = Math.sqrt(linearEnd);
  const mk = () => new Float64Array(n);
  const out = Object.fromEntries(SCHEDULE_BUFFERS.map((k) => [k, mk()])) as Record<
    ScheduleBuffer,
    Float64Array
  >;
  let cum = 1;
  for (let i = 0; i < n; i++) {
    const s = n === 1 ? s0 : s0 + ((s1 - s0) * i) / (n - 1);
    const beta = s * s;
    const prev = cum;
    cum *= 1 - beta;
    out.betas[i] = beta;
    out.alphas_cumprod[i] = cum;
    out.alphas_cumprod_prev[i] = prev;
    out.sqrt_alphas_cumprod[i] = Math.sqrt(cum);
    out.sqrt_one_minus_alphas_cumprod[i] = Math.sqrt(1 - cum);
    out.log_one_minus_alphas_cumprod[i] = Math.log(1 - cum);
    out.sqrt_recip_alphas_cumprod[i] = Math.sqrt(1 / cum);
    out.sqrt_recipm1_alphas_cumprod[i] = Math.sqrt(1 / cum - 1);
    const variance = (beta * (1 - prev)) / (1 - cum);
    out.posterior_variance[i] = variance;
    out.posterior_log_variance_clipped[i] = Math.log(Math.max(variance, 1e-20));
    out.posterior_mean_coef1[i] = (beta * Math.sqrt(prev)) / (1 - cum);
    out.posterior_mean_coef2[i] = ((1 - prev) * Math.sqrt(1 - beta)) / (1 - cum);
  }
  return out;
}
