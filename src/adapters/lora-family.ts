/**
 * Which model family a LoRA file was trained for: from kohya's metadata when it says so
 * (`ss_base_model_version`, `ss_v2`, `ss_sd_model_name`), else from its keys and widths (a
 * second text encoder means SDXL; the cross-attention / text-encoder input width tells 768 =
 * SD 1, 1024 = SD 2, 2048 = SDXL). A1111 only reads the metadata (`detect_version`), so files
 * without it are "Unknown" there; `list loras` and the "for another model family" warning use this.
 */
import type { TensorInfo } from '../formats/tensor.js';
import { loraArchitecture } from '../models/detect-adapters.js';

export type LoraFamily = 'sd1' | 'sd2' | 'sdxl' | 'unknown';

export interface FamilyGuess {
  family: LoraFamily;
  /** What decided it. */
  from: 'metadata' | 'keys' | 'none';
}

function fromMetadata(meta: Record<string, string>): LoraFamily | undefined {
  const v = String(meta.ss_base_model_version ?? '').toLowerCase();
  if (v.startsWith('sdxl')) return 'sdxl';
  if (/^sd_?v?2/.test(v)) return 'sd2';
  if (/^sd_?v?1/.test(v)) return 'sd1';
  if (meta.ss_v2 === 'True') return 'sd2';
  const name = String(meta.ss_sd_model_name ?? '').toLowerCase();
  if (/(^|[^a-z])(sd_?xl|xl)([^a-z]|$)|sdxl/.test(name)) return 'sdxl';
  if (/(^|[^a-z0-9])(v2-?[01]?|sd2|2[-._][01])([^0-9]|$)|768-v/.test(name)) return 'sd2';
  if (/(^|[^a-z0-9])(v1-[45]|sd_?v?1[-._]?[45]|sd15)([^0-9]|$)/.test(name)) return 'sd1';
  if (meta.ss_v2 === 'False' && meta.ss_network_module) return 'sd1';
  return undefined;
}

/** Input width of a LoRA down / lora_A tensor. */
function inWidth(t: TensorInfo): number | undefined {
  return t.shape.length >= 2 ? t.shape[1] : undefined;
}

function fromKeys(tensors: readonly TensorInfo[]): LoraFamily | undefined {
  const shapes = new Map(tensors.map((t) => [t.name, t.shape]));
  // inspect's rule (second text encoder, cross-attention width), without the metadata part.
  const arch = loraArchitecture([...shapes.keys()], (k) => shapes.get(k), {});
  if (arch) return arch === 'sdxl-refiner' ? 'sdxl' : arch;
  // The text encoder's width: 768 CLIP-L (SD 1), 1024 OpenCLIP ViT-H (SD 2).
  for (const t of tensors)
    if (/^(lora_te_|text_encoder\.).*q_proj.*(lora_down|lora_A)/.test(t.name)) {
      if (inWidth(t) === 768) return 'sd1';
      if (inWidth(t) === 1024) return 'sd2';
    }
  return undefined;
}

export function loraFamily(meta: Record<string, string>, tensors: readonly TensorInfo[]): FamilyGuess {
  const m = fromMetadata(meta);
  if (m) return { family: m, from: 'metadata' };
  const k = fromKeys(tensors);
  if (k) return { family: k, from: 'keys' };
  return { family: 'unknown', from: 'none' };
}

/** The family of a checkpoint's layer table (adapters/lora-keys.ts). */
export function tableFamily(t: { isSd2: boolean; isSdxl: boolean }): LoraFamily {
  return t.isSdxl ? 'sdxl' : t.isSd2 ? 'sd2' : 'sd1';
}

export const FAMILY_LABEL: Record<LoraFamily, string> = {
  sd1: 'SD 1.x',
  sd2: 'SD 2.x',
  sdxl: 'SDXL',
  unknown: 'an unknown model',
};
