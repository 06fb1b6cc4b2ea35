/**
 * CLIP text-encoder hyper-parameters from weight shapes, for both layouts SD files use:
 * Hugging Face `CLIPTextModel` names (`text_model.*`: SD1, SDXL's CLIP-L) and open_clip names
 * (`model.*` with `transformer.resblocks.N`: SD2's ViT-H, SDXL's bigG). Field names are Hugging
 * Face's `CLIPTextConfig` ones, which the ldm yaml's `clip_text_config` also uses.
 */
import { countIndexed, type ShapeOf } from './detect-unet.js';

export interface TextEncoderConfig {
  layout: 'hf-clip' | 'open-clip';
  vocab_size: number;
  max_position_embeddings: number;
  hidden_size: number;
  num_hidden_layers: number;
  /** Not stored in the weights: every CLIP text tower SD uses has 64-wide heads, so width / 64. */
  num_attention_heads: number;
  intermediate_size: number;
  /** open_clip towers carry a projection (used by SDXL's pooled output). */
  projection_dim?: number;
}

const HEAD_WIDTH = 64;

/** `prefix` ends just before `text_model.` (HF) or before `token_embedding` (open_clip). */
export function detectTextEncoder(
  keys: readonly string[],
  shapeOf: ShapeOf,
  prefix: string,
): TextEncoderConfig | undefined {
  const hfTok = shapeOf(`${prefix}text_model.embeddings.token_embedding.weight`);
  if (hfTok) {
    const pos = shapeOf(`${prefix}text_model.embeddings.position_embedding.weight`);
    const fc1 = shapeOf(`${prefix}text_model.encoder.layers.0.mlp.fc1.weight`);
    const width = hfTok[1]!;
    return {
      layout: 'hf-clip',
      vocab_size: hfTok[0]!,
      max_position_embeddings: pos ? pos[0]! : 0,
      hidden_size: width,
      num_hidden_layers: countIndexed(keys, `${prefix}text_model.encoder.layers.`),
      num_attention_heads: Math.max(1, Math.round(width / HEAD_WIDTH)),
      intermediate_size: fc1 ? fc1[0]! : 0,
    };
  }
  const ocTok = shapeOf(`${prefix}token_embedding.weight`);
  if (ocTok) {
    const pos = shapeOf(`${prefix}positional_embedding`);
    const fc = shapeOf(`${prefix}transformer.resblocks.0.mlp.c_fc.weight`);
    const proj = shapeOf(`${prefix}text_projection`) ?? shapeOf(`${prefix}text_projection.weight`);
    const width = ocTok[1]!;
    const cfg: TextEncoderConfig = {
      layout: 'open-clip',
      vocab_size: ocTok[0]!,
      max_position_embeddings: pos ? pos[0]! : 0,
      hidden_size: width,
      num_hidden_layers: countIndexed(keys, `${prefix}transformer.resblocks.`),
      num_attention_heads: Math.max(1, Math.round(width / HEAD_WIDTH)),
      intermediate_size: fc ? fc[0]! : 0,
    };
    if (proj) cfg.projection_dim = proj[proj.length - 1]!;
    return cfg;
  }
  return undefined;
}
