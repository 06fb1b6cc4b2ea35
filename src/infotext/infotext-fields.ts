/**
 * GenerationParams ↔ the key/value pairs of an A1111 infotext ("Steps: 20, Sampler: Euler a, …").
 * Formatting the text itself and parsing it into a dict is prompt/infotext.ts's job; this module only
 * knows which parameter goes under which key, in A1111's order and with A1111's omissions.
 */
import {
  MASKED_CONTENT,
  clipSkipOf,
  emphasisOf,
  ensdOf,
  randnSourceOf,
  sMinUncondAllOf,
  sMinUncondOf,
  tokenMergingRatioOf,
  type GenerationParams,
} from '../params/generation.js';
import { resolveSampler } from '../sampling/registry.js';
import { UNET_PRECISIONS, type UnetPrecisionChoice } from '../pipeline/unet-precision.js';
import { parseDecimal } from '../util/numbers.js';

export type InfotextValue = string | number | boolean;

/** Infotext key of the UNet's arithmetic; written only for int8 so fp32 infotexts stay A1111's. */
export const UNET_PRECISION_KEY = 'UNet precision';

/** What the pipeline knows beyond the request: the model, the mode, hashes of extra networks. */
export interface InfotextExtras {
  mode: 'txt2img' | 'img2img';
  /** img2img with a mask. */
  inpaint?: boolean;
  modelHash?: string | null;
  modelName?: string | null;
  vaeHash?: string | null;
  vaeName?: string | null;
  /** "name: hash, …" as A1111 writes it. */
  loraHashes?: string | null;
  tiHashes?: string | null;
  /** Written only when not "Original" (A1111's emphasis setting). */
  emphasis?: string | null;
  /** The UNet's arithmetic; written only when not 'fp32' (A1111 has no such key and keeps unknown ones). */
  unetPrecision?: UnetPrecisionChoice | null;
  version?: string | null;
  /** Anything else, appended in order before Version. */
  extra?: Record<string, InfotextValue | null | undefined>;
}

/**
 * The infotext fields of one image, in A1111's order (JS objects keep insertion order for string
 * keys). `params.seed`/`subseed` must already be the values used for this image, not -1.
 */
export function paramsToInfotextFields(
  params: GenerationParams,
  extras: InfotextExtras,
): Record<string, InfotextValue> {
  const { sampler: info, effectiveScheduler } = resolveSampler(params.sampler_name, params.scheduler);
  const eta = params.eta ?? info.etaDefault ?? 0;
  const clipSkip = clipSkipOf(params);
  const ensd = ensdOf(params);
  const rngSource = randnSourceOf(params);
  const hires = extras.mode === 'txt2img' && params.enable_hr;
  const img2img = extras.mode === 'img2img';

  const fields: Record<string, InfotextValue | null | undefined> = {
    Steps: params.steps,
    Sampler: info.label,
    'Schedule type': effectiveScheduler.label,
    'CFG scale': params.cfg_scale,
    Seed: params.seed,
    'Face restoration': params.restore_faces ? 'CodeFormer' : null,
    Size: `${params.width}x${params.height}`,
    'Model hash': extras.modelHash,
    Model: extras.modelName,
    'VAE hash': extras.vaeHash,
    VAE: extras.vaeName,
    'Variation seed': params.subseed_strength === 0 ? null : params.subseed,
    'Variation seed strength': params.subseed_strength === 0 ? null : params.subseed_strength,
    'Seed resize from':
      params.seed_resize_from_w <= 0 || params.seed_resize_from_h <= 0
        ? null
        : `${params.seed_resize_from_w}x${params.seed_resize_from_h}`,
    'Denoising strength': hires || img2img ? params.denoising_strength : null,
    'Clip skip': clipSkip <= 1 ? null : clipSkip,
    ENSD: ensd !== 0 && info.usesEnsd && eta !== 0 ? ensd : null,
    'Token merging ratio': tokenMergingRatioOf(params, img2img ? 'img2img' : 'txt2img') || null,
    'Token merging ratio hr': hires ? tokenMergingRatioOf(params, 'hires') || null : null,
    RNG: rngSource !== 'GPU' ? rngSource : null,
    NGMS: sMinUncondOf(params) || null,
    'NGMS all steps': sMinUncondOf(params) && sMinUncondAllOf(params) ? 'True' : null,
    Tiling: params.tiling ? 'True' : null,
  };

  // Sampler options A1111 records when they differ from its settings' defaults.
  if (params.eta !== null && info.etaInfotextKey && params.eta !== info.etaDefault) {
    fields[info.etaInfotextKey] = params.eta;
  }
  if (params.s_churn !== null && params.s_churn !== 0) fields['Sigma churn'] = params.s_churn;
  if (params.s_tmin !== null && params.s_tmin !== 0) fields['Sigma tmin'] = params.s_tmin;
  if (params.s_tmax !== null && params.s_tmax !== 0) fields['Sigma tmax'] = params.s_tmax;
  if (params.s_noise !== null && params.s_noise !== 1) fields['Sigma noise'] = params.s_noise;

  if (hires) {
    if (params.hr_sampler_name !== null && params.hr_sampler_name !== params.sampler_name) {
      fields['Hires sampler'] = params.hr_sampler_name;
    }
    if (params.hr_scheduler !== null && params.hr_scheduler !== params.scheduler) {
      fields['Hires schedule type'] = params.hr_scheduler;
    }
    if (params.hr_prompt !== '' && params.hr_prompt !== params.prompt)
      fields['Hires prompt'] = params.hr_prompt;
    if (params.hr_negative_prompt !== '' && params.hr_negative_prompt !== params.negative_prompt) {
      fields['Hires negative prompt'] = params.hr_negative_prompt;
    }
    if (params.hr_resize_x === 0 && params.hr_resize_y === 0) fields['Hires upscale'] = params.hr_scale;
    else fields['Hires resize'] = `${params.hr_resize_x}x${params.hr_resize_y}`;
    if (params.hr_second_pass_steps) fields['Hires steps'] = params.hr_second_pass_steps;
    fields['Hires upscaler'] = params.hr_upscaler;
  }

  if (img2img && extras.inpaint) {
    if (params.mask_blur_x === params.mask_blur_y) fields['Mask blur'] = params.mask_blur_x;
    else {
      fields['Mask blur x'] = params.mask_blur_x;
      fields['Mask blur y'] = params.mask_blur_y;
    }
    if (params.inpainting_mask_invert) fields['Mask mode'] = 'Inpaint not masked';
    if (params.inpainting_fill !== 1) fields['Masked content'] = MASKED_CONTENT[params.inpainting_fill];
    if (params.inpaint_full_res) {
      fields['Inpaint area'] = 'Only masked';
      fields['Masked area padding'] = params.inpaint_full_res_padding;
    }
  }
  if (img2img && params.initial_noise_multiplier !== null && params.initial_noise_multiplier !== 1) {
    fields['Noise multiplier'] = params.initial_noise_multiplier;
  }
  if (extras.loraHashes) fields['Lora hashes'] = extras.loraHashes;
  if (extras.tiHashes) fields['TI hashes'] = extras.tiHashes;
  // A1111 (sd_hijack_clip) records a non-default emphasis when a prompt has brackets to weigh.
  const emphasis = extras.emphasis ?? emphasisOf(params);
  const texts = [
    params.prompt,
    params.negative_prompt,
    hires ? params.hr_prompt : '',
    hires ? params.hr_negative_prompt : '',
  ];
  if (emphasis !== 'Original' && texts.some((t) => t.includes('(') || t.includes('[')))
    fields.Emphasis = emphasis;
  if (extras.unetPrecision && extras.unetPrecision !== 'fp32')
    fields[UNET_PRECISION_KEY] = extras.unetPrecision;
  for (const [k, v] of Object.entries(extras.extra ?? {})) fields[k] = v;
  fields.Version = extras.version;

  const out: Record<string, InfotextValue> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) out[k] = v;
  return out;
}

/** Values of A1111's parse result are strings, some defaults numbers or booleans. */
type ParsedInfotext = Record<string, unknown>;

function str(d: ParsedInfotext, key: string): string | undefined {
  const v = d[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function num(d: ParsedInfotext, key: string): number | undefined {
  const s = str(d, key);
  if (s === undefined || s.trim() === '') return undefined;
  const n = parseDecimal(s);
  return Number.isFinite(n) ? n : undefined;
}

function int(d: ParsedInfotext, key: string): number | undefined {
  const n = num(d, key);
  return n !== undefined && Number.isInteger(n) ? n : undefined;
}

/**
 * The UNet precision an infotext records: 'int8' or 'fp32' when its "UNet precision" key names one,
 * undefined when the key is absent or unknown (then the front door's default applies).
 */
export function unetPrecisionFromInfotext(d: ParsedInfotext): UnetPrecisionChoice | undefined {
  const v = str(d, UNET_PRECISION_KEY)?.trim().toLowerCase();
  return UNET_PRECISIONS.find((p) => p === v);
}

/**
 * GenerationParams fields from the dict `parseInfotext` returns (A1111's parse_generation_parameters
 * shape: "Steps", "Size-1", "Prompt", …). Fields the infotext does not carry are absent, so the
 * result can be spread over defaults or over a front door's own flags. Malformed values are skipped,
 * never thrown: an infotext is hostile input.
 */
export function paramsFromInfotext(d: ParsedInfotext): Partial<GenerationParams> {
  const p: Partial<GenerationParams> = {};
  const o: GenerationParams['override_settings'] = {};
  const set = <K extends keyof GenerationParams>(key: K, v: GenerationParams[K] | undefined): void => {
    if (v !== undefined) p[key] = v;
  };
  set('prompt', str(d, 'Prompt'));
  set('negative_prompt', str(d, 'Negative prompt'));
  set('steps', int(d, 'Steps'));
  set('cfg_scale', num(d, 'CFG scale'));
  set('seed', int(d, 'Seed'));
  set('width', int(d, 'Size-1'));
  set('height', int(d, 'Size-2'));

  const sampler = str(d, 'Sampler');
  const schedule = str(d, 'Schedule type');
  if (sampler !== undefined) {
    try {
      // Old infotexts carry the schedule in the sampler name ("DPM++ 2M Karras").
      const r = resolveSampler(sampler, schedule ?? 'Automatic');
      p.sampler_name = r.sampler.label;
      p.scheduler = schedule ?? (r.scheduler.name === 'automatic' ? 'Automatic' : r.scheduler.label);
    } catch {
      p.sampler_name = sampler;
    }
  } else if (schedule !== undefined) {
    p.scheduler = schedule;
  }

  const subseedStrength = num(d, 'Variation seed strength');
  if (subseedStrength !== undefined) {
    p.subseed_strength = subseedStrength;
    set('subseed', int(d, 'Variation seed'));
  }
  set('seed_resize_from_w', int(d, 'Seed resize from-1'));
  set('seed_resize_from_h', int(d, 'Seed resize from-2'));
  set('denoising_strength', num(d, 'Denoising strength'));
  if (str(d, 'Tiling') === 'True') p.tiling = true;
  if (str(d, 'Face restoration') !== undefined) p.restore_faces = true;

  const eta = num(d, 'Eta') ?? num(d, 'Eta DDIM');
  set('eta', eta);
  set('s_churn', num(d, 'Sigma churn'));
  set('s_tmin', num(d, 'Sigma tmin'));
  set('s_tmax', num(d, 'Sigma tmax'));
  set('s_noise', num(d, 'Sigma noise'));

  // Hires fix: A1111's paste rule for the enable_hr checkbox.
  const hrResizeX = int(d, 'Hires resize-1');
  const hrResizeY = int(d, 'Hires resize-2');
  const enableHr =
    'Denoising strength' in d && ('Hires upscale' in d || 'Hires upscaler' in d || (hrResizeX ?? 0) > 0);
  if (enableHr) {
    p.enable_hr = true;
    set('hr_scale', num(d, 'Hires upscale'));
    set('hr_upscaler', str(d, 'Hires upscaler'));
    set('hr_second_pass_steps', int(d, 'Hires steps'));
    set('hr_resize_x', hrResizeX);
    set('hr_resize_y', hrResizeY);
    const hrSampler = str(d, 'Hires sampler');
    if (hrSampler !== undefined && hrSampler !== 'Use same sampler') p.hr_sampler_name = hrSampler;
    const hrSched = str(d, 'Hires schedule type');
    if (hrSched !== undefined && hrSched !== 'Use same scheduler') p.hr_scheduler = hrSched;
    set('hr_prompt', str(d, 'Hires prompt'));
    set('hr_negative_prompt', str(d, 'Hires negative prompt'));
  }

  // SDXL refiner (A1111 writes these when the switch happened: the title "name [hash]" and the fraction).
  const refiner = str(d, 'Refiner');
  if (refiner !== undefined && refiner !== '') p.refiner_checkpoint = refiner;
  const switchAt = num(d, 'Refiner switch at');
  if (switchAt !== undefined) p.refiner_switch_at = switchAt;

  // Inpainting.
  const blur = int(d, 'Mask blur');
  if (blur !== undefined) {
    p.mask_blur = blur;
    p.mask_blur_x = blur;
    p.mask_blur_y = blur;
  } else {
    set('mask_blur_x', int(d, 'Mask blur x'));
    set('mask_blur_y', int(d, 'Mask blur y'));
  }
  const maskMode = str(d, 'Mask mode');
  if (maskMode !== undefined) p.inpainting_mask_invert = maskMode === 'Inpaint not masked' ? 1 : 0;
  const masked = str(d, 'Masked content');
  const fill = MASKED_CONTENT.indexOf(masked as (typeof MASKED_CONTENT)[number]);
  if (fill >= 0) p.inpainting_fill = fill as GenerationParams['inpainting_fill'];
  const area = str(d, 'Inpaint area');
  if (area !== undefined) p.inpaint_full_res = area === 'Only masked';
  set('inpaint_full_res_padding', int(d, 'Masked area padding'));
  set('initial_noise_multiplier', num(d, 'Noise multiplier'));

  // Settings carried by the infotext.
  const clipSkip = int(d, 'Clip skip');
  if (clipSkip !== undefined) o.CLIP_stop_at_last_layers = clipSkip;
  const ensd = int(d, 'ENSD');
  if (ensd !== undefined) o.eta_noise_seed_delta = ensd;
  const tome = num(d, 'Token merging ratio');
  if (tome !== undefined) o.token_merging_ratio = tome;
  const tomeHr = num(d, 'Token merging ratio hr');
  if (tomeHr !== undefined) o.token_merging_ratio_hr = tomeHr;
  // A1111 maps these infotext keys to settings (infotext_to_setting_name_mapping).
  const ngms = num(d, 'NGMS');
  if (ngms !== undefined) o.s_min_uncond = ngms;
  if (str(d, 'NGMS all steps') === 'True') o.s_min_uncond_all = true;
  const emphasis = str(d, 'Emphasis');
  if (emphasis !== undefined) o.emphasis = emphasis;
  const rng = str(d, 'RNG');
  if (rng === 'GPU' || rng === 'CPU' || rng === 'NV') o.randn_source = rng;
  const model = str(d, 'Model') ?? str(d, 'Model hash');
  if (model !== undefined) o.sd_model_checkpoint = model;
  const vae = str(d, 'VAE');
  if (vae !== undefined) o.sd_vae = vae;
  if (Object.keys(o).length > 0) p.override_settings = o;

  const styles = d['Styles array'];
  if (Array.isArray(styles) && styles.every((s) => typeof s === 'string')) p.styles = [...styles];
  return p;
}
