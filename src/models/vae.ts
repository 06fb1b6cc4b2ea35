/**
 * The ldm AutoencoderKL (model.py Encoder/Decoder + quant convs) as ONNX graphs, laid out like
 * the checkpoint's `first_stage_model.*` key tree. No 0.18215 scale factor inside: the pipeline
 * divides latents by it before decode and multiplies encoder samples by it.
 */
import type { TensorSource } from '../formats/tensor.js';
import { GraphBuilder, type Value } from '../onnx/builder.js';
import { conv2d, groupNorm, mul, silu, splitEqual, add, type AttentionImpl } from '../onnx/ops.js';
import { GROUPS, upsample, vaeAttnBlock, vaeResnetBlock, VAE_GN_EPS } from './blocks.js';
import type { VaeConfig } from './config.js';

export interface VaeBuildOptions {
  prefix?: string;
  attention?: AttentionImpl;
  /** Add every sub-module's output as a graph output named by its key prefix. */
  debug?: boolean;
  /** Allow com.microsoft contrib ops (default true; see GraphBuilder.contribOps). */
  contribOps?: boolean;
  /** See GraphOptions.cpuForms (default true). */
  cpuForms?: boolean;
  /** Seamless tiling: every padded conv wraps around the edges (A1111 "Tiling"). */
  tiling?: boolean;
}

export const VAE_IO = {
  decoder: { z: 'z', image: 'image' },
  encoder: {
    image: 'image',
    noise: 'noise',
    moments: 'moments',
    mean: 'mean',
    logvar: 'logvar',
    std: 'std',
    sample: 'sample',
  },
} as const;

type Debug = (v: Value, name: string) => void;

/** The builder, key prefix, attention form and debug-output hook both VAE graphs start from. */
function vaeBuilder(name: string, src: TensorSource, opts: VaeBuildOptions) {
  const p = opts.prefix ?? 'first_stage_model';
  const g = new GraphBuilder(name, src, {
    contribOps: opts.contribOps,
    cpuForms: opts.cpuForms,
    circularPadding: opts.tiling,
  });
  const debug: Debug = (v, key) => {
    if (opts.debug) g.output(v, `${p}.${key}`);
  };
  return { g, p, impl: opts.attention ?? 'mha', debug };
}

/** ldm Encoder/Decoder `mid`: ResnetBlock, AttnBlock, ResnetBlock at one width. */
function midBlock(
  g: GraphBuilder,
  prefix: string,
  part: string,
  h: Value,
  ch: number,
  impl: AttentionImpl,
  debug: Debug,
): Value {
  h = vaeResnetBlock(g, `${prefix}.mid.block_1`, h, ch, ch);
  debug(h, `${part}.mid.block_1`);
  h = vaeAttnBlock(g, `${prefix}.mid.attn_1`, h, ch, impl);
  debug(h, `${part}.mid.attn_1`);
  h = vaeResnetBlock(g, `${prefix}.mid.block_2`, h, ch, ch);
  debug(h, `${part}.mid.block_2`);
  return h;
}

/** ldm Encoder/Decoder tail: norm_out, SiLU, conv_out. */
function outBlock(
  g: GraphBuilder,
  prefix: string,
  part: string,
  h: Value,
  ch: number,
  outCh: number,
  debug: Debug,
): Value {
  h = groupNorm(g, h, `${prefix}.norm_out`, ch, GROUPS, VAE_GN_EPS);
  debug(h, `${part}.norm_out`);
  h = conv2d(g, silu(g, h, `${prefix}.norm_out`), `${prefix}.conv_out`, ch, outCh, 3);
  debug(h, `${part}.conv_out`);
  return h;
}

/** first_stage_model.decode(z): post_quant_conv then Decoder. z [B, zc, h, w] → image [B, 3, 8h, 8w]. */
export function buildVaeDecoderGraph(
  src: TensorSource,
  cfg: VaeConfig,
  opts: VaeBuildOptions = {},
): GraphBuilder {
  const { g, p, impl, debug } = vaeBuilder('VAE decoder', src, opts);
  const levels = cfg.chMult.length;
  let h: Value = g.input(VAE_IO.decoder.z, 'float32', ['batch', cfg.embedDim, 'height', 'width']);
  if (cfg.hasQuantConv) {
    h = conv2d(g, h, `${p}.post_quant_conv`, cfg.embedDim, cfg.zChannels, 1);
    debug(h, 'post_quant_conv');
  }
  const d = `${p}.decoder`;
  let ch = cfg.ch * cfg.chMult[levels - 1]!;
  h = conv2d(g, h, `${d}.conv_in`, cfg.zChannels, ch, 3);
  debug(h, 'decoder.conv_in');
  h = midBlock(g, d, 'decoder', h, ch, impl, debug);
  for (let level = levels - 1; level >= 0; level--) {
    const outCh = cfg.ch * cfg.chMult[level]!;
    for (let b = 0; b <= cfg.numResBlocks; b++) {
      h = vaeResnetBlock(g, `${d}.up.${level}.block.${b}`, h, ch, outCh);
      ch = outCh;
      debug(h, `decoder.up.${level}.block.${b}`);
    }
    if (level !== 0) {
      h = upsample(g, `${d}.up.${level}.upsample`, h, ch);
      debug(h, `decoder.up.${level}.upsample`);
    }
  }
  h = outBlock(g, d, 'decoder', h, ch, cfg.outChannels, debug);
  g.output(h, VAE_IO.decoder.image, 'float32', ['batch', cfg.outChannels, 'out_height', 'out_width']);
  return g;
}

/**
 * Encoder + quant_conv + DiagonalGaussianDistribution: image [B, 3, H, W] in [-1, 1] and noise
 * [B, zc, H/8, W/8] → moments, mean, logvar (clamped to [-30, 20]), std = exp(logvar/2),
 * sample = mean + std·noise (unscaled).
 */
export function buildVaeEncoderGraph(
  src: TensorSource,
  cfg: VaeConfig,
  opts: VaeBuildOptions = {},
): GraphBuilder {
  const { g, p, impl, debug } = vaeBuilder('VAE encoder', src, opts);
  const levels = cfg.chMult.length;
  const e = `${p}.encoder`;
  const image = g.input(VAE_IO.encoder.image, 'float32', ['batch', cfg.inChannels, 'height', 'width']);
  const noise = g.input(VAE_IO.encoder.noise, 'float32', ['batch', cfg.embedDim, 'lat_height', 'lat_width']);
  let ch = cfg.ch;
  let h = conv2d(g, image, `${e}.conv_in`, cfg.inChannels, ch, 3);
  debug(h, 'encoder.conv_in');
  for (let level = 0; level < levels; level++) {
    const outCh = cfg.ch * cfg.chMult[level]!;
    for (let b = 0; b < cfg.numResBlocks; b++) {
      h = vaeResnetBlock(g, `${e}.down.${level}.block.${b}`, h, ch, outCh);
      ch = outCh;
      debug(h, `encoder.down.${level}.block.${b}`);
    }
    if (level !== levels - 1) {
      // Asymmetric padding (right/bottom by one) then a stride-2 3×3 conv without padding.
      const padded = g.op1(
        'Pad',
        [h, g.constI64([0, 0, 0, 0, 0, 0, 1, 1]), g.constFloat([0], [], 'zero')],
        { mode: 'constant' },
        { name: `${e}.down.${level}.downsample` },
      );
      h = conv2d(g, padded, `${e}.down.${level}.downsample.conv`, ch, ch, 3, { stride: 2, pad: 0 });
      debug(h, `encoder.down.${level}.downsample`);
    }
  }
  h = midBlock(g, e, 'encoder', h, ch, impl, debug);
  h = outBlock(g, e, 'encoder', h, ch, 2 * cfg.zChannels, debug);
  if (cfg.hasQuantConv) {
    h = conv2d(g, h, `${p}.quant_conv`, 2 * cfg.zChannels, 2 * cfg.embedDim, 1);
    debug(h, 'quant_conv');
  }
  const [mean, rawLogvar] = splitEqual(g, h, 1, [cfg.embedDim, cfg.embedDim], 'posterior');
  const logvar = g.op1(
    'Clip',
    [rawLogvar!, g.constFloat([-30], [], 'min'), g.constFloat([20], [], 'max')],
    {},
    { name: 'posterior' },
  );
  const std = g.op1(
    'Exp',
    [mul(g, logvar, g.constFloat([0.5], [], 'half'), 'posterior')],
    {},
    { name: 'posterior' },
  );
  const latDims = ['batch', cfg.embedDim, 'lat_height', 'lat_width'];
  g.output(h, VAE_IO.encoder.moments, 'float32', ['batch', 2 * cfg.embedDim, 'lat_height', 'lat_width']);
  g.output(mean!, VAE_IO.encoder.mean, 'float32', latDims);
  g.output(logvar, VAE_IO.encoder.logvar, 'float32', latDims);
  g.output(std, VAE_IO.encoder.std, 'float32', latDims);
  g.output(
    add(g, mean!, mul(g, std, noise, 'posterior'), 'posterior'),
    VAE_IO.encoder.sample,
    'float32',
    latDims,
  );
  return g;
}
