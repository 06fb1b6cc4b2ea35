/**
 * `<lora:…>` / `<lyco:…>` tag arguments as A1111's `ExtraNetworkLora.activate` reads them, and the
 * file metadata A1111 shows (`NetworkOnDisk`): alias, SD version, parsed `ss_*` values.
 */
import type { ExtraNetworkParams } from '../prompt/extra-networks.js';
import { UserError } from '../util/errors.js';

export interface LoraTag {
  /** The name as written in the prompt (a file name or an alias). */
  name: string;
  te: number;
  unet: number;
  dynDim: number | null;
}

/** Python's float(): accepts what JS Number does for decimal text, refuses empty or junk. */
function pyFloat(s: string, tag: string): number {
  const t = s.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$/i.test(t))
    throw new UserError(
      `<${tag}>: "${s}" is not a number (write e.g. <lora:name:0.8> or <lora:name:te=0.5:unet=1>)`,
    );
  const low = t.toLowerCase().replace(/^[+]/, '');
  if (low.endsWith('inf') || low.endsWith('infinity')) return low.startsWith('-') ? -Infinity : Infinity;
  return Number(t);
}

function pyInt(s: string, tag: string): number {
  const t = s.trim();
  if (!/^[+-]?\d+$/.test(t)) throw new UserError(`<${tag}>: "${s}" is not a whole number (dyn_dim)`);
  return Number(t);
}

/** te = positional 1 (default 1), `te=`; unet = positional 2 (default te), `unet=`; dyn = positional 3, `dyn=`. */
export function parseLoraTag(params: ExtraNetworkParams): LoraTag {
  const tag = `${params.name}:${params.items.join(':')}`;
  const pos = params.positional;
  if (pos.length === 0 || !pos[0]) throw new UserError(`<${tag}>: the network name is missing`);
  let te = pos.length > 1 ? pyFloat(pos[1]!, tag) : 1.0;
  if ('te' in params.named) te = pyFloat(params.named.te!, tag);
  let unet = pos.length > 2 ? pyFloat(pos[2]!, tag) : te;
  if ('unet' in params.named) unet = pyFloat(params.named.unet!, tag);
  let dynDim = pos.length > 3 ? pyInt(pos[3]!, tag) : null;
  if ('dyn' in params.named) dynDim = pyInt(params.named.dyn!, tag);
  return { name: pos[0], te, unet, dynDim };
}

/** Whether an extra-network tag kind is a LoRA (`lora`, and `lyco` as its alias). */
export function isLoraTagKind(kind: string): boolean {
  return kind === 'lora' || kind === 'lyco';
}

const METADATA_ORDER: Record<string, number> = {
  ss_sd_model_name: 1,
  ss_resolution: 2,
  ss_clip_skip: 3,
  ss_num_train_images: 10,
  ss_tag_frequency: 20,
};

/** A1111 `read_metadata_from_safetensors`: values starting with `{` parsed as JSON when they parse. */
export function parseLoraMetadata(raw: Record<string, string>): Record<string, unknown> {
  const entries = Object.entries(raw).map(([k, v]): [string, unknown] => {
    if (typeof v === 'string' && v.startsWith('{')) {
      try {
        return [k, JSON.parse(v) as unknown];
      } catch {
        return [k, v];
      }
    }
    return [k, v];
  });
  // Stable sort by A1111's display order (999 for the rest).
  entries.sort((a, b) => (METADATA_ORDER[a[0]] ?? 999) - (METADATA_ORDER[b[0]] ?? 999));
  return Object.fromEntries(entries);
}

export type SdVersion = 'SD1' | 'SD2' | 'SDXL' | 'Unknown';

/** `NetworkOnDisk.detect_version`. */
export function loraSdVersion(meta: Record<string, string>): SdVersion {
  if (String(meta.ss_base_model_version ?? '').startsWith('sdxl_')) return 'SDXL';
  if (String(meta.ss_v2 ?? '') === 'True') return 'SD2';
  if (Object.keys(meta).length > 0) return 'SD1';
  return 'Unknown';
}

/** `NetworkOnDisk.alias`: the kohya output name when set, else the file name. */
export function loraAlias(name: string, meta: Record<string, string>): string {
  return meta.ss_output_name ?? name;
}

/** The hash A1111 keeps for a network: `sshs_model_hash` metadata, else the addnet hash of the file. */
export function loraHash(meta: Record<string, string>, addnet: string | undefined): string {
  return meta.sshs_model_hash || addnet || '';
}

/** `Lora hashes` infotext value: `name: shorthash` per network (`:` and `,` removed from names). */
export function loraHashesInfotext(entries: readonly { name: string; hash: string }[]): string | undefined {
  const map = new Map<string, string>();
  for (const e of entries) if (e.hash) map.set(e.name.replace(/[:,]/g, ''), e.hash.slice(0, 12));
  if (map.size === 0) return undefined;
  return [...map].map(([k, v]) => `${k}: ${v}`).join(', ');
}
