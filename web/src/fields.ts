/**
 * The form's field table, derived from the request schema (src/params/fields.ts: one TypeBox schema
 * per GenerationParams field and interpreted `override_settings` key, with labels, UI defaults,
 * steps and infotext keys). Label, default, bounds, step, modes and infotext keys come from there, so
 * a field changed in the schema changes in the CLI, the API and the UI at once. What only a screen
 * needs is kept here, by field name: the slider range a person drags over (the schema bounds what
 * the API accepts: CFG −1000…1000, sides up to 8192), the words of a radio choice, and A1111's
 * per-screen defaults where they differ (denoising 0.7 under the hires fix, 0.75 in img2img).
 */
import {
  FIELDS as SCHEMA_FIELDS,
  SETTINGS as SCHEMA_SETTINGS,
  type FieldSpec,
} from '../../src/params/fields.ts';
import { MASKED_CONTENT, RESIZE_MODES } from '../../src/params/catalog.ts';

export type FieldKind = 'int' | 'number' | 'bool' | 'text' | 'choice';
export type Mode = 'txt2img' | 'img2img';

export interface UiField {
  key: string;
  label: string;
  kind: FieldKind;
  default: unknown;
  /** What the API accepts (the number box clamps to it). */
  min?: number;
  max?: number;
  /** Values are snapped to multiples of this (image sides). */
  multipleOf?: number;
  /** The slider's range, within [min, max]. */
  slider?: [number, number];
  step?: number;
  /** Modes the field belongs to (default both). */
  modes?: readonly Mode[];
  /** Infotext keys the value is read from (A1111's `parse_generation_parameters` names). */
  infotext?: readonly string[];
  /** For `choice`: the API values with their labels (server lists are passed to the control instead). */
  choices?: readonly { value: unknown; label: string }[];
  /** An `override_settings` key rather than a top-level request field. */
  setting?: boolean;
  /** A default that differs by screen. */
  modeDefaults?: Partial<Record<Mode, unknown>>;
}

/** What the screens add to the schema's view of a field. */
interface UiHint {
  slider?: [number, number];
  /** A choice whose list comes from the server (samplers, schedulers, upscalers). */
  serverChoice?: boolean;
  /** Radio words for the values, with the label of the group. */
  choices?: readonly { value: unknown; label: string }[];
  label?: string;
  modeDefaults?: Partial<Record<Mode, unknown>>;
}

const indexed = (labels: readonly string[]) => labels.map((label, value) => ({ value, label }));

/** The fields the screens show, in no particular order, with their UI-only hints. */
const UI_HINTS: Record<string, UiHint> = {
  prompt: {},
  negative_prompt: {},
  sampler_name: { serverChoice: true },
  scheduler: { serverChoice: true },
  steps: { slider: [1, 150] },
  cfg_scale: { slider: [1, 30] },
  width: { slider: [64, 2048] },
  height: { slider: [64, 2048] },
  n_iter: { slider: [1, 100] },
  batch_size: { slider: [1, 8] },
  seed: {},
  subseed: {},
  subseed_strength: {},
  seed_resize_from_w: { slider: [0, 2048] },
  seed_resize_from_h: { slider: [0, 2048] },
  tiling: {},
  CLIP_stop_at_last_layers: {},
  enable_hr: {},
  hr_upscaler: { serverChoice: true },
  hr_second_pass_steps: { slider: [0, 150] },
  hr_scale: { slider: [1, 4] },
  hr_resize_x: { slider: [0, 2048] },
  hr_resize_y: { slider: [0, 2048] },
  denoising_strength: { modeDefaults: { txt2img: 0.7 } },
  resize_mode: { choices: indexed(RESIZE_MODES) },
  mask_blur: { slider: [0, 64] },
  inpainting_fill: { choices: indexed(MASKED_CONTENT) },
  inpaint_full_res: {
    label: 'Inpaint area',
    choices: [
      { value: false, label: 'Whole picture' },
      { value: true, label: 'Only masked' },
    ],
  },
  inpaint_full_res_padding: { slider: [0, 256] },
  inpainting_mask_invert: {
    label: 'Mask mode',
    choices: [
      { value: 0, label: 'Inpaint masked' },
      { value: 1, label: 'Inpaint not masked' },
    ],
  },
};

interface JsonSchema {
  type?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  multipleOf?: number;
  const?: unknown;
  anyOf?: JsonSchema[];
}

/** The schema without its `| null` (null = "the setting's default"), and the literals of a union. */
function unwrap(schema: JsonSchema): { base: JsonSchema; literals: unknown[] | null } {
  if (!schema.anyOf) return { base: schema, literals: null };
  const members = schema.anyOf.filter((m) => m.type !== 'null');
  if (members.length && members.every((m) => 'const' in m)) {
    return { base: { ...members[0], default: schema.default }, literals: members.map((m) => m.const) };
  }
  return { base: { ...members[0], default: members[0].default ?? schema.default }, literals: null };
}

function kindOf(base: JsonSchema, literals: unknown[] | null, hint: UiHint): FieldKind {
  if (hint.serverChoice || hint.choices || literals) return 'choice';
  switch (base.type) {
    case 'integer':
      return 'int';
    case 'number':
      return 'number';
    case 'boolean':
      return 'bool';
    default:
      return 'text';
  }
}

export function uiField(key: string, spec: FieldSpec, hint: UiHint, setting: boolean): UiField {
  const schema = spec.schema as unknown as JsonSchema;
  const { base, literals } = unwrap(schema);
  const kind = kindOf(base, literals, hint);
  const def = spec.uiDefault ?? base.default ?? schema.default;
  const f: UiField = {
    key,
    label: hint.label ?? spec.label,
    kind,
    default: def === null ? (base.minimum ?? 0) : def,
    modes: spec.modes as readonly Mode[] | undefined,
    infotext: spec.infotext,
    setting: setting || undefined,
    modeDefaults: hint.modeDefaults,
  };
  if (kind === 'int' || kind === 'number') {
    f.min = base.minimum;
    f.max = base.maximum;
    f.multipleOf = base.multipleOf;
    f.step = spec.step ?? base.multipleOf ?? (kind === 'int' ? 1 : undefined);
    f.slider = hint.slider ?? (f.min !== undefined && f.max !== undefined ? [f.min, f.max] : undefined);
  }
  if (hint.choices) f.choices = hint.choices;
  else if (literals) f.choices = literals.map((v) => ({ value: v, label: String(v) }));
  return f;
}

const SPECS: Record<string, FieldSpec> = SCHEMA_FIELDS as unknown as Record<string, FieldSpec>;
const SETTING_SPECS: Record<string, FieldSpec> = SCHEMA_SETTINGS as unknown as Record<string, FieldSpec>;

export const FIELD_LIST: readonly UiField[] = Object.entries(UI_HINTS).map(([key, hint]) => {
  const spec = SPECS[key] ?? SETTING_SPECS[key];
  if (!spec) throw new Error(`the request schema has no field "${key}" (src/params/fields.ts)`);
  return uiField(key, spec, hint, !SPECS[key]);
});

export const FIELDS: ReadonlyMap<string, UiField> = new Map(FIELD_LIST.map((f) => [f.key, f]));

export function field(key: string): UiField {
  const f = FIELDS.get(key);
  if (!f) throw new Error(`no form field "${key}"`);
  return f;
}
