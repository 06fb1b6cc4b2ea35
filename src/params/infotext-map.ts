/**
 * The infotext keys of the request, both ways, in A1111's order: how each key is written from a
 * GenerationParams (with A1111's omissions) and read back from the dict `parseInfotext` returns.
 * The field table (fields.ts) says which fields each key carries; a test holds the two together.
 * Formatting the text itself is infotext/infotext.ts's job. No Node imports.
 */
import { parseDecimal } from '../util/numbers.js';
import { resolveSampler, type SamplerChoice } from '../sampling/registry.js';
import { MASKED_CONTENT } from './catalog.js';
import {
  clipSkipOf,
  emphasisOf,
  ensdOf,
  inpaintingMaskWeightOf,
  randnSourceOf,
  refinerSwitchByStepsOf,
  sMinUncondAllOf,
  sMinUncondOf,
  tokenMergingRatioOf,
} from './generation.js';
import type { GenerationParams, OverrideSettings } from './schema.js';

export type InfotextValue = string | number | boolean;

/** What the job knows beyond the request: the mode, the model, hashes of extra networks. */
export interface InfotextContext {
  mode: 'txt2img' | 'img2img';
  /** img2img with a mask. */
  inpaint?: boolean;
  /** An inpainting model's image conditioning was made from the init image (A1111 is_using_inpainting_conditioning). */
  inpaintingConditioning?: boolean;
  modelHash?: string | null;
  modelName?: string | null;
  vaeHash?: string | null;
  vaeName?: string | null;
  /** "name: hash, …" as A1111 writes it. */
  loraHashes?: string | null;
  tiHashes?: string | null;
  /** The emphasis mode the job used (default: the request's override_settings.emphasis). */
  emphasis?: string | null;
}

interface WriteState {
  p: GenerationParams;
  ctx: InfotextContext;
  /** The sampler and schedule the job runs (the sampling registry's entry). */
  resolved: SamplerChoice;
  hires: boolean;
  img2img: boolean;
}

/** Values of A1111's parse result are strings, some defaults numbers or booleans. */
export type ParsedInfotext = Record<string, unknown>;

interface ReadState {
  d: ParsedInfotext;
  p: Partial<GenerationParams>;
  o: OverrideSettings;
  /** A1111's paste rule for the enable_hr checkbox. */
  hires: boolean;
}

export interface InfotextKey {
  key: string;
  /** The value under `key`; null/undefined = not written. */
  write?: (s: WriteState) => InfotextValue | null | undefined;
  /** Sets the fields this key carries; malformed values are skipped, never thrown. */
  read?: (s: ReadState) => void;
}

export function infotextStr(d: ParsedInfotext, key: string): string | undefined {
  const v = d[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function num(d: ParsedInfotext, key: string): number | undefined {
  const s = infotextStr(d, key);
  if (s === undefined || s.trim() === '') return undefined;
  const n = parseDecimal(s);
  return Number.isFinite(n) ? n : undefined;
}

function int(d: ParsedInfotext, key: string): number | undefined {
  const n = num(d, key);
  return n !== undefined && Number.isInteger(n) ? n : undefined;
}

function set<K extends keyof GenerationParams>(
  p: Partial<GenerationParams>,
  key: K,
  v: GenerationParams[K] | undefined,
): void {
  if (v !== undefined) p[key] = v;
}

const orNull = <T>(cond: boolean, v: T): T | null => (cond ? v : null);

/** Every key of the request, in the order A1111's create_infotext writes them. */
export const INFOTEXT_KEYS: readonly InfotextKey[] = [
  {
    key: 'Prompt',
    read: ({ d, p }) => set(p, 'prompt', infotextStr(d, 'Prompt')),
  },
  {
    key: 'Negative prompt',
    read: ({ d, p }) => set(p, 'negative_prompt', infotextStr(d, 'Negative prompt')),
  },
  { key: 'Steps', write: ({ p }) => p.steps, read: ({ d, p }) => set(p, 'steps', int(d, 'Steps')) },
  {
    key: 'Sampler',
    write: ({ resolved }) => resolved.sampler.label,
    read: ({ d, p }) => {
      const sampler = infotextStr(d, 'Sampler');
      if (sampler === undefined) return;
      const schedule = infotextStr(d, 'Schedule type');
      try {
        // Old infotexts carry the schedule in the sampler name ("DPM++ 2M Karras").
        const r = resolveSampler(sampler, schedule ?? 'Automatic');
        p.sampler_name = r.sampler.label;
        p.scheduler = schedule ?? (r.scheduler.name === 'automatic' ? 'Automatic' : r.scheduler.label);
      } catch {
        p.sampler_name = sampler;
      }
    },
  },
  {
    key: 'Schedule type',
    write: ({ resolved }) => resolved.effectiveScheduler.label,
    read: ({ d, p }) => {
      if (infotextStr(d, 'Sampler') === undefined) set(p, 'scheduler', infotextStr(d, 'Schedule type'));
    },
  },
  {
    key: 'CFG scale',
    write: ({ p }) => p.cfg_scale,
    read: ({ d, p }) => set(p, 'cfg_scale', num(d, 'CFG scale')),
  },
  { key: 'Seed', write: ({ p }) => p.seed, read: ({ d, p }) => set(p, 'seed', int(d, 'Seed')) },
  {
    key: 'Face restoration',
    write: ({ p }) => orNull(p.restore_faces, 'CodeFormer'),
    read: ({ d, p }) => {
      if (infotextStr(d, 'Face restoration') !== undefined) p.restore_faces = true;
    },
  },
  {
    key: 'Size',
    write: ({ p }) => `${p.width}x${p.height}`,
    read: ({ d, p }) => {
      set(p, 'width', int(d, 'Size-1'));
      set(p, 'height', int(d, 'Size-2'));
    },
  },
  {
    key: 'Model hash',
    write: ({ ctx }) => ctx.modelHash,
    read: ({ d, o }) => {
      const model = infotextStr(d, 'Model') ?? infotextStr(d, 'Model hash');
      if (model !== undefined) o.sd_model_checkpoint = model;
    },
  },
  { key: 'Model', write: ({ ctx }) => ctx.modelName },
  { key: 'VAE hash', write: ({ ctx }) => ctx.vaeHash },
  {
    key: 'VAE',
    write: ({ ctx }) => ctx.vaeName,
    read: ({ d, o }) => {
      const vae = infotextStr(d, 'VAE');
      if (vae !== undefined) o.sd_vae = vae;
    },
  },
  {
    key: 'Variation seed',
    write: ({ p }) => orNull(p.subseed_strength !== 0, p.subseed),
    read: ({ d, p }) => {
      if (num(d, 'Variation seed strength') !== undefined) set(p, 'subseed', int(d, 'Variation seed'));
    },
  },
  {
    key: 'Variation seed strength',
    write: ({ p }) => orNull(p.subseed_strength !== 0, p.subseed_strength),
    read: ({ d, p }) => set(p, 'subseed_strength', num(d, 'Variation seed strength')),
  },
  {
    key: 'Seed resize from',
    write: ({ p }) =>
      orNull(
        p.seed_resize_from_w > 0 && p.seed_resize_from_h > 0,
        `${p.seed_resize_from_w}x${p.seed_resize_from_h}`,
      ),
    read: ({ d, p }) => {
      set(p, 'seed_resize_from_w', int(d, 'Seed resize from-1'));
      set(p, 'seed_resize_from_h', int(d, 'Seed resize from-2'));
    },
  },
  {
    key: 'Denoising strength',
    write: ({ p, hires, img2img }) => orNull(hires || img2img, p.denoising_strength),
    read: ({ d, p }) => set(p, 'denoising_strength', num(d, 'Denoising strength')),
  },
  {
    key: 'Conditional mask weight',
    write: ({ p, ctx }) => orNull(!!ctx.inpaintingConditioning, inpaintingMaskWeightOf(p)),
    read: ({ d, o }) => {
      const v = num(d, 'Conditional mask weight');
      if (v !== undefined && v >= 0 && v <= 1) o.inpainting_mask_weight = v;
    },
  },
  {
    key: 'Clip skip',
    write: ({ p }) => orNull(clipSkipOf(p) > 1, clipSkipOf(p)),
    read: ({ d, o }) => {
      const v = int(d, 'Clip skip');
      if (v !== undefined) o.CLIP_stop_at_last_layers = v;
    },
  },
  {
    key: 'ENSD',
    write: ({ p, resolved }) => {
      const eta = p.eta ?? resolved.sampler.etaDefault ?? 0;
      const ensd = ensdOf(p);
      return orNull(ensd !== 0 && resolved.sampler.usesEnsd && eta !== 0, ensd);
    },
    read: ({ d, o }) => {
      const v = int(d, 'ENSD');
      if (v !== undefined) o.eta_noise_seed_delta = v;
    },
  },
  {
    key: 'Token merging ratio',
    write: ({ p, img2img }) => tokenMergingRatioOf(p, img2img ? 'img2img' : 'txt2img') || null,
    read: ({ d, o }) => {
      const v = num(d, 'Token merging ratio');
      if (v !== undefined) o.token_merging_ratio = v;
    },
  },
  {
    key: 'Token merging ratio hr',
    write: ({ p, hires }) => (hires ? tokenMergingRatioOf(p, 'hires') || null : null),
    read: ({ d, o }) => {
      const v = num(d, 'Token merging ratio hr');
      if (v !== undefined) o.token_merging_ratio_hr = v;
    },
  },
  {
    key: 'RNG',
    write: ({ p }) => orNull(randnSourceOf(p) !== 'GPU', randnSourceOf(p)),
    read: ({ d, o }) => {
      const rng = infotextStr(d, 'RNG');
      if (rng === 'GPU' || rng === 'CPU' || rng === 'NV') o.randn_source = rng;
    },
  },
  {
    // A1111 records it when the negative prompt was skipped; we when it is set.
    key: 'NGMS',
    write: ({ p }) => sMinUncondOf(p) || null,
    read: ({ d, o }) => {
      const v = num(d, 'NGMS');
      if (v !== undefined && v >= 0) o.s_min_uncond = v;
    },
  },
  {
    // A1111's s_min_uncond_all setting.
    key: 'NGMS all steps',
    write: ({ p }) => orNull(sMinUncondOf(p) > 0 && sMinUncondAllOf(p), 'True'),
    read: ({ d, o }) => {
      if (infotextStr(d, 'NGMS all steps') === 'True') o.s_min_uncond_all = true;
    },
  },
  {
    key: 'Tiling',
    write: ({ p }) => orNull(p.tiling, 'True'),
    read: ({ d, p }) => {
      if (infotextStr(d, 'Tiling') === 'True') p.tiling = true;
    },
  },
  // Sampler options A1111 records when they differ from its settings' defaults: eta under the
  // sampler's own key (Eta, Eta DDIM) when it differs from that sampler's default.
  ...(['Eta DDIM', 'Eta'] as const).map((key): InfotextKey => ({
    key,
    write: ({ p, resolved: { sampler } }) =>
      orNull(p.eta !== null && sampler.etaInfotextKey === key && p.eta !== sampler.etaDefault, p.eta),
    read: key === 'Eta' ? ({ d, p }) => set(p, 'eta', num(d, 'Eta') ?? num(d, 'Eta DDIM')) : undefined,
  })),
  ...(
    [
      ['Sigma churn', 's_churn', 0],
      ['Sigma tmin', 's_tmin', 0],
      ['Sigma tmax', 's_tmax', 0],
      ['Sigma noise', 's_noise', 1],
    ] as const
  ).map(([key, field, neutral]): InfotextKey => ({
    key,
    write: ({ p }) => orNull(p[field] !== null && p[field] !== neutral, p[field]),
    read: ({ d, p }) => set(p, field, num(d, key)),
  })),
  // Hires fix, in the order A1111's txt2img adds them to extra_generation_params.
  {
    key: 'Hires sampler',
    write: ({ p, hires }) =>
      orNull(hires && p.hr_sampler_name !== null && p.hr_sampler_name !== p.sampler_name, p.hr_sampler_name),
    read: ({ d, p, hires }) => {
      const v = infotextStr(d, 'Hires sampler');
      if (hires && v !== undefined && v !== 'Use same sampler') p.hr_sampler_name = v;
    },
  },
  {
    key: 'Hires schedule type',
    write: ({ p, hires }) =>
      orNull(hires && p.hr_scheduler !== null && p.hr_scheduler !== p.scheduler, p.hr_scheduler),
    read: ({ d, p, hires }) => {
      const v = infotextStr(d, 'Hires schedule type');
      if (hires && v !== undefined && v !== 'Use same scheduler') p.hr_scheduler = v;
    },
  },
  {
    key: 'Hires prompt',
    write: ({ p, hires }) => orNull(hires && p.hr_prompt !== '' && p.hr_prompt !== p.prompt, p.hr_prompt),
    read: ({ d, p, hires }) => {
      if (hires) set(p, 'hr_prompt', infotextStr(d, 'Hires prompt'));
    },
  },
  {
    key: 'Hires negative prompt',
    write: ({ p, hires }) =>
      orNull(
        hires && p.hr_negative_prompt !== '' && p.hr_negative_prompt !== p.negative_prompt,
        p.hr_negative_prompt,
      ),
    read: ({ d, p, hires }) => {
      if (hires) set(p, 'hr_negative_prompt', infotextStr(d, 'Hires negative prompt'));
    },
  },
  {
    key: 'Hires upscale',
    write: ({ p, hires }) => orNull(hires && p.hr_resize_x === 0 && p.hr_resize_y === 0, p.hr_scale),
    read: ({ d, p, hires }) => {
      if (!hires) return;
      p.enable_hr = true;
      set(p, 'hr_scale', num(d, 'Hires upscale'));
    },
  },
  {
    key: 'Hires resize',
    write: ({ p, hires }) =>
      orNull(hires && (p.hr_resize_x !== 0 || p.hr_resize_y !== 0), `${p.hr_resize_x}x${p.hr_resize_y}`),
    read: ({ d, p, hires }) => {
      if (!hires) return;
      set(p, 'hr_resize_x', int(d, 'Hires resize-1'));
      set(p, 'hr_resize_y', int(d, 'Hires resize-2'));
    },
  },
  {
    key: 'Hires steps',
    write: ({ p, hires }) => orNull(hires && p.hr_second_pass_steps !== 0, p.hr_second_pass_steps),
    read: ({ d, p, hires }) => {
      if (hires) set(p, 'hr_second_pass_steps', int(d, 'Hires steps'));
    },
  },
  {
    key: 'Hires upscaler',
    write: ({ p, hires }) => orNull(hires, p.hr_upscaler),
    read: ({ d, p, hires }) => {
      if (hires) set(p, 'hr_upscaler', infotextStr(d, 'Hires upscaler'));
    },
  },
  // Inpainting.
  {
    key: 'Mask blur',
    write: ({ p, ctx, img2img }) =>
      orNull(img2img && !!ctx.inpaint && p.mask_blur_x === p.mask_blur_y, p.mask_blur_x),
    read: ({ d, p }) => {
      const blur = int(d, 'Mask blur');
      if (blur !== undefined) {
        p.mask_blur = blur;
        p.mask_blur_x = blur;
        p.mask_blur_y = blur;
      }
    },
  },
  {
    key: 'Mask blur x',
    write: ({ p, ctx, img2img }) =>
      orNull(img2img && !!ctx.inpaint && p.mask_blur_x !== p.mask_blur_y, p.mask_blur_x),
    read: ({ d, p }) => {
      if (int(d, 'Mask blur') === undefined) set(p, 'mask_blur_x', int(d, 'Mask blur x'));
    },
  },
  {
    key: 'Mask blur y',
    write: ({ p, ctx, img2img }) =>
      orNull(img2img && !!ctx.inpaint && p.mask_blur_x !== p.mask_blur_y, p.mask_blur_y),
    read: ({ d, p }) => {
      if (int(d, 'Mask blur') === undefined) set(p, 'mask_blur_y', int(d, 'Mask blur y'));
    },
  },
  {
    key: 'Mask mode',
    write: ({ p, ctx, img2img }) =>
      orNull(img2img && !!ctx.inpaint && p.inpainting_mask_invert === 1, 'Inpaint not masked'),
    read: ({ d, p }) => {
      const v = infotextStr(d, 'Mask mode');
      if (v !== undefined) p.inpainting_mask_invert = v === 'Inpaint not masked' ? 1 : 0;
    },
  },
  {
    key: 'Masked content',
    write: ({ p, ctx, img2img }) =>
      orNull(img2img && !!ctx.inpaint && p.inpainting_fill !== 1, MASKED_CONTENT[p.inpainting_fill]),
    read: ({ d, p }) => {
      const fill = MASKED_CONTENT.indexOf(
        infotextStr(d, 'Masked content') as (typeof MASKED_CONTENT)[number],
      );
      if (fill >= 0) p.inpainting_fill = fill as GenerationParams['inpainting_fill'];
    },
  },
  {
    key: 'Inpaint area',
    write: ({ p, ctx, img2img }) => orNull(img2img && !!ctx.inpaint && p.inpaint_full_res, 'Only masked'),
    read: ({ d, p }) => {
      const area = infotextStr(d, 'Inpaint area');
      if (area !== undefined) p.inpaint_full_res = area === 'Only masked';
    },
  },
  {
    key: 'Masked area padding',
    write: ({ p, ctx, img2img }) =>
      orNull(img2img && !!ctx.inpaint && p.inpaint_full_res, p.inpaint_full_res_padding),
    read: ({ d, p }) => set(p, 'inpaint_full_res_padding', int(d, 'Masked area padding')),
  },
  {
    key: 'Noise multiplier',
    write: ({ p, img2img }) =>
      orNull(
        img2img && p.initial_noise_multiplier !== null && p.initial_noise_multiplier !== 1,
        p.initial_noise_multiplier,
      ),
    read: ({ d, p }) => set(p, 'initial_noise_multiplier', num(d, 'Noise multiplier')),
  },
  // SDXL refiner: written by the pipeline (only when the switch happened: the title "name [hash]"
  // and the fraction), read back here.
  {
    // A1111's apply_refiner records it on every model call while the setting is on, refiner or not.
    key: 'Refiner switch by sampling steps',
    write: ({ p }) => orNull(refinerSwitchByStepsOf(p), 'True'),
    // parseInfotext sets it (true) for A1111 < 1.8 infotexts with a Refiner: they switched by steps.
    read: ({ d, o }) => {
      const v = d['Refiner switch by sampling steps'];
      if (v === true || v === 'True') o.refiner_switch_by_sample_steps = true;
    },
  },
  {
    key: 'Hires refiner',
    read: ({ d, o }) => {
      const v = infotextStr(d, 'Hires refiner');
      if (v === 'first pass' || v === 'both passes') o.hires_fix_refiner_pass = v;
    },
  },
  {
    key: 'Refiner',
    read: ({ d, p }) => {
      const r = infotextStr(d, 'Refiner');
      if (r !== undefined && r !== '') set(p, 'refiner_checkpoint', r);
    },
  },
  { key: 'Refiner switch at', read: ({ d, p }) => set(p, 'refiner_switch_at', num(d, 'Refiner switch at')) },
  { key: 'Lora hashes', write: ({ ctx }) => ctx.loraHashes || null },
  { key: 'TI hashes', write: ({ ctx }) => ctx.tiHashes || null },
  {
    key: 'Emphasis',
    // A1111 (sd_hijack_clip) records a non-default emphasis when a prompt has brackets to weigh.
    write: ({ p, ctx, hires }) => {
      const emphasis = ctx.emphasis ?? emphasisOf(p);
      const texts = [
        p.prompt,
        p.negative_prompt,
        hires ? p.hr_prompt : '',
        hires ? p.hr_negative_prompt : '',
      ];
      return orNull(
        emphasis !== 'Original' && texts.some((t) => t.includes('(') || t.includes('[')),
        emphasis,
      );
    },
    read: ({ d, o }) => {
      const v = infotextStr(d, 'Emphasis');
      if (v !== undefined) o.emphasis = v;
    },
  },
  {
    key: 'Styles array',
    read: ({ d, p }) => {
      const styles = d['Styles array'];
      if (Array.isArray(styles) && styles.every((s) => typeof s === 'string')) p.styles = [...styles];
    },
  },
];

/**
 * The infotext fields of one image, in A1111's order (JS objects keep insertion order for string
 * keys), defaults left out as A1111 does. `params.seed`/`subseed` must already be the values used
 * for this image, not -1.
 */
export function writeInfotextFields(
  params: GenerationParams,
  ctx: InfotextContext,
): Record<string, InfotextValue> {
  const s: WriteState = {
    p: params,
    ctx,
    resolved: resolveSampler(params.sampler_name, params.scheduler),
    hires: ctx.mode === 'txt2img' && params.enable_hr,
    img2img: ctx.mode === 'img2img',
  };
  const out: Record<string, InfotextValue> = {};
  for (const k of INFOTEXT_KEYS) {
    const v = k.write?.(s);
    if (v !== null && v !== undefined) out[k.key] = v;
  }
  return out;
}

/**
 * GenerationParams fields from the dict `parseInfotext` returns (A1111's parse_generation_parameters
 * shape: "Steps", "Size-1", "Prompt", …). Fields the infotext does not carry are absent, so the
 * result can be spread over defaults or over a front door's own flags. Malformed values are skipped,
 * never thrown: an infotext is hostile input.
 */
export function readInfotextFields(d: ParsedInfotext): Partial<GenerationParams> {
  const s: ReadState = {
    d,
    p: {},
    o: {},
    hires:
      'Denoising strength' in d &&
      ('Hires upscale' in d || 'Hires upscaler' in d || (int(d, 'Hires resize-1') ?? 0) > 0),
  };
  for (const k of INFOTEXT_KEYS) k.read?.(s);
  if (Object.keys(s.o).length > 0) s.p.override_settings = s.o;
  return s.p;
}
