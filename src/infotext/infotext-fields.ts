/**
 * GenerationParams ↔ the key/value pairs of an A1111 infotext ("Steps: 20, Sampler: Euler a, …").
 * Formatting the text itself and parsing it into a dict is prompt/infotext.ts's job; this module only
 * knows which parameter goes under which key, in A1111's order and with A1111's omissions.
 */
import {
  infotextStr,
  readInfotextFields,
  writeInfotextFields,
  type InfotextContext,
  type ParsedInfotext,
} from '../params/infotext-map.js';
import type { GenerationParams } from '../params/generation.js';
import { UNET_PRECISIONS, type UnetPrecisionChoice } from '../params/unet-precision.js';

export type InfotextValue = string | number | boolean;

/** Infotext key of the UNet's arithmetic; written only for int8 so fp32 infotexts stay A1111's. */
export const UNET_PRECISION_KEY = 'UNet precision';

/** What the pipeline knows beyond the request (params/infotext-map.ts), plus its own keys. */
export interface InfotextExtras extends InfotextContext {
  /** The UNet's arithmetic; written only when not 'fp32' (A1111 has no such key and keeps unknown ones). */
  unetPrecision?: UnetPrecisionChoice | null;
  version?: string | null;
  /** Anything else, appended in order before Version. */
  extra?: Record<string, InfotextValue | null | undefined>;
}

/**
 * The infotext fields of one image, in A1111's order: the request's keys (params/infotext-map.ts),
 * then the UNet precision, `extra` and Version. `params.seed`/`subseed` must already be the values
 * used for this image, not -1.
 */
export function paramsToInfotextFields(
  params: GenerationParams,
  extras: InfotextExtras,
): Record<string, InfotextValue> {
  const fields: Record<string, InfotextValue | null | undefined> = writeInfotextFields(params, extras);
  if (extras.unetPrecision && extras.unetPrecision !== 'fp32')
    fields[UNET_PRECISION_KEY] = extras.unetPrecision;
  for (const [k, v] of Object.entries(extras.extra ?? {})) fields[k] = v;
  fields.Version = extras.version;

  const out: Record<string, InfotextValue> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) out[k] = v;
  return out;
}

/**
 * The infotext keys A1111's create_infotext computes itself from the processing object; every
 * other key of an infotext came from `p.extra_generation_params`.
 */
const A1111_COMPUTED_KEYS: ReadonlySet<string> = new Set([
  'Steps',
  'Sampler',
  'CFG scale',
  'Image CFG scale',
  'Seed',
  'Face restoration',
  'Size',
  'Model hash',
  'Model',
  'FP8 weight',
  'Cache FP16 weight for LoRA',
  'VAE hash',
  'VAE',
  'Variation seed',
  'Variation seed strength',
  'Seed resize from',
  'Conditional mask weight',
  'Clip skip',
  'ENSD',
  'Token merging ratio',
  'Token merging ratio hr',
  'Init image hash',
  'RNG',
  'Tiling',
  'Version',
  'User',
]);

/**
 * A1111's `info.extra_generation_params` of a job, from one image's infotext fields (in their
 * order, values as they were, not as text): the hires, inpainting and sampler entries, Lora/TI
 * hashes, Emphasis, NGMS, "Denoising strength" (which A1111 also keeps there), and "Schedule type"
 * when the sampler's schedule is not the model's own ("Automatic" is create_infotext's default).
 * With hires fix A1111 also holds "Hires prompt" and "Hires negative prompt" as functions its JSON
 * writes as null, and a "Hires schedule type" placeholder (null unless the infotext has one).
 */
export function extraGenerationParams(
  fields: Readonly<Record<string, InfotextValue>>,
  opts: { hires?: boolean } = {},
): Record<string, InfotextValue | null> {
  const out: Record<string, InfotextValue | null> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (A1111_COMPUTED_KEYS.has(k)) continue;
    if (k === 'Schedule type' && v === 'Automatic') continue;
    out[k] = v;
  }
  if (opts.hires) {
    out['Hires prompt'] = null;
    out['Hires negative prompt'] = null;
    out['Hires schedule type'] ??= null;
  }
  return out;
}

/**
 * The UNet precision an infotext records: 'int8' or 'fp32' when its "UNet precision" key names one,
 * undefined when the key is absent or unknown (then the front door's default applies).
 */
export function unetPrecisionFromInfotext(d: ParsedInfotext): UnetPrecisionChoice | undefined {
  const v = infotextStr(d, UNET_PRECISION_KEY)?.trim().toLowerCase();
  return UNET_PRECISIONS.find((p) => p === v);
}

/**
 * GenerationParams fields from the dict `parseInfotext` returns (A1111's parse_generation_parameters
 * shape: "Steps", "Size-1", "Prompt", …). Fields the infotext does not carry are absent; malformed
 * values are skipped, never thrown: an infotext is hostile input.
 */
export function paramsFromInfotext(d: ParsedInfotext): Partial<GenerationParams> {
  return readInfotextFields(d);
}
