/**
 * The open_clip text tower (SD 2.x's ViT-H under `cond_stage_model.model`, SDXL's bigG under
 * `conditioner.embedders.N.model`), with open_clip's key names: token_embedding,
 * positional_embedding, transformer.resblocks.N.{ln_1, attn.in_proj_weight/in_proj_bias (q, k, v
 * packed in that order), attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_final, text_projection.
 *
 * The same two graphs and output names as clip-text.ts, so a model treats both layouts alike:
 * ids → token embeddings, and embeddings → `hidden_states.i` (0 = embeddings, i = after resblock i)
 * and `normed.i` = ln_final(hidden_states.i). What a family conditions on is picked from those:
 * SD2 "penultimate" = normed.(L−1); SDXL bigG "penultimate" = hidden_states.(L−1) (no ln_final) and
 * its pooled output = normed.L at the EOS position times text_projection (runtime, `pooledOutput`).
 */
import type { TensorSource } from '../formats/tensor.js';
import { GraphBuilder, type GraphOptions, type Value } from '../onnx/builder.js';
import { add, attention, gelu, layerNorm, quickGelu, splitEqual, transpose } from '../onnx/ops.js';
import { CLIP_IO, clipHiddenName, clipNormedName } from './clip-text.js';
import type { ClipTextConfig } from './config.js';

/** x·Wᵀ + b for a weight and bias stored under arbitrary names ([out, in], as torch Linear). */
function linearKeys(
  g: GraphBuilder,
  x: Value,
  wKey: string,
  bKey: string,
  inF: number,
  outF: number,
  name: string,
): Value {
  const w = transpose(g, g.param(wKey, [outF, inF]), [1, 0], name);
  return add(g, g.op1('MatMul', [x, w], {}, { name }), g.param(bKey, [outF]), name);
}

/** ids [B, T] int64 → token embeddings [B, T, W]. `prefix` ends before `token_embedding`. */
export function buildOpenClipTokenEmbeddingGraph(
  src: TensorSource,
  cfg: ClipTextConfig,
  prefix: string,
  opts: GraphOptions = {},
): GraphBuilder {
  const g = new GraphBuilder('open_clip token embedding', src, opts);
  const ids = g.input(CLIP_IO.ids, 'int64', ['batch', 'tokens']);
  const table = g.param(`${prefix}.token_embedding.weight`, [cfg.vocabSize, cfg.width]);
  const emb = g.op1('Gather', [table, ids], { axis: 0 }, { name: `${prefix}.token_embedding` });
  g.output(emb, CLIP_IO.embeds, 'float32', ['batch', 'tokens', cfg.width]);
  return g;
}

/** Token embeddings [B, T, W] → hidden states and their ln_final (see the module comment). */
export function buildOpenClipTextEncoderGraph(
  src: TensorSource,
  cfg: ClipTextConfig,
  prefix: string,
  opts: GraphOptions = {},
): GraphBuilder {
  const g = new GraphBuilder('open_clip text encoder', src, opts);
  const T = cfg.maxPositions;
  const W = cfg.width;
  const dims = ['batch', T, W];
  const embeds = g.input(CLIP_IO.embeds, 'float32', dims);
  let h = add(g, embeds, g.param(`${prefix}.positional_embedding`, [T, W]), `${prefix}.positional_embedding`);
  const hidden: Value[] = [h];
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = -Infinity;
  const maskV = g.constFloat(mask, [T, T], 'causal_mask');
  const heads = cfg.heads;
  if (W % heads !== 0) throw new Error(`open_clip width ${W} is not divisible by ${heads} heads`);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `${prefix}.transformer.resblocks.${l}`;
    const n1 = layerNorm(g, h, `${p}.ln_1`, W, cfg.layerNormEps);
    const qkv = linearKeys(
      g,
      n1,
      `${p}.attn.in_proj_weight`,
      `${p}.attn.in_proj_bias`,
      W,
      3 * W,
      `${p}.attn`,
    );
    const [q, k, v] = splitEqual(g, qkv, -1, [W, W, W], `${p}.attn`);
    const o = attention(g, q!, k!, v!, heads, W / heads, 'plain', `${p}.attn`, maskV);
    h = add(
      g,
      h,
      linearKeys(g, o, `${p}.attn.out_proj.weight`, `${p}.attn.out_proj.bias`, W, W, `${p}.attn.out_proj`),
      p,
    );
    const n2 = layerNorm(g, h, `${p}.ln_2`, W, cfg.layerNormEps);
    let m = linearKeys(g, n2, `${p}.mlp.c_fc.weight`, `${p}.mlp.c_fc.bias`, W, cfg.intermediate, `${p}.mlp`);
    m = cfg.activation === 'quick_gelu' ? quickGelu(g, m, `${p}.mlp`) : gelu(g, m, `${p}.mlp`);
    h = add(
      g,
      h,
      linearKeys(g, m, `${p}.mlp.c_proj.weight`, `${p}.mlp.c_proj.bias`, cfg.intermediate, W, `${p}.mlp`),
      p,
    );
    hidden.push(h);
  }
  hidden.forEach((v, i) => {
    g.output(v, clipHiddenName(i), 'float32', dims);
    g.output(layerNorm(g, v, `${prefix}.ln_final`, W, cfg.layerNormEps), clipNormedName(i), 'float32', dims);
  });
  return g;
}
