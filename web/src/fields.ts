/**
 * The form's field table: for each request field the UI shows, its label, bounds, step, the default
 * a person at A1111's UI gets, and the infotext keys it is read back from (PNG info → form).
 *
 * This is the UI's view of the request schema (issue 13, src/params/): the form controls take their
 * label/min/max/step/default from here by the request's field name, never from literals beside them.
 * Until src/params/fields.ts (the TypeBox table with UI hints) is on main this is a local list with the
 * same names and A1111 v1.10.1 values; `fromSchema` in schema-fields.ts replaces it when it lands.
 */

export type FieldKind = 'int' | 'number' | 'bool' | 'text' | 'choice';
export type Mode = 'txt2img' | 'img2img';

export interface UiField {
  key: string;
  label: string;
  kind: FieldKind;
  default: unknown;
  min?: number;
  max?: number;
  step?: number;
  /** Modes the field belongs to (default both). */
  modes?: readonly Mode[];
  /** Infotext keys the value is read from (A1111's `parse_generation_parameters` names). */
  infotext?: readonly string[];
  /** For `choice`: the API values with their labels (lists from the server are filled in at run time). */
  choices?: readonly { value: unknown; label: string }[];
  /** An `override_settings` key rather than a top-level request field. */
  setting?: boolean;
  /** A default that differs by screen (A1111: denoising 0.7 for hires fix, 0.75 for img2img). */
  modeDefaults?: Partial<Record<Mode, unknown>>;
}

const T2I = ['txt2img'] as const;
const I2I = ['img2img'] as const;

export const FIELD_LIST: readonly UiField[] = [
  { key: 'prompt', label: 'Prompt', kind: 'text', default: '', infotext: ['Prompt'] },
  {
    key: 'negative_prompt',
    label: 'Negative prompt',
    kind: 'text',
    default: '',
    infotext: ['Negative prompt'],
  },
  {
    key: 'sampler_name',
    label: 'Sampling method',
    kind: 'choice',
    default: 'DPM++ 2M',
    infotext: ['Sampler'],
  },
  {
    key: 'scheduler',
    label: 'Schedule type',
    kind: 'choice',
    default: 'Automatic',
    infotext: ['Schedule type'],
  },
  {
    key: 'steps',
    label: 'Sampling steps',
    kind: 'int',
    default: 20,
    min: 1,
    max: 150,
    step: 1,
    infotext: ['Steps'],
  },
  {
    key: 'cfg_scale',
    label: 'CFG scale',
    kind: 'number',
    default: 7,
    min: 1,
    max: 30,
    step: 0.5,
    infotext: ['CFG scale'],
  },
  {
    key: 'width',
    label: 'Width',
    kind: 'int',
    default: 512,
    min: 64,
    max: 2048,
    step: 8,
    infotext: ['Size-1'],
  },
  {
    key: 'height',
    label: 'Height',
    kind: 'int',
    default: 512,
    min: 64,
    max: 2048,
    step: 8,
    infotext: ['Size-2'],
  },
  { key: 'n_iter', label: 'Batch count', kind: 'int', default: 1, min: 1, max: 100, step: 1 },
  { key: 'batch_size', label: 'Batch size', kind: 'int', default: 1, min: 1, max: 8, step: 1 },
  {
    key: 'seed',
    label: 'Seed',
    kind: 'int',
    default: -1,
    min: -1,
    max: 4294967295,
    step: 1,
    infotext: ['Seed'],
  },
  {
    key: 'subseed',
    label: 'Variation seed',
    kind: 'int',
    default: -1,
    min: -1,
    max: 4294967295,
    step: 1,
    infotext: ['Variation seed'],
  },
  {
    key: 'subseed_strength',
    label: 'Variation strength',
    kind: 'number',
    default: 0,
    min: 0,
    max: 1,
    step: 0.01,
    infotext: ['Variation seed strength'],
  },
  {
    key: 'seed_resize_from_w',
    label: 'Resize seed from width',
    kind: 'int',
    default: 0,
    min: 0,
    max: 2048,
    step: 8,
    infotext: ['Seed resize from-1'],
  },
  {
    key: 'seed_resize_from_h',
    label: 'Resize seed from height',
    kind: 'int',
    default: 0,
    min: 0,
    max: 2048,
    step: 8,
    infotext: ['Seed resize from-2'],
  },
  { key: 'tiling', label: 'Tiling', kind: 'bool', default: false, infotext: ['Tiling'] },
  {
    key: 'CLIP_stop_at_last_layers',
    label: 'Clip skip',
    kind: 'int',
    default: 1,
    min: 1,
    max: 12,
    step: 1,
    infotext: ['Clip skip'],
    setting: true,
  },
  { key: 'enable_hr', label: 'Hires. fix', kind: 'bool', default: false, modes: T2I },
  {
    key: 'hr_upscaler',
    label: 'Upscaler',
    kind: 'choice',
    default: 'Latent',
    modes: T2I,
    infotext: ['Hires upscaler'],
  },
  {
    key: 'hr_second_pass_steps',
    label: 'Hires steps',
    kind: 'int',
    default: 0,
    min: 0,
    max: 150,
    step: 1,
    modes: T2I,
    infotext: ['Hires steps'],
  },
  {
    key: 'hr_scale',
    label: 'Upscale by',
    kind: 'number',
    default: 2,
    min: 1,
    max: 4,
    step: 0.05,
    modes: T2I,
    infotext: ['Hires upscale'],
  },
  {
    key: 'hr_resize_x',
    label: 'Resize width to',
    kind: 'int',
    default: 0,
    min: 0,
    max: 2048,
    step: 8,
    modes: T2I,
    infotext: ['Hires resize-1'],
  },
  {
    key: 'hr_resize_y',
    label: 'Resize height to',
    kind: 'int',
    default: 0,
    min: 0,
    max: 2048,
    step: 8,
    modes: T2I,
    infotext: ['Hires resize-2'],
  },
  {
    key: 'denoising_strength',
    label: 'Denoising strength',
    kind: 'number',
    default: 0.7,
    modeDefaults: { img2img: 0.75 },
    min: 0,
    max: 1,
    step: 0.01,
    infotext: ['Denoising strength'],
  },
  {
    key: 'resize_mode',
    label: 'Resize mode',
    kind: 'choice',
    default: 0,
    modes: I2I,
    choices: [
      { value: 0, label: 'Just resize' },
      { value: 1, label: 'Crop and resize' },
      { value: 2, label: 'Resize and fill' },
      { value: 3, label: 'Just resize (latent upscale)' },
    ],
  },
  {
    key: 'mask_blur',
    label: 'Mask blur',
    kind: 'int',
    default: 4,
    min: 0,
    max: 64,
    step: 1,
    modes: I2I,
    infotext: ['Mask blur'],
  },
  {
    key: 'inpainting_fill',
    label: 'Masked content',
    kind: 'choice',
    default: 1,
    modes: I2I,
    infotext: ['Masked content'],
    choices: [
      { value: 0, label: 'fill' },
      { value: 1, label: 'original' },
      { value: 2, label: 'latent noise' },
      { value: 3, label: 'latent nothing' },
    ],
  },
  {
    key: 'inpaint_full_res',
    label: 'Inpaint area',
    kind: 'choice',
    default: false,
    modes: I2I,
    choices: [
      { value: false, label: 'Whole picture' },
      { value: true, label: 'Only masked' },
    ],
  },
  {
    key: 'inpaint_full_res_padding',
    label: 'Only masked padding, pixels',
    kind: 'int',
    default: 32,
    min: 0,
    max: 256,
    step: 4,
    modes: I2I,
    infotext: ['Masked area padding'],
  },
  {
    key: 'inpainting_mask_invert',
    label: 'Mask mode',
    kind: 'choice',
    default: 0,
    modes: I2I,
    choices: [
      { value: 0, label: 'Inpaint masked' },
      { value: 1, label: 'Inpaint not masked' },
    ],
  },
];

export const FIELDS: ReadonlyMap<string, UiField> = new Map(FIELD_LIST.map((f) => [f.key, f]));

export function field(key: string): UiField {
  const f = FIELDS.get(key);
  if (!f) throw new Error(`no form field "${key}"`);
  return f;
}
