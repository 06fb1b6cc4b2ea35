/**
 * Write one component of a checkpoint alone, under the names a standalone file of that kind uses:
 * - vae: `first_stage_model.` stripped — what A1111's VAE loader (models/VAE) and ComfyUI's
 *   VAELoader read;
 * - unet: `model.diffusion_model.` stripped, ldm block names kept (`input_blocks.…`) — the layout
 *   ComfyUI's UNETLoader (models/unet) detects and loads; A1111 has no standalone-UNet loader;
 * - text-encoder: Hugging Face `CLIPTextModel` names (`text_model.…`), what ComfyUI's CLIPLoader and
 *   diffusers read. SD2's and SDXL's OpenCLIP towers are converted to those names (the packed
 *   in_proj is split into q/k/v; the projection is written as `text_projection.weight`). For SDXL
 *   the CLIP-L tower is written; `text-encoder-2` writes bigG.
 * Streams tensor by tensor like convert.
 */
import { openModel } from '../formats/open.js';
import { writeSafetensors } from '../formats/safetensors.js';
import { DTYPE_BYTES, numel, type Tensor, type TensorInfo, type TensorSource } from '../formats/tensor.js';
import { UserError } from '../util/errors.js';
import { checkOutputPath } from './output.js';

export type Part = 'unet' | 'vae' | 'text-encoder' | 'text-encoder-2';
export const PARTS: readonly Part[] = ['unet', 'vae', 'text-encoder', 'text-encoder-2'];

/** One output tensor: where its bytes come from (a whole source tensor, a row slice, or a transpose). */
interface Piece {
  info: TensorInfo;
  from: string;
  rows?: [number, number];
  transpose?: boolean;
}

function strip(source: TensorSource, prefix: string): Piece[] {
  return source
    .keys()
    .filter((k) => k.startsWith(prefix))
    .map((k) => {
      const i = source.info(k)!;
      return { info: { name: k.slice(prefix.length), dtype: i.dtype, shape: i.shape }, from: k };
    });
}

const HF_TEXT_PREFIXES = ['cond_stage_model.transformer.', 'conditioner.embedders.0.transformer.'];
const OPEN_CLIP_PREFIXES = ['cond_stage_model.model.', 'conditioner.embedders.0.model.'];

/** open_clip text-tower names → Hugging Face CLIPTextModel names (per-layer part after `resblocks.N.`). */
const OPEN_CLIP_LAYER: Record<string, string> = {
  'ln_1.weight': 'layer_norm1.weight',
  'ln_1.bias': 'layer_norm1.bias',
  'ln_2.weight': 'layer_norm2.weight',
  'ln_2.bias': 'layer_norm2.bias',
  'attn.out_proj.weight': 'self_attn.out_proj.weight',
  'attn.out_proj.bias': 'self_attn.out_proj.bias',
  'mlp.c_fc.weight': 'mlp.fc1.weight',
  'mlp.c_fc.bias': 'mlp.fc1.bias',
  'mlp.c_proj.weight': 'mlp.fc2.weight',
  'mlp.c_proj.bias': 'mlp.fc2.bias',
};

function openClipToHf(source: TensorSource, prefix: string): Piece[] {
  const pieces: Piece[] = [];
  const add = (name: string, from: string, extra: Partial<Piece> = {}) => {
    const i = source.info(from)!;
    let shape = i.shape;
    if (extra.rows) shape = [extra.rows[1] - extra.rows[0], ...i.shape.slice(1)];
    if (extra.transpose) shape = [i.shape[1]!, i.shape[0]!];
    pieces.push({ info: { name, dtype: i.dtype, shape }, from, ...extra });
  };
  for (const k of source.keys()) {
    if (!k.startsWith(prefix)) continue;
    const rest = k.slice(prefix.length);
    const m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(rest);
    if (m) {
      const layer = `text_model.encoder.layers.${m[1]}.`;
      const part = m[2]!;
      if (part === 'attn.in_proj_weight' || part === 'attn.in_proj_bias') {
        const packed = source.info(k)!.shape;
        if (packed.length < 1 || packed[0]! % 3 !== 0) {
          throw new UserError(
            `${source.path}: ${k} has shape ${JSON.stringify(packed)}, not q/k/v packed in 3 equal parts; cannot convert it`,
          );
        }
        const rows = packed[0]! / 3;
        const suffix = part.endsWith('weight') ? 'weight' : 'bias';
        ['q_proj', 'k_proj', 'v_proj'].forEach((p, j) =>
          add(`${layer}self_attn.${p}.${suffix}`, k, { rows: [j * rows, (j + 1) * rows] }),
        );
      } else if (OPEN_CLIP_LAYER[part]) add(layer + OPEN_CLIP_LAYER[part], k);
      else throw new UserError(`${source.path}: unexpected text-encoder tensor ${k}; cannot convert it`);
    } else if (rest === 'token_embedding.weight') add('text_model.embeddings.token_embedding.weight', k);
    else if (rest === 'positional_embedding') add('text_model.embeddings.position_embedding.weight', k);
    else if (rest === 'ln_final.weight') add('text_model.final_layer_norm.weight', k);
    else if (rest === 'ln_final.bias') add('text_model.final_layer_norm.bias', k);
    else if (rest === 'text_projection') {
      if (source.info(k)!.shape.length !== 2) {
        throw new UserError(`${source.path}: ${k} is not a matrix; cannot convert it`);
      }
      add('text_projection.weight', k, { transpose: true });
    }
    // logit_scale and the attention mask buffer have no CLIPTextModel counterpart.
  }
  return pieces;
}

export function extractPlan(source: TensorSource, part: Part): Piece[] {
  const has = (p: string) => source.keys().some((k) => k.startsWith(p));
  let pieces: Piece[] = [];
  if (part === 'vae') pieces = strip(source, 'first_stage_model.');
  else if (part === 'unet') pieces = strip(source, 'model.diffusion_model.');
  else if (part === 'text-encoder') {
    const hf = HF_TEXT_PREFIXES.find(has);
    const oc = OPEN_CLIP_PREFIXES.find(has);
    if (hf) pieces = strip(source, hf);
    else if (oc) pieces = openClipToHf(source, oc);
  } else if (part === 'text-encoder-2') {
    if (has('conditioner.embedders.1.model.'))
      pieces = openClipToHf(source, 'conditioner.embedders.1.model.');
  }
  if (pieces.length === 0) {
    throw new UserError(
      `${source.path} has no ${part} weights to extract (run \`sdstudio inspect\` to see its components)`,
    );
  }
  return pieces;
}

function sliceTensor(t: Tensor, piece: Piece): Tensor {
  if (piece.rows) {
    const rowBytes = (numel(t.shape.slice(1)) || 1) * DTYPE_BYTES[t.dtype];
    const [a, b] = piece.rows;
    return { dtype: t.dtype, shape: piece.info.shape, data: t.data.slice(a * rowBytes, b * rowBytes) };
  }
  if (piece.transpose) {
    const [r, c] = t.shape as [number, number];
    const w = DTYPE_BYTES[t.dtype];
    const out = new Uint8Array(t.data.byteLength);
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < c; j++)
        out.set(t.data.subarray((i * c + j) * w, (i * c + j + 1) * w), (j * r + i) * w);
    }
    return { dtype: t.dtype, shape: piece.info.shape, data: out };
  }
  return t;
}

export async function extractPart(
  inPath: string,
  part: Part,
  outPath: string,
  opts: { onProgress?: (done: number, total: number) => void } = {},
): Promise<{ tensors: number; out: string }> {
  if (!PARTS.includes(part)) throw new UserError(`--part must be one of ${PARTS.join(', ')}, not "${part}"`);
  const out = checkOutputPath(outPath, [inPath]);
  const source = await openModel(inPath);
  try {
    const pieces = extractPlan(source, part);
    async function* tensors(): AsyncGenerator<[string, Tensor]> {
      let done = 0;
      for (const p of pieces) {
        yield [p.info.name, sliceTensor(await source.read(p.from), p)];
        opts.onProgress?.(++done, pieces.length);
      }
    }
    await writeSafetensors(out, tensors(), { format: 'pt' }, { infos: pieces.map((p) => p.info) });
    return { tensors: pieces.length, out };
  } finally {
    await source.close();
  }
}
