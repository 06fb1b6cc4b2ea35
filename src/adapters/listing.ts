/**
 * What the data dir holds in LoRA and hypernetwork files, as A1111's extra-networks pages show them:
 * name, alias, base model, rank, the training tags of `ss_tag_frequency` (most used first) and a
 * preview image beside the file (`name.png`, `name.preview.png`, `.jpg`, `.webp`).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { readSafetensorsHeader } from '../formats/safetensors.js';
import type { TensorInfo } from '../formats/tensor.js';
import { loraFamily, type FamilyGuess } from './lora-family.js';
import { listLoraFiles } from './lora-library.js';
import { loraSdVersion, parseLoraMetadata, type SdVersion } from './lora-tags.js';

export interface LoraListing {
  name: string;
  alias: string;
  path: string;
  /** A1111's `sd_version` (metadata only: SD1 / SD2 / SDXL / Unknown). */
  baseModel: SdVersion;
  /** Ours: sd1 / sd2 / sdxl from the metadata, else from the keys and widths (lora-family.ts). */
  family: FamilyGuess['family'];
  familyFrom: FamilyGuess['from'];
  /** `ss_network_dim`, when the trainer wrote it. */
  rank: number | null;
  /** Training tags with their counts, most used first (A1111 `build_tags`). */
  tags: [string, number][];
  preview: string | null;
}

const PREVIEW_SUFFIXES = ['.png', '.preview.png', '.jpg', '.jpeg', '.preview.jpg', '.webp', '.preview.webp'];

export function previewFor(path: string): string | null {
  const stem = path.slice(0, -extname(path).length);
  for (const s of PREVIEW_SUFFIXES) if (existsSync(stem + s)) return stem + s;
  return null;
}

/** A1111 `build_tags`: tag counts summed over the dataset folders, most used first. */
export function trainingTags(meta: Record<string, string>): [string, number][] {
  const parsed = parseLoraMetadata(meta).ss_tag_frequency;
  const counts = new Map<string, number>();
  if (parsed && typeof parsed === 'object') {
    for (const dir of Object.values(parsed as Record<string, unknown>)) {
      if (!dir || typeof dir !== 'object') continue;
      for (const [tag, n] of Object.entries(dir as Record<string, unknown>)) {
        if (typeof n === 'number' && Number.isFinite(n))
          counts.set(tag.trim(), (counts.get(tag.trim()) ?? 0) + n);
      }
    }
  }
  return [...counts].sort((a, b) => b[1] - a[1]);
}

export async function listLoras(dirs: readonly string[]): Promise<LoraListing[]> {
  const out: LoraListing[] = [];
  for (const f of await listLoraFiles(dirs)) {
    const dim = Number(f.metadata.ss_network_dim);
    let tensors: TensorInfo[] = [];
    if (extname(f.path).toLowerCase() === '.safetensors') {
      try {
        tensors = (await readSafetensorsHeader(f.path)).tensors;
      } catch {
        // A damaged file is still listed; loading it reports the problem.
      }
    }
    const fam = loraFamily(f.metadata, tensors);
    out.push({
      name: f.name,
      alias: f.alias,
      path: f.path,
      baseModel: loraSdVersion(f.metadata),
      family: fam.family,
      familyFrom: fam.from,
      rank: Number.isInteger(dim) && dim > 0 ? dim : null,
      tags: trainingTags(f.metadata),
      preview: previewFor(f.path),
    });
  }
  return out;
}

/** Hypernetwork files (`.pt`) in a folder tree, by name (A1111 lists them by file stem). */
export function listHypernetworkFiles(dir: string): { name: string; path: string; preview: string | null }[] {
  const out: { name: string; path: string; preview: string | null }[] = [];
  const walk = (d: string, depth: number) => {
    if (!existsSync(d) || depth > 8) return;
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p, depth + 1);
      else if (st.isFile() && extname(n).toLowerCase() === '.pt')
        out.push({ name: basename(n, extname(n)), path: p, preview: previewFor(p) });
    }
  };
  walk(dir, 0);
  return out;
}
