/**
 * The ldm UNetModel (openaimodel.py) as an ONNX graph, laid out like the checkpoint's
 * `model.diffusion_model.*` key tree: input_blocks, middle_block, output_blocks, out.
 */
import type { TensorSource } from '../formats/tensor.js';
import { GraphBuilder, type GraphOptions, type Value } from '../onnx/builder.js';
import {
  add,
  channelAxis,
  concat,
  conv2d,
  groupNorm,
  linear,
  mul,
  reshape,
  resizeNearestLike,
  silu,
  toNchw,
  toNhwc,
  upsampleConv2x,
  type AttentionImpl,
} from '../onnx/ops.js';
import { GROUPS, spatialTransformer, unetResBlock, UNET_GN_EPS, type AttentionContext } from './blocks.js';
import { levelDepth, middleDepth, type UNetConfig } from './config.js';
import { hypernetGraph, type UnetHypernetworks } from './hypernetwork-graph.js';
import { tokenMergeGraphInputs } from './token-merging.js';

export interface UNetBuildOptions {
  /** Checkpoint key prefix of the UNet (default `model.diffusion_model`). */
  prefix?: string;
  attention?: AttentionImpl;
  /** Add every block's output as a graph output named by its key prefix. */
  debug?: boolean;
  /** Add ControlNet residual inputs `control.0 … control.{n-1}` (one per skip) and `control.middle`. */
  controlInputs?: boolean;
  /** Add `context_k` / `context_v` inputs used by cross-attention keys/values. */
  separateKV?: boolean;
  /**
   * Hypernetworks (models/hypernetwork-graph.ts) on the keys/values of every attention layer whose
   * source width they know; adds inputs `hypernet.<i>.multiplier`. `src` must hold their weights
   * (`HypernetWeightSource`).
   */
  hypernetworks?: UnetHypernetworks;
  /** Allow com.microsoft contrib ops (default true; see GraphBuilder.contribOps). */
  contribOps?: boolean;
  /** See GraphOptions.cpuForms (default true). */
  cpuForms?: boolean;
  /** Query chunk size of plain attention (default DEFAULT_ATTENTION_CHUNK; 0 = never chunk). */
  attentionChunk?: number;
  /** Seamless tiling: every padded conv wraps around the edges (A1111 "Tiling"). */
  tiling?: boolean;
  /**
   * Latent sizes that do not halve evenly at every level (image sizes a multiple of 8 but not 64):
   * nearest-resize the upsampled tensor to its skip's size before the concat, as A1111's
   * sd_hijack_unet does. Off by default: the extra Resize only costs where it is needed.
   */
  matchSkipSizes?: boolean;
  /**
   * The ResBlocks of this many top levels run their 3×3 convolutions as Winograd F(2×2, 3×3)
   * (ops.conv3x3Winograd) on the CPU provider. Default 2: the levels whose transformed weights are
   * small (SD 1.5: +≈ 150 MB), and at most every level but the last, whose size may be odd. Not
   * with `matchSkipSizes`, where any level's size may be odd.
   */
  winogradLevels?: number;
  /**
   * 'int8': the opt-in fast UNet — channels-last activations, convolutions and the transformers'
   * linear layers in int8 (weights from runtime/quantize.ts, `src` must provide `#q8` tensors),
   * attention, norms and the small layers in float32. Inputs and outputs stay NCHW float32.
   * 'nhwc': the same channels-last graph entirely in float32 (checks the layout against 'fp32').
   * 'fp16': float16 weights and arithmetic (GPU providers; GraphOptions.float16), float32 I/O.
   */
  precision?: UNetPrecision;
  /**
   * Batch rows that share their latent and timestep (CFG: an image's cond and uncond rows) are
   * computed once until they first meet their own context: inputs `x` and `timesteps` hold the
   * distinct rows, int64 `rows` [batch] names each batch row's one, `context` is per batch row.
   * Everything before the first cross-attention (input conv, first ResBlock, first self-attention:
   * ≈ 3–5 % of a 512² step) then runs at the smaller batch. Exact: each row's arithmetic is the same.
   */
  sharedRows?: boolean;
  /**
   * Token merging (A1111 "Token merging ratio", models/token-merging.ts) in the transformers at full
   * latent resolution: adds int64 inputs `tome_src`, `tome_dst`, `tome_r` (`tokenMergeInputs`).
   */
  tokenMerging?: boolean;
  /**
   * Layers with a low-rank branch fed as graph inputs (GraphOptions.lowRankBranches): how LoRAs
   * reach the UNet without touching its weights (adapters/lora-branches.ts).
   */
  lowRankBranches?: ReadonlySet<string>;
}

export type UNetPrecision = 'fp32' | 'fp16' | 'int8' | 'nhwc';

/** Input/output names of the UNet graph. */
export const UNET_IO = {
  x: 'x',
  t: 'timesteps',
  context: 'context',
  /** SDXL's `vector` conditioning [B, admInChannels] (only when the config has `label_emb`). */
  y: 'y',
  eps: 'eps',
  rows: 'rows',
} as const;

/**
 * ldm timestep_embedding: cat(cos(t·f), sin(t·f)), f_i = exp(-ln(max_period)·i/half), in float32
 * as torch computes it (the frequency table rounded through float32 at each step), from float32
 * `t` in any graph (float16 spacing is 0.5 near t = 1000); the result is in the compute type.
 */
export function timestepEmbedding(g: GraphBuilder, t: Value, dim: number, maxPeriod = 10000): Value {
  const half = Math.floor(dim / 2);
  if (half * 2 !== dim) throw new Error(`timestep embedding of odd width ${dim} is not supported`);
  const freqs = new Float32Array(half);
  const c = Math.fround(-Math.log(maxPeriod));
  for (let i = 0; i < half; i++) freqs[i] = Math.fround(Math.exp(Math.fround(Math.fround(c * i) / half)));
  const args = mul(g, reshape(g, t, [-1, 1], 'timestep_embedding'), g.constF32(freqs, [1, half], 'freqs'));
  const emb = concat(
    g,
    [
      g.op1('Cos', [args], {}, { name: 'timestep_embedding' }),
      g.op1('Sin', [args], {}, { name: 'timestep_embedding' }),
    ],
    1,
    'timestep_embedding',
  );
  return g.toCompute(emb, 'timestep_embedding');
}

/** time_embed: Linear(mc → 4mc), SiLU, Linear(4mc → 4mc). */
export function timeEmbed(g: GraphBuilder, p: string, emb: Value, mc: number): Value {
  const h = silu(
    g,
    linear(g, emb, `${p}.time_embed.0`, mc, mc * 4, true, { int8: false }),
    `${p}.time_embed`,
  );
  return linear(g, h, `${p}.time_embed.2`, mc * 4, mc * 4, true, { int8: false });
}

/** A graph t [N] → `embedding` [N, mc], `time_embed_out` [N, 4mc] (for conformance checks and tools). */
export function buildTimestepEmbeddingGraph(
  src: TensorSource,
  cfg: UNetConfig,
  prefix = 'model.diffusion_model',
  opts: GraphOptions = {},
) {
  const g = new GraphBuilder('UNet time embedding', src, opts);
  const t = g.input('t', 'float32', ['n'], { keepFloat32: true });
  const emb = timestepEmbedding(g, t, cfg.modelChannels);
  g.output(emb, 'embedding', 'float32', ['n', cfg.modelChannels]);
  g.output(timeEmbed(g, prefix, emb, cfg.modelChannels), 'time_embed_out', 'float32', [
    'n',
    cfg.modelChannels * 4,
  ]);
  return g;
}

function headsFor(cfg: UNetConfig, ch: number): number {
  if (cfg.numHeadChannels > 0) return ch / cfg.numHeadChannels;
  return cfg.numHeads;
}

/** Names of the debug outputs the graph gets with `debug: true`, in graph order. */
export function unetBlockNames(cfg: UNetConfig, prefix = 'model.diffusion_model'): string[] {
  const nIn = 1 + cfg.channelMult.length * cfg.numResBlocks + (cfg.channelMult.length - 1);
  const names = [`${prefix}.time_embed`];
  for (let i = 0; i < nIn; i++) names.push(`${prefix}.input_blocks.${i}`);
  names.push(`${prefix}.middle_block`);
  for (let i = 0; i < nIn; i++) names.push(`${prefix}.output_blocks.${i}`);
  names.push(`${prefix}.out`);
  return names;
}

/** Build the UNet graph: x [B, C, H, W], timesteps [B] (float), context [B, T, ctx] → eps. */
export function buildUNetGraph(
  src: TensorSource,
  cfg: UNetConfig,
  opts: UNetBuildOptions = {},
): GraphBuilder {
  const p = opts.prefix ?? 'model.diffusion_model';
  const impl = opts.attention ?? 'mha';
  const precision = opts.precision ?? 'fp32';
  const g = new GraphBuilder('UNet', src, {
    contribOps: opts.contribOps,
    cpuForms: opts.cpuForms,
    circularPadding: opts.tiling,
    attentionChunk: opts.attentionChunk,
    layout: precision === 'fp32' || precision === 'fp16' ? 'nchw' : 'nhwc',
    int8: precision === 'int8',
    float16: precision === 'fp16',
    lowRankBranches: opts.lowRankBranches,
  });
  const nhwc = g.layout === 'nhwc';
  const cAxis = channelAxis(g);
  /** An NCHW graph input in the graph's layout. */
  const inLayout = (v: Value) => (nhwc ? toNhwc(g, v) : v);
  const mc = cfg.modelChannels;
  const embDim = mc * 4;
  const levels = cfg.channelMult.length;
  const winogradLevels = opts.matchSkipSizes ? 0 : Math.min(opts.winogradLevels ?? 2, levels - 1);
  /** Whether a level's ResBlocks use Winograd convolutions (its size is even there). */
  const winograd = (level: number) => level < winogradLevels;
  if (levels < 1 || cfg.numResBlocks < 1)
    throw new Error('UNet config needs at least one level and one ResBlock');

  if (opts.sharedRows && opts.debug) throw new Error('UNet: sharedRows and debug outputs do not combine');
  const rowsDim = opts.sharedRows ? 'distinct' : 'batch';
  const x = g.input(UNET_IO.x, 'float32', [rowsDim, cfg.inChannels, 'height', 'width']);
  const t = g.input(UNET_IO.t, 'float32', [rowsDim], { keepFloat32: true });
  const rows = opts.sharedRows ? g.input(UNET_IO.rows, 'int64', ['batch']) : undefined;
  /** Distinct rows → batch rows (identity without sharedRows). */
  const expand = (v: Value) => (rows ? g.op1('Gather', [v, rows], { axis: 0 }, { name: 'shared_rows' }) : v);
  const context = g.input(UNET_IO.context, 'float32', ['batch', 'tokens', cfg.contextDim]);
  const ctx: AttentionContext = { context, impl };
  if (opts.separateKV) {
    ctx.contextK = g.input('context_k', 'float32', ['batch', 'tokens', cfg.contextDim]);
    ctx.contextV = g.input('context_v', 'float32', ['batch', 'tokens', cfg.contextDim]);
  }
  if (opts.hypernetworks?.stack.length) {
    // Cross-attention's keys/values come from the context: computed once for every layer.
    const hn = hypernetGraph(g, opts.hypernetworks);
    const kv = hn.apply(ctx.contextK ?? context, ctx.contextV ?? context, cfg.contextDim);
    if (kv) [ctx.contextK, ctx.contextV] = kv;
    ctx.selfKV = (v, dim) => hn.apply(v, v, dim);
  }
  const tokenMerge = opts.tokenMerging ? tokenMergeGraphInputs(g) : undefined;
  const debug = (v: Value, name: string) => {
    if (opts.debug) g.output(nhwc && name !== `${p}.time_embed` ? toNchw(g, v, name) : v, name);
  };

  let emb = timeEmbed(g, p, timestepEmbedding(g, t, mc), mc);
  debug(emb, `${p}.time_embed`);
  let embActDistinct: Value;
  let embActBatch: Value;
  if (cfg.admInChannels) {
    // sgm `num_classes: sequential`: emb += label_emb(y), y per batch row (it differs between an
    // image's cond and uncond rows, so the embedding is per batch row from here on).
    const y = g.input(UNET_IO.y, 'float32', ['batch', cfg.admInChannels]);
    const l0 = linear(g, y, `${p}.label_emb.0.0`, cfg.admInChannels, embDim, true, { int8: false });
    const label = linear(g, silu(g, l0, `${p}.label_emb.0`), `${p}.label_emb.0.2`, embDim, embDim, true, {
      int8: false,
    });
    emb = add(g, expand(emb), label, `${p}.label_emb`);
    embActBatch = silu(g, emb, `${p}.emb_act`);
    embActDistinct = embActBatch;
  } else {
    embActDistinct = silu(g, emb, `${p}.emb_act`);
    embActBatch = expand(embActDistinct);
  }
  // While the rows are shared, blocks run on the distinct rows (see UNetBuildOptions.sharedRows).
  // With a `y` input the time embedding is per batch row: rows part at the first ResBlock.
  let sharing = !!rows && !cfg.admInChannels;
  const embAct = () => (sharing ? embActDistinct : embActBatch);

  const skips: { v: Value; ch: number }[] = [];
  const transformer = (bp: string, h: Value, ch: number, depth: number) => {
    const out = spatialTransformer(
      g,
      bp,
      h,
      ch,
      headsFor(cfg, ch),
      depth,
      cfg.contextDim,
      cfg.useLinearInProjection,
      // tomesd merges where the tokens are the whole latent grid (max_downsample 1).
      ds === 1 && tokenMerge ? { ...ctx, tokenMerge } : ctx,
      sharing ? expand : undefined,
    );
    if (sharing) {
      // The rows met their context: from here on every tensor is per batch row.
      sharing = false;
      for (const s of skips) s.v = expand(s.v);
    }
    return out;
  };

  // Input blocks.
  // The first and last convolutions see the latent itself (4 channels): always float32.
  let h = conv2d(g, inLayout(x), `${p}.input_blocks.0.0`, cfg.inChannels, mc, 3, { int8: false });
  if (rows && !sharing) h = expand(h);
  else if (sharing && levelDepth(cfg, 0) === 0) {
    // No cross-attention in the first level: the rows part right away.
    sharing = false;
    h = expand(h);
  }
  let ch = mc;
  let ds = 1;
  let idx = 0;
  debug(h, `${p}.input_blocks.0`);
  skips.push({ v: h, ch });
  for (let level = 0; level < levels; level++) {
    for (let r = 0; r < cfg.numResBlocks; r++) {
      idx++;
      const bp = `${p}.input_blocks.${idx}`;
      const outCh = cfg.channelMult[level]! * mc;
      h = unetResBlock(g, `${bp}.0`, h, embAct(), ch, outCh, embDim, winograd(level));
      ch = outCh;
      if (levelDepth(cfg, level) > 0) h = transformer(`${bp}.1`, h, ch, levelDepth(cfg, level));
      debug(h, bp);
      skips.push({ v: h, ch });
    }
    if (level !== levels - 1) {
      idx++;
      const bp = `${p}.input_blocks.${idx}`;
      h = conv2d(g, h, `${bp}.0.op`, ch, ch, 3, { stride: 2, pad: 1 });
      ds *= 2;
      debug(h, bp);
      skips.push({ v: h, ch });
    }
  }

  // Middle block.
  const mp = `${p}.middle_block`;
  h = unetResBlock(g, `${mp}.0`, h, embAct(), ch, ch, embDim);
  h = transformer(`${mp}.1`, h, ch, middleDepth(cfg));
  h = unetResBlock(g, `${mp}.2`, h, embAct(), ch, ch, embDim);
  if (opts.controlInputs) {
    h = add(
      g,
      h,
      inLayout(g.input('control.middle', 'float32', ['batch', ch, 'mid_height', 'mid_width'])),
      mp,
    );
  }
  debug(h, mp);

  // Output blocks.
  idx = 0;
  let upsampled = false;
  for (let level = levels - 1; level >= 0; level--) {
    for (let r = 0; r <= cfg.numResBlocks; r++) {
      const bp = `${p}.output_blocks.${idx}`;
      const skipIndex = skips.length - 1;
      const skip = skips.pop()!;
      let sv = skip.v;
      if (opts.controlInputs) {
        const c = g.input(`control.${skipIndex}`, 'float32', [
          'batch',
          skip.ch,
          `control_${skipIndex}_h`,
          `control_${skipIndex}_w`,
        ]);
        sv = add(g, sv, inLayout(c), bp);
      }
      if (upsampled && opts.matchSkipSizes) h = resizeNearestLike(g, h, sv, bp);
      upsampled = false;
      const cat = concat(g, [h, sv], cAxis, bp);
      const outCh = cfg.channelMult[level]! * mc;
      h = unetResBlock(g, `${bp}.0`, cat, embAct(), ch + skip.ch, outCh, embDim, winograd(level));
      ch = outCh;
      let sub = 1;
      if (levelDepth(cfg, level) > 0) h = transformer(`${bp}.${sub++}`, h, ch, levelDepth(cfg, level));
      if (level > 0 && r === cfg.numResBlocks) {
        h = upsampleConv2x(g, h, `${bp}.${sub}.conv`, ch, ch);
        ds /= 2;
        upsampled = true;
      }
      debug(h, bp);
      idx++;
    }
  }

  h = silu(g, groupNorm(g, h, `${p}.out.0`, ch, GROUPS, UNET_GN_EPS), `${p}.out`);
  h = conv2d(g, h, `${p}.out.2`, ch, cfg.outChannels, 3, { int8: false });
  if (nhwc) h = toNchw(g, h, `${p}.out`);
  if (opts.debug) g.output(h, `${p}.out`);
  g.output(h, UNET_IO.eps, 'float32', ['batch', cfg.outChannels, 'height', 'width']);
  const missing = g.missingBranches();
  if (missing.length > 0)
    throw new Error(`UNet: no Linear or 1×1 conv layer ${missing.join(', ')} for a low-rank branch`);
  return g;
}
