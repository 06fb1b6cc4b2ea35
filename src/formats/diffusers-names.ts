/**
 * Name maps between diffusers and the original single-file (ldm) layout, for the UNet, the
 * VAE and the CLIP text encoders. The facts are those of diffusers'
 * `convert_diffusers_to_original_stable_diffusion.py` / `..._sdxl.py`, generalised from SD's fixed
 * counts to the layout found in the file (levels, res blocks per level, which levels attend).
 * Each table is a list of [ldm, diffusers] prefix pairs usable in both directions.
 */

export interface UnetLayout {
  levels: number;
  layersPerBlock: number;
  /** Per down level: has attention blocks. */
  downAttn: boolean[];
  /** Per up level (diffusers order, deepest first): has attention blocks. */
  upAttn: boolean[];
}

export interface VaeLayout {
  levels: number;
}

type Pair = [ldm: string, diffusers: string, resnet?: boolean];

const UNET_SINGLE: Pair[] = [
  ['time_embed.0.', 'time_embedding.linear_1.'],
  ['time_embed.2.', 'time_embedding.linear_2.'],
  ['label_emb.0.0.', 'add_embedding.linear_1.'],
  ['label_emb.0.2.', 'add_embedding.linear_2.'],
  ['input_blocks.0.0.', 'conv_in.'],
  ['out.0.', 'conv_norm_out.'],
  ['out.2.', 'conv_out.'],
];

const UNET_RESNET_PARTS: [string, string][] = [
  ['in_layers.0.', 'norm1.'],
  ['in_layers.2.', 'conv1.'],
  ['out_layers.0.', 'norm2.'],
  ['out_layers.3.', 'conv2.'],
  ['emb_layers.1.', 'time_emb_proj.'],
  ['skip_connection.', 'conv_shortcut.'],
];

export function unetPairs(l: UnetLayout): Pair[] {
  const pairs: Pair[] = [...UNET_SINGLE];
  const L = l.layersPerBlock;
  for (let i = 0; i < l.levels; i++) {
    for (let j = 0; j < L; j++) {
      const sd = (L + 1) * i + j + 1;
      pairs.push([`input_blocks.${sd}.0.`, `down_blocks.${i}.resnets.${j}.`, true]);
      if (l.downAttn[i]) pairs.push([`input_blocks.${sd}.1.`, `down_blocks.${i}.attentions.${j}.`]);
    }
    for (let j = 0; j < L + 1; j++) {
      const sd = (L + 1) * i + j;
      pairs.push([`output_blocks.${sd}.0.`, `up_blocks.${i}.resnets.${j}.`, true]);
      if (l.upAttn[i]) pairs.push([`output_blocks.${sd}.1.`, `up_blocks.${i}.attentions.${j}.`]);
    }
    if (i < l.levels - 1) {
      pairs.push([`input_blocks.${(L + 1) * (i + 1)}.0.op.`, `down_blocks.${i}.downsamplers.0.conv.`]);
      pairs.push([
        `output_blocks.${(L + 1) * i + L}.${l.upAttn[i] ? 2 : 1}.`,
        `up_blocks.${i}.upsamplers.0.`,
      ]);
    }
  }
  pairs.push(['middle_block.1.', 'mid_block.attentions.0.']);
  for (let j = 0; j < 2; j++) pairs.push([`middle_block.${2 * j}.`, `mid_block.resnets.${j}.`, true]);
  return pairs;
}

const VAE_ATTN_PARTS: [string, string[]][] = [
  ['norm.', ['group_norm.']],
  ['q.', ['to_q.', 'query.']],
  ['k.', ['to_k.', 'key.']],
  ['v.', ['to_v.', 'value.']],
  ['proj_out.', ['to_out.0.', 'proj_attn.']],
];

export function vaePairs(l: VaeLayout): Pair[] {
  const pairs: Pair[] = [];
  for (const part of ['encoder', 'decoder']) {
    pairs.push([`${part}.norm_out.`, `${part}.conv_norm_out.`]);
    pairs.push([`${part}.mid.attn_1.`, `${part}.mid_block.attentions.0.`]);
    for (let j = 0; j < 2; j++)
      pairs.push([`${part}.mid.block_${j + 1}.`, `${part}.mid_block.resnets.${j}.`, true]);
  }
  for (let i = 0; i < l.levels; i++) {
    pairs.push([`encoder.down.${i}.block.`, `encoder.down_blocks.${i}.resnets.`, true]);
    pairs.push([`decoder.up.${l.levels - 1 - i}.block.`, `decoder.up_blocks.${i}.resnets.`, true]);
    pairs.push([`encoder.down.${i}.downsample.`, `encoder.down_blocks.${i}.downsamplers.0.`]);
    pairs.push([`decoder.up.${l.levels - 1 - i}.upsample.`, `decoder.up_blocks.${i}.upsamplers.0.`]);
  }
  return pairs;
}

function longestMatch(name: string, pairs: Pair[], side: 0 | 1): Pair | undefined {
  let best: Pair | undefined;
  for (const p of pairs)
    if (name.startsWith(p[side]) && (!best || p[side].length > best[side].length)) best = p;
  return best;
}

/** A diffusers UNet key → ldm key (without the `model.diffusion_model.` prefix), or undefined. */
export function unetToLdm(name: string, l: UnetLayout): string | undefined {
  const p = longestMatch(name, unetPairs(l), 1);
  if (!p) return undefined;
  let rest = name.slice(p[1].length);
  if (p[2])
    for (const [sd, hf] of UNET_RESNET_PARTS) if (rest.startsWith(hf)) rest = sd + rest.slice(hf.length);
  return p[0] + rest;
}

/** An ldm UNet key (without prefix) → diffusers key, or undefined. */
export function ldmToUnet(name: string, l: UnetLayout): string | undefined {
  const p = longestMatch(name, unetPairs(l), 0);
  if (!p) return undefined;
  let rest = name.slice(p[0].length);
  if (p[2])
    for (const [sd, hf] of UNET_RESNET_PARTS) if (rest.startsWith(sd)) rest = hf + rest.slice(sd.length);
  return p[1] + rest;
}

/** A diffusers VAE key → ldm key (no `first_stage_model.` prefix). Keys outside the tables keep their name. */
export function vaeToLdm(name: string, l: VaeLayout): string {
  const p = longestMatch(name, vaePairs(l), 1);
  let out = name;
  if (p) {
    let rest = name.slice(p[1].length);
    if (p[0].endsWith('attn_1.')) {
      for (const [sd, hfs] of VAE_ATTN_PARTS) {
        const hf = hfs.find((h) => rest.startsWith(h));
        if (hf) rest = sd + rest.slice(hf.length);
      }
    }
    out = p[0] + rest;
  }
  return out.replace('.conv_shortcut.', '.nin_shortcut.');
}

/** An ldm VAE key (no prefix) → diffusers key (current diffusers attention names). */
export function ldmToVae(name: string, l: VaeLayout): string {
  const p = longestMatch(name, vaePairs(l), 0);
  let out = name;
  if (p) {
    let rest = name.slice(p[0].length);
    if (p[0].endsWith('attn_1.')) {
      for (const [sd, hfs] of VAE_ATTN_PARTS) if (rest.startsWith(sd)) rest = hfs[0] + rest.slice(sd.length);
    }
    out = p[1] + rest;
  }
  return out.replace('.nin_shortcut.', '.conv_shortcut.');
}

/** True for VAE attention projection weights, which diffusers stores as Linear and ldm as 1x1 conv. */
export function isVaeAttnProjection(ldmName: string): boolean {
  return /\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(ldmName);
}

/** Infer the UNet layout from diffusers key names. */
export function unetLayoutFromKeys(keys: string[]): UnetLayout {
  let levels = 0;
  let layersPerBlock = 0;
  const downAttn: boolean[] = [];
  const upAttn: boolean[] = [];
  for (const k of keys) {
    let m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\./.exec(k);
    if (m) {
      const i = Number(m[1]);
      levels = Math.max(levels, i + 1);
      if (m[2] === 'resnets') layersPerBlock = Math.max(layersPerBlock, Number(m[3]) + 1);
      else downAttn[i] = true;
    }
    m = /^up_blocks\.(\d+)\.attentions\./.exec(k);
    if (m) upAttn[Number(m[1])] = true;
  }
  return {
    levels,
    layersPerBlock,
    downAttn: Array.from({ length: levels }, (_, i) => downAttn[i] ?? false),
    upAttn: Array.from({ length: levels }, (_, i) => upAttn[i] ?? false),
  };
}

/** Infer the UNet layout from ldm key names (without prefix): levels from the downsamplers (`.0.op.`). */
export function unetLayoutFromLdmKeys(keys: string[]): UnetLayout {
  let outputs = 0;
  const downsamplers = new Set<string>();
  for (const k of keys) {
    const m = /^output_blocks\.(\d+)\./.exec(k);
    if (m) outputs = Math.max(outputs, Number(m[1]) + 1);
    const d = /^input_blocks\.(\d+)\.0\.op\./.exec(k);
    if (d) downsamplers.add(d[1]!);
  }
  const levels = downsamplers.size + 1;
  const L = outputs / levels - 1;
  if (!Number.isInteger(L) || L < 1) {
    throw new Error(`cannot infer the UNet layout from ${outputs} output blocks and ${levels} levels`);
  }
  const has = (prefix: string) => keys.some((k) => k.startsWith(prefix));
  return {
    levels,
    layersPerBlock: L,
    downAttn: Array.from({ length: levels }, (_, i) => has(`input_blocks.${(L + 1) * i + 1}.1.`)),
    upAttn: Array.from({ length: levels }, (_, i) => has(`output_blocks.${(L + 1) * i}.1.`)),
  };
}

export function vaeLayoutFromKeys(keys: string[], ldm: boolean): VaeLayout {
  let levels = 0;
  const re = ldm ? /^encoder\.down\.(\d+)\./ : /^encoder\.down_blocks\.(\d+)\./;
  for (const k of keys) {
    const m = re.exec(k);
    if (m) levels = Math.max(levels, Number(m[1]) + 1);
  }
  return { levels };
}

/** HF CLIPTextModel → open_clip text tower names (SD2 `cond_stage_model.model.`, SDXL bigG). */
export type OpenClipTarget =
  | { kind: 'rename'; name: string }
  | { kind: 'in_proj'; name: string; part: 0 | 1 | 2 }
  | { kind: 'transpose'; name: string }
  | { kind: 'drop' };

export function hfClipToOpenClip(name: string): OpenClipTarget {
  if (name === 'text_model.embeddings.position_ids') return { kind: 'drop' };
  if (name === 'text_model.embeddings.token_embedding.weight')
    return { kind: 'rename', name: 'token_embedding.weight' };
  if (name === 'text_model.embeddings.position_embedding.weight')
    return { kind: 'rename', name: 'positional_embedding' };
  if (name === 'text_projection.weight') return { kind: 'transpose', name: 'text_projection' };
  let m = /^text_model\.final_layer_norm\.(weight|bias)$/.exec(name);
  if (m) return { kind: 'rename', name: `ln_final.${m[1]}` };
  m = /^text_model\.encoder\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) return { kind: 'rename', name };
  const pre = `transformer.resblocks.${m[1]}.`;
  const rest = m[2]!;
  const qkv = /^self_attn\.(q|k|v)_proj\.(weight|bias)$/.exec(rest);
  if (qkv)
    return {
      kind: 'in_proj',
      name: `${pre}attn.in_proj_${qkv[2]}`,
      part: ({ q: 0, k: 1, v: 2 } as const)[qkv[1] as 'q'],
    };
  const map: [string, string][] = [
    ['self_attn.out_proj.', 'attn.out_proj.'],
    ['layer_norm1.', 'ln_1.'],
    ['layer_norm2.', 'ln_2.'],
    ['mlp.fc1.', 'mlp.c_fc.'],
    ['mlp.fc2.', 'mlp.c_proj.'],
  ];
  for (const [hf, oc] of map)
    if (rest.startsWith(hf)) return { kind: 'rename', name: pre + oc + rest.slice(hf.length) };
  return { kind: 'rename', name: pre + rest };
}
