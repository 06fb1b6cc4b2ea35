/**
 * The request bodies of A1111's /sdapi/v1/txt2img and /img2img as one field table (name, JSON type,
 * A1111 1.10.1 default, in A1111's order), from which the JSON Schemas (validation and OpenAPI) and
 * the `parameters` echo of the responses are both derived. Every field is optional and nullable
 * and unknown fields are accepted and ignored, as A1111's pydantic v1 models do.
 *
 * The table stays because A1111's echo differs from our internal defaults (sampler_name null,
 * denoising_strength null for txt2img, …); the generation fields' schemas come from params/.
 */
import { Type, type TSchema } from 'typebox';
import { Img2ImgRequestSchema, Txt2ImgRequestSchema } from '../../params/schema.js';

type Kind = 'str' | 'int' | 'num' | 'bool' | 'strlist' | 'obj' | 'list' | 'seed' | 'intbool';
type Field = readonly [name: string, kind: Kind, default_: unknown];

/** Fields of A1111's StableDiffusionProcessing base class, in its order. */
const BASE: readonly Field[] = [
  ['prompt', 'str', ''],
  ['negative_prompt', 'str', ''],
  ['styles', 'strlist', null],
  ['seed', 'seed', -1],
  ['subseed', 'seed', -1],
  ['subseed_strength', 'num', 0],
  ['seed_resize_from_h', 'int', -1],
  ['seed_resize_from_w', 'int', -1],
  ['sampler_name', 'str', null],
  ['scheduler', 'str', null],
  ['batch_size', 'int', 1],
  ['n_iter', 'int', 1],
  ['steps', 'int', 50],
  ['cfg_scale', 'num', 7.0],
  ['width', 'int', 512],
  ['height', 'int', 512],
  ['restore_faces', 'bool', null],
  ['tiling', 'bool', null],
  ['do_not_save_samples', 'bool', false],
  ['do_not_save_grid', 'bool', false],
  ['eta', 'num', null],
  ['denoising_strength', 'num', null],
  ['s_min_uncond', 'num', null],
  ['s_churn', 'num', null],
  ['s_tmax', 'num', null],
  ['s_tmin', 'num', null],
  ['s_noise', 'num', null],
  ['override_settings', 'obj', null],
  ['override_settings_restore_afterwards', 'bool', true],
  ['refiner_checkpoint', 'str', null],
  ['refiner_switch_at', 'num', null],
  ['disable_extra_networks', 'bool', false],
  ['firstpass_image', 'str', null],
  ['comments', 'obj', null],
];

const TXT2IMG_ONLY: readonly Field[] = [
  ['enable_hr', 'bool', false],
  ['firstphase_width', 'int', 0],
  ['firstphase_height', 'int', 0],
  ['hr_scale', 'num', 2.0],
  ['hr_upscaler', 'str', null],
  ['hr_second_pass_steps', 'int', 0],
  ['hr_resize_x', 'int', 0],
  ['hr_resize_y', 'int', 0],
  ['hr_checkpoint_name', 'str', null],
  ['hr_sampler_name', 'str', null],
  ['hr_scheduler', 'str', null],
  ['hr_prompt', 'str', ''],
  ['hr_negative_prompt', 'str', ''],
];

const IMG2IMG_ONLY: readonly Field[] = [
  ['init_images', 'strlist', null],
  ['resize_mode', 'int', 0],
  ['image_cfg_scale', 'num', null],
  ['mask', 'str', null],
  ['mask_blur_x', 'int', 4],
  ['mask_blur_y', 'int', 4],
  ['mask_blur', 'int', null],
  ['mask_round', 'bool', true],
  ['inpainting_fill', 'int', 0],
  ['inpaint_full_res', 'bool', true],
  ['inpaint_full_res_padding', 'int', 0],
  ['inpainting_mask_invert', 'intbool', 0],
  ['initial_noise_multiplier', 'num', null],
  ['latent_mask', 'str', null],
];

/** Keys the API adds to both bodies. */
const API_EXTRAS: readonly Field[] = [
  ['force_task_id', 'str', null],
  ['sampler_index', 'str', 'Euler'],
  ['script_name', 'str', null],
  ['script_args', 'list', []],
  ['send_images', 'bool', true],
  ['save_images', 'bool', false],
  ['alwayson_scripts', 'obj', {}],
  ['infotext', 'str', null],
];

const IMG2IMG_EXTRAS: readonly Field[] = [['include_init_images', 'bool', false]];

export const TXT2IMG_FIELDS: readonly Field[] = [...BASE, ...TXT2IMG_ONLY, ...API_EXTRAS];
export const IMG2IMG_FIELDS: readonly Field[] = [...BASE, ...IMG2IMG_ONLY, ...API_EXTRAS, ...IMG2IMG_EXTRAS];

/** JSON Schema of a field of this table (the API-only ones; the generation fields come from params/). */
function jsonType(kind: Kind): TSchema {
  const t = {
    str: 'string',
    int: 'integer',
    num: 'number',
    bool: 'boolean',
    intbool: ['integer', 'boolean'],
    seed: ['integer', 'string'],
    strlist: 'array',
    list: 'array',
    obj: 'object',
  }[kind];
  return Type.Unsafe({
    type: [...(Array.isArray(t) ? t : [t]), 'null'],
    ...(kind === 'strlist' && { items: { type: 'string' } }),
  });
}

/**
 * The OpenAPI body of a route: the generation fields from params/ (one schema with the CLI, the
 * UI and the validator) plus the API-only keys of this table. Bodies are validated by
 * `validateGenerationRequest`, not by this schema (see routes/generation.ts).
 */
function bodySchema(base: TSchema, fields: readonly Field[], title: string): TSchema {
  const props: Record<string, TSchema> = {
    ...(base as unknown as { properties: Record<string, TSchema> }).properties,
  };
  for (const [name, kind, def] of fields) {
    if (props[name]) continue;
    props[name] = Type.Optional(Type.Unsafe({ ...jsonType(kind), ...(def !== null && { default: def }) }));
  }
  return Type.Object(props, { additionalProperties: true, title });
}

export const Txt2ImgBody = bodySchema(
  Txt2ImgRequestSchema,
  TXT2IMG_FIELDS,
  'StableDiffusionProcessingTxt2Img',
);
export const Img2ImgBody = bodySchema(
  Img2ImgRequestSchema,
  IMG2IMG_FIELDS,
  'StableDiffusionProcessingImg2Img',
);

export type A1111Body = Record<string, unknown>;

/** The request echoed as A1111's `parameters`: every field of the table, the body's value or its default. */
export function echoParameters(fields: readonly Field[], body: A1111Body): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, , def] of fields) {
    const v = body[name];
    out[name] = v === undefined ? (def && typeof def === 'object' ? structuredClone(def) : def) : v;
  }
  return out;
}

/** The generation response (both routes). */
export const GenerationResponse = Type.Object(
  {
    images: Type.Array(Type.String(), {
      description: 'base64 PNGs with their infotext in the parameters chunk',
    }),
    parameters: Type.Record(Type.String(), Type.Unknown()),
    info: Type.String({ description: 'JSON text: seed, all_seeds, infotexts, …' }),
  },
  { title: 'TextToImageResponse' },
);
