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
import { UNET_PRECISIONS, type UnetPrecisionChoice } from '../pipeline/unet-precision.js';

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
