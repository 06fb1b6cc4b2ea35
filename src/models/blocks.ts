/**
 * Building blocks shared by the networks, each mirroring one ldm module and reading its weights
 * under the module's checkpoint key prefix.
 */
import type { GraphBuilder, Value } from '../onnx/builder.js';
import {
  add,
  attention,
  conv2d,
  fromTokens,
  gelu,
  groupNorm,
  layerNorm,
  linear,
  linearSplit,
  mul,
  perChannel,
  silu,
  toTokens,
  upsampleConv2x,
  type AttentionImpl,
} from '../onnx/ops.js';
import { planTokenMerge, type TokenMergeInputs } from './token-merging.js';

/** Numerics of the ldm modules (all from the upstream code). */
export const UNET_GN_EPS = 1e-5;
export const TRANSFORMER_GN_EPS = 1e-6;
export const VAE_GN_EPS = 1e-6;
export const LN_EPS = 1e-5;
export const GROUPS = 32;

/**
 * openaimodel ResBlock: GN→SiLU→conv, + Linear(SiLU(emb)), GN→SiLU→conv, skip (1×1 conv when
 * the channel count changes). `embAct` is SiLU(emb), shared by every block. `winograd`: the 3×3
 * convs may run as ops.conv3x3Winograd (the caller knows the input's size is even).
 */
export function unetResBlock(
  g: GraphBuilder,
  p: string,
  x: Value,
  embAct: Value,
  inCh: number,
  outCh: number,
  embDim: number,
  winograd = false,
): Value {
  let h = silu(g, groupNorm(g, x, `${p}.in_layers.0`, inCh, GROUPS, UNET_GN_EPS), p);
  h = conv2d(g, h, `${p}.in_layers.2`, inCh, outCh, 3, { winograd });
  // Two rows of input (batch): not worth int8.
  const e = linear(g, embAct, `${p}.emb_layers.1`, embDim, outCh, true, { int8: false });
  h = add(g, h, perChannel(g, e, outCh, p), p);
  h = silu(g, groupNorm(g, h, `${p}.out_layers.0`, outCh, GROUPS, UNET_GN_EPS), p);
  h = conv2d(g, h, `${p}.out_layers.3`, outCh, outCh, 3, { winograd });
  const skip = inCh === outCh ? x : conv2d(g, x, `${p}.skip_connection`, inCh, outCh, 1);
  return add(g, skip, h, p);
}

export interface AttentionContext {
  /** Cross-attention context for keys and values [B, T, contextDim]. */
  context: Value;
  /** Separate key/value contexts (hypernetworks); default `context`. */
  contextK?: Value;
  contextV?: Value;
  impl: AttentionImpl;
  /**
   * Self-attention keys/values from its input `x` of width `dim` (hypernetworks: models/
   * hypernetwork-graph.ts); undefined = x itself.
   */
  selfKV?: (x: Value, dim: number) => [Value, Value] | undefined;
  /** Token merging before self-attention (only at full latent resolution; models/token-merging.ts). */
  tokenMerge?: TokenMergeInputs;
}

/** ldm CrossAttention (attn1: self, context = x; attn2: cross). */
export function crossAttention(
  g: GraphBuilder,
  p: string,
  x: Value,
  kIn: Value,
  vIn: Value,
  dim: number,
  kvDim: number,
  heads: number,
  impl: AttentionImpl,
): Value {
  const headDim = dim / heads;
  // In an int8 graph keys/values of the text context stay float32: 77 rows, and CLIP's hidden
  // states have outlier channels that per-tensor quantization would flatten.
  const selfAttention = kIn === x && vIn === x;
  const q = linear(g, x, `${p}.to_q`, dim, dim, false);
  const k = linear(g, kIn, `${p}.to_k`, kvDim, dim, false, { int8: selfAttention });
  const v = linear(g, vIn, `${p}.to_v`, kvDim, dim, false, { int8: selfAttention });
  const o = attention(g, q, k, v, heads, headDim, impl, p);
  return linear(g, o, `${p}.to_out.0`, dim, dim);
}

/** GEGLU feed-forward: proj → [h, gate], h·GELU(gate), Linear. */
function feedForward(g: GraphBuilder, p: string, x: Value, dim: number): Value {
  const inner = dim * 4;
  const [h, gate] = linearSplit(g, x, `${p}.net.0.proj`, dim, [inner, inner], `${p}.net.0`);
  return linear(g, mul(g, h!, gelu(g, gate!, `${p}.net.0`), `${p}.net.0`), `${p}.net.2`, inner, dim);
}

/** ldm BasicTransformerBlock. `expand` (see spatialTransformer) is applied before cross-attention. */
function transformerBlock(
  g: GraphBuilder,
  p: string,
  x: Value,
  dim: number,
  heads: number,
  contextDim: number,
  ctx: AttentionContext,
  expand?: (v: Value) => Value,
): Value {
  let n = layerNorm(g, x, `${p}.norm1`, dim, LN_EPS);
  if (ctx.tokenMerge) {
    const m = planTokenMerge(g, x, ctx.tokenMerge, `${p}.tome`);
    const merged = m.merge(n);
    const [k, v] = ctx.selfKV?.(merged, dim) ?? [merged, merged];
    x = add(g, m.unmerge(crossAttention(g, `${p}.attn1`, merged, k, v, dim, dim, heads, ctx.impl)), x, p);
  } else {
    const [k, v] = ctx.selfKV?.(n, dim) ?? [n, n];
    x = add(g, crossAttention(g, `${p}.attn1`, n, k, v, dim, dim, heads, ctx.impl), x, p);
  }
  if (expand) x = expand(x);
  n = layerNorm(g, x, `${p}.norm2`, dim, LN_EPS);
  const kc = ctx.contextK ?? ctx.context;
  const vc = ctx.contextV ?? ctx.context;
  x = add(g, crossAttention(g, `${p}.attn2`, n, kc, vc, dim, contextDim, heads, ctx.impl), x, p);
  n = layerNorm(g, x, `${p}.norm3`, dim, LN_EPS);
  return add(g, feedForward(g, `${p}.ff`, n, dim), x, p);
}

/**
 * ldm SpatialTransformer: GN, proj_in (1×1 conv or Linear), transformer blocks, proj_out, residual.
 * `expand` maps rows shared by several batch entries to the full batch (unet.ts `sharedRows`): it
 * is applied where the rows first meet their own context, the first block's cross-attention, and to
 * the residual input.
 */
export function spatialTransformer(
  g: GraphBuilder,
  p: string,
  x: Value,
  channels: number,
  heads: number,
  depth: number,
  contextDim: number,
  linearProj: boolean,
  ctx: AttentionContext,
  expand?: (v: Value) => Value,
): Value {
  const n = groupNorm(g, x, `${p}.norm`, channels, GROUPS, TRANSFORMER_GN_EPS);
  let t: Value;
  if (linearProj) t = linear(g, toTokens(g, n, channels, p), `${p}.proj_in`, channels, channels);
  else t = toTokens(g, conv2d(g, n, `${p}.proj_in`, channels, channels, 1), channels, p);
  for (let i = 0; i < depth; i++) {
    const e = i === 0 ? expand : undefined;
    t = transformerBlock(g, `${p}.transformer_blocks.${i}`, t, channels, heads, contextDim, ctx, e);
  }
  const residual = expand ? expand(x) : x;
  let out: Value;
  if (linearProj) out = fromTokens(g, linear(g, t, `${p}.proj_out`, channels, channels), residual, p);
  else out = conv2d(g, fromTokens(g, t, residual, p), `${p}.proj_out`, channels, channels, 1);
  return add(g, out, residual, p);
}

/** Nearest ×2 then 3×3 conv (UNet `conv`, VAE `conv`), computed as ops.upsampleConv2x does. */
export function upsample(g: GraphBuilder, p: string, x: Value, ch: number): Value {
  return upsampleConv2x(g, x, `${p}.conv`, ch, ch);
}

/** model.py ResnetBlock (VAE, no time embedding). */
export function vaeResnetBlock(g: GraphBuilder, p: string, x: Value, inCh: number, outCh: number): Value {
  let h = silu(g, groupNorm(g, x, `${p}.norm1`, inCh, GROUPS, VAE_GN_EPS), p);
  h = conv2d(g, h, `${p}.conv1`, inCh, outCh, 3);
  h = silu(g, groupNorm(g, h, `${p}.norm2`, outCh, GROUPS, VAE_GN_EPS), p);
  h = conv2d(g, h, `${p}.conv2`, outCh, outCh, 3);
  const skip = inCh === outCh ? x : conv2d(g, x, `${p}.nin_shortcut`, inCh, outCh, 1);
  return add(g, skip, h, p);
}

/** model.py AttnBlock: single-head self-attention over H·W positions with 1×1 conv q/k/v/proj_out. */
export function vaeAttnBlock(g: GraphBuilder, p: string, x: Value, ch: number, impl: AttentionImpl): Value {
  const n = groupNorm(g, x, `${p}.norm`, ch, GROUPS, VAE_GN_EPS);
  const q = toTokens(g, conv2d(g, n, `${p}.q`, ch, ch, 1), ch, `${p}.q`);
  const k = toTokens(g, conv2d(g, n, `${p}.k`, ch, ch, 1), ch, `${p}.k`);
  const v = toTokens(g, conv2d(g, n, `${p}.v`, ch, ch, 1), ch, `${p}.v`);
  const o = fromTokens(g, attention(g, q, k, v, 1, ch, impl, p), x, p);
  return add(g, x, conv2d(g, o, `${p}.proj_out`, ch, ch, 1), p);
}
