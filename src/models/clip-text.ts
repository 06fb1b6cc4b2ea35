/**
 * The CLIP text transformer (Hugging Face CLIPTextModel names, as in SD 1.x checkpoints under
 * `cond_stage_model.transformer.text_model`). Two graphs:
 * - token embedding lookup: ids [B, T] → [B, T, W] (so textual-inversion vectors can be spliced in);
 * - encoder: token embeddings [B, T, W] → hidden states. Outputs `hidden_states.i` (HF order:
 *   0 = embeddings, i = after layer i) and `normed.i` = final_layer_norm(hidden_states.i).
 *   `last_hidden_state` = normed.L; A1111 clip skip N = normed.(L+1-N).
 */
import type { TensorSource } from '../formats/tensor.js';
import { GraphBuilder, type GraphOptions, type Value } from '../onnx/builder.js';
import { add, attention, layerNorm, linear, quickGelu, gelu } from '../onnx/ops.js';
import type { ClipTextConfig } from './config.js';

export const CLIP_IO = { ids: 'input_ids', embeds: 'inputs_embeds', last: 'last_hidden_state' } as const;

export function clipHiddenName(i: number): string {
  return `hidden_states.${i}`;
}
export function clipNormedName(i: number): string {
  return `normed.${i}`;
}

/** ids [B, T] int64 → token embeddings [B, T, W]. */
export function buildClipTokenEmbeddingGraph(
  src: TensorSource,
  cfg: ClipTextConfig,
  prefix = 'cond_stage_model.transformer.text_model',
  opts: GraphOptions = {},
): GraphBuilder {
  const g = new GraphBuilder('CLIP token embedding', src, opts);
  const ids = g.input(CLIP_IO.ids, 'int64', ['batch', 'tokens']);
  const table = g.param(`${prefix}.embeddings.token_embedding.weight`, [cfg.vocabSize, cfg.width]);
  const emb = g.op1('Gather', [table, ids], { axis: 0 }, { name: `${prefix}.embeddings.token_embedding` });
  g.output(emb, CLIP_IO.embeds, 'float32', ['batch', 'tokens', cfg.width]);
  return g;
}

/** Token embeddings [B, maxPositions, W] → hidden states (see the module comment). */
export function buildClipTextEncoderGraph(
  src: TensorSource,
  cfg: ClipTextConfig,
  prefix = 'cond_stage_model.transformer.text_model',
  opts: GraphOptions = {},
): GraphBuilder {
  const g = new GraphBuilder('CLIP text encoder', src, opts);
  const T = cfg.maxPositions;
  const W = cfg.width;
  const dims = ['batch', T, W];
  const embeds = g.input(CLIP_IO.embeds, 'float32', dims);
  // Positions are 0..T-1 (the checkpoint's position_ids buffer is ignored: some files carry broken ones).
  let h = add(
    g,
    embeds,
    g.param(`${prefix}.embeddings.position_embedding.weight`, [T, W]),
    `${prefix}.embeddings`,
  );
  const hidden: Value[] = [h];
  // Causal mask: position i attends to j ≤ i.
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = -Infinity;
  const maskV = g.constFloat(mask, [T, T], 'causal_mask');
  const heads = cfg.heads;
  if (W % heads !== 0) throw new Error(`CLIP width ${W} is not divisible by ${heads} heads`);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `${prefix}.encoder.layers.${l}`;
    const n1 = layerNorm(g, h, `${p}.layer_norm1`, W, cfg.layerNormEps);
    const q = linear(g, n1, `${p}.self_attn.q_proj`, W, W);
    const k = linear(g, n1, `${p}.self_attn.k_proj`, W, W);
    const v = linear(g, n1, `${p}.self_attn.v_proj`, W, W);
    const o = attention(g, q, k, v, heads, W / heads, 'plain', `${p}.self_attn`, maskV);
    h = add(g, h, linear(g, o, `${p}.self_attn.out_proj`, W, W), p);
    const n2 = layerNorm(g, h, `${p}.layer_norm2`, W, cfg.layerNormEps);
    let m = linear(g, n2, `${p}.mlp.fc1`, W, cfg.intermediate);
    m = cfg.activation === 'quick_gelu' ? quickGelu(g, m, `${p}.mlp`) : gelu(g, m, `${p}.mlp`);
    h = add(g, h, linear(g, m, `${p}.mlp.fc2`, cfg.intermediate, W), p);
    hidden.push(h);
  }
  hidden.forEach((v, i) => {
    g.output(v, clipHiddenName(i), 'float32', dims);
    g.output(
      layerNorm(g, v, `${prefix}.final_layer_norm`, W, cfg.layerNormEps),
      clipNormedName(i),
      'float32',
      dims,
    );
  });
  return g;
}
