/**
 * Tiny random LoRA files for the tiny SD2 / SDXL checkpoints, with keys derived from the
 * checkpoint's own layers (adapters/lora-keys.ts layer table) in the names trainers write:
 * kohya (`lora_te_`/`lora_te1_`/`lora_te2_`, diffusers-style UNet names for SD 1/2, compvis-style
 * `lora_unet_input_blocks_…` for SDXL), diffusers/PEFT (`unet.…`, `text_encoder(_2).…`), LoHa.
 */
import { existsSync } from 'node:fs';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import {
  diffusersToKohya,
  matchDiffusersModule,
  matchModuleName,
  type LayerInfo,
  type LayerTable,
} from '../../src/adapters/lora-keys.js';
import { goldenPath, readPythonJson } from '../helpers/golden.js';

/** The checkpoint a family's goldens run on (cases.json), the fp32 one when it is there. */
export function familyCheckpoint(set: string): string {
  const cases = readPythonJson<{ cases: { kind: string; checkpoint?: string }[] }>(set, 'cases.json').cases;
  const names = [...new Set(cases.map((c) => c.checkpoint).filter((c): c is string => !!c))]
    // the base model, not the refiner
    .filter((c) => !/refiner/.test(c))
    .sort((a, b) => Number(/fp16/.test(a)) - Number(/fp16/.test(b)));
  const found = names.map((n) => goldenPath(set, n)).find((p) => existsSync(p));
  if (!found) throw new Error(`${set}: none of ${names.join(', ')} is there`);
  return found;
}

/** One LoRA target: a file module name, the layer it must land on, and the delta's shape. */
export interface Target {
  module: string;
  layer: LayerInfo;
  /** Delta rows / columns (columns × kernel for a Conv2d). */
  rows: number;
  cols: number;
  kernel: [number, number];
  te: boolean;
  /** The diffusers/PEFT module path (`unet.down_blocks.1.…`), when one names this layer. */
  peft?: string;
}

const OPENCLIP_TO_HF: [RegExp, string][] = [
  [/_mlp_c_fc$/, '_mlp_fc1'],
  [/_mlp_c_proj$/, '_mlp_fc2'],
  [/_attn_out_proj$/, '_self_attn_out_proj'],
];

/** compvis UNet layer name (after `diffusion_model_`) → diffusers-style kohya name, as SD 1/2 LoRAs use. */
function diffusersUnetName(rest: string): string | undefined {
  const res: Record<string, string> = {
    in_layers_2: 'conv1',
    out_layers_3: 'conv2',
    emb_layers_1: 'time_emb_proj',
    skip_connection: 'conv_shortcut',
  };
  let m: RegExpExecArray | null;
  const block = (kind: string, suffix: string) => (kind === '0' ? (res[suffix] ?? suffix) : suffix);
  if ((m = /^input_blocks_(\d+)_([01])_(.+)$/.exec(rest))) {
    const n = Number(m[1]) - 1;
    if (n < 0) return undefined;
    const kind = m[2] === '1' ? 'attentions' : 'resnets';
    return `down_blocks_${Math.floor(n / 3)}_${kind}_${n % 3}_${block(m[2]!, m[3]!)}`;
  }
  if ((m = /^output_blocks_(\d+)_([01])_(.+)$/.exec(rest))) {
    const n = Number(m[1]);
    const kind = m[2] === '1' ? 'attentions' : 'resnets';
    return `up_blocks_${Math.floor(n / 3)}_${kind}_${n % 3}_${block(m[2]!, m[3]!)}`;
  }
  if ((m = /^output_blocks_(\d+)_[12]_conv$/.exec(rest)) && Number(m[1]) % 3 === 2)
    return `up_blocks_${(Number(m[1]) - 2) / 3}_upsamplers_0_conv`;
  if ((m = /^input_blocks_(\d+)_0_op$/.exec(rest)) && Number(m[1]) % 3 === 0)
    return `down_blocks_${Number(m[1]) / 3 - 1}_downsamplers_0_conv`;
  if ((m = /^middle_block_([012])_(.+)$/.exec(rest))) {
    return m[1] === '1'
      ? `mid_block_attentions_0_${m[2]}`
      : `mid_block_resnets_${Number(m[1]) / 2}_${block('0', m[2]!)}`;
  }
  return undefined;
}

/**
 * Every Linear / Conv2d of the text encoders and the UNet as a kohya module name that A1111's
 * matching sends back to that layer (checked here with matchModuleName), OpenCLIP attention as
 * its q/k/v/out parts.
 */
export function kohyaTargets(table: LayerTable): Target[] {
  const out: Target[] = [];
  const te2Prefix = table.isSdxl ? 'lora_te2_' : 'lora_te_';
  for (const l of table.layers.values()) {
    if (!l.weightKey || !l.shape || (l.type !== 'Linear' && l.type !== 'Conv2d')) continue;
    const kernel: [number, number] = l.kernel ?? [1, 1];
    const base = { layer: l, rows: l.shape[0]!, cols: l.shape[1]!, kernel };
    let m: RegExpExecArray | null;
    if ((m = /^(?:0_)?transformer_(text_model_encoder_layers_.+)$/.exec(l.name))) {
      out.push({ ...base, module: (table.isSdxl ? 'lora_te1_' : 'lora_te_') + m[1], te: true });
    } else if ((m = /^(?:1_)?model_transformer_resblocks_(\d+)_(.+)$/.exec(l.name))) {
      if (m[2] === 'attn') {
        const d = l.shape[1]!;
        for (const p of ['q', 'k', 'v'])
          out.push({
            ...base,
            rows: d,
            module: `${te2Prefix}text_model_encoder_layers_${m[1]}_self_attn_${p}_proj`,
            te: true,
          });
        continue;
      }
      let rest = `_${m[2]}`;
      for (const [re, to] of OPENCLIP_TO_HF) rest = rest.replace(re, to);
      out.push({ ...base, module: `${te2Prefix}text_model_encoder_layers_${m[1]}${rest}`, te: true });
    } else if ((m = /^diffusion_model_(.+)$/.exec(l.name))) {
      // SDXL trainers write compvis names; SD 1/2 ones diffusers-style names (A1111 converts them).
      const diffusers = diffusersUnetName(m[1]!);
      const module = diffusers && !table.isSdxl ? `lora_unet_${diffusers}` : `lora_unet_${m[1]}`;
      out.push({ ...base, module, te: false, peft: diffusers && `unet.${diffusers}` });
    }
  }
  for (const t of out) if (t.te) t.peft = peftTextName(t.module);
  // Only those A1111's matching sends to the intended layer; PEFT names only where ours do.
  return out
    .filter((t) => matchModuleName(t.module, table).layer === t.layer)
    .map((t) => {
      const k = t.peft && diffusersToKohya(`${t.peft}.lora_A.weight`, table.isSdxl);
      const ok = k && matchDiffusersModule(k.module, table).layer === t.layer;
      return ok ? t : { ...t, peft: undefined };
    });
}

/** Deterministic uniform(−a, a) values. */
export function rand(seed: number): (n: number, a: number) => Float32Array {
  let s = seed >>> 0 || 1;
  return (n, a) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      out[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * a;
    }
    return out;
  };
}

const f32 = (data: Float32Array, shape: number[]): Tensor => float32ArrayToTensor(data, shape);

export type LoraLayout = 'kohya' | 'peft' | 'loha';

/** A kohya text-encoder module name as the diffusers/PEFT path (`text_encoder(_2).text_model.…`). */
function peftTextName(module: string): string {
  const m = /^lora_(te1|te2|te)_text_model_encoder_layers_(\d+)_(.+)$/.exec(module)!;
  const tree = m[1] === 'te2' ? 'text_encoder_2' : 'text_encoder';
  const leaf = m[3]!.replace(/^self_attn_/, 'self_attn.').replace(/^mlp_/, 'mlp.');
  return `${tree}.text_model.encoder.layers.${m[2]}.${leaf}`;
}

/** The tensors of a rank-`rank` network on `targets` in the given layout (alpha = rank / 2). */
export function loraTensors(
  targets: readonly Target[],
  layout: LoraLayout,
  seed: number,
  rank = 2,
): [string, Tensor][] {
  const r = rand(seed);
  const out: [string, Tensor][] = [];
  const alpha = f32(Float32Array.of(rank / 2), []);
  for (const t of targets) {
    const [kh, kw] = t.kernel;
    const conv = t.layer.type === 'Conv2d';
    const inner = t.cols * kh * kw;
    if (layout === 'loha') {
      out.push([`${t.module}.hada_w1_a`, f32(r(t.rows * rank, 0.3), [t.rows, rank])]);
      out.push([`${t.module}.hada_w1_b`, f32(r(rank * inner, 0.3), [rank, inner])]);
      out.push([`${t.module}.hada_w2_a`, f32(r(t.rows * rank, 0.3), [t.rows, rank])]);
      out.push([`${t.module}.hada_w2_b`, f32(r(rank * inner, 0.3), [rank, inner])]);
      out.push([`${t.module}.alpha`, alpha]);
      continue;
    }
    const down = f32(r(rank * inner, 0.25), conv ? [rank, t.cols, kh, kw] : [rank, t.cols]);
    const up = f32(r(t.rows * rank, 0.25), conv ? [t.rows, rank, 1, 1] : [t.rows, rank]);
    if (layout === 'kohya') {
      out.push([`${t.module}.lora_down.weight`, down]);
      out.push([`${t.module}.lora_up.weight`, up]);
      out.push([`${t.module}.alpha`, alpha]);
    } else {
      // PEFT drops alpha (scale 1): A1111 and lora-keys treat lora_A/lora_B that way.
      if (!t.peft) continue;
      const name = t.peft;
      out.push([`${name}.lora_A.weight`, down]);
      out.push([`${name}.lora_B.weight`, up]);
    }
  }
  return out;
}

export async function writeLora(
  path: string,
  tensors: [string, Tensor][],
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeSafetensors(path, tensors, metadata);
}
