/**
 * Form state ↔ API request. The form holds one value per field of the field table (fields.ts), by the
 * request's own field names; `toRequest` turns it into an A1111 /txt2img or /img2img body, and
 * `fromInfotext` turns the `parameters` of /png-info (A1111's parse_generation_parameters dict) back
 * into form values.
 */
import { paramsFromInfotext } from '../../src/infotext/infotext-fields.ts';
import { FIELD_LIST, type Mode, type UiField } from './fields.ts';

export type FormState = Record<string, unknown>;

export function fieldsFor(mode: Mode): UiField[] {
  return FIELD_LIST.filter((f) => !f.modes || f.modes.includes(mode));
}

export function defaultsFor(mode: Mode): FormState {
  const state: FormState = { styles: [] };
  for (const f of fieldsFor(mode)) state[f.key] = f.modeDefaults?.[mode] ?? f.default;
  return state;
}

/** A number input's value clamped and rounded as its field says (sizes to multiples of 8). */
export function normalise(f: UiField, value: unknown): unknown {
  switch (f.kind) {
    case 'int':
    case 'number': {
      let n = typeof value === 'number' ? value : Number(String(value).trim());
      if (!Number.isFinite(n)) return f.default;
      if (f.kind === 'int') n = Math.round(n);
      if (f.multipleOf && n > 0) n = Math.max(f.multipleOf, Math.round(n / f.multipleOf) * f.multipleOf);
      if (f.min !== undefined && n < f.min) n = f.min;
      if (f.max !== undefined && n > f.max) n = f.max;
      return n;
    }
    case 'bool':
      return value === true || value === 'true' || value === 'True';
    case 'text':
      return String(value ?? '');
    case 'choice': {
      if (!f.choices) return String(value ?? f.default);
      const hit = f.choices.find((c) => c.value === value || String(c.value) === String(value));
      return hit ? hit.value : f.default;
    }
  }
}

/** The request body for `mode` from a form state (images are added by the caller). */
export function toRequest(mode: Mode, state: FormState): Record<string, unknown> {
  const req: Record<string, unknown> = {};
  const overrides: Record<string, unknown> = {};
  for (const f of fieldsFor(mode)) {
    const v = normalise(f, state[f.key] ?? f.modeDefaults?.[mode] ?? f.default);
    if (f.setting) overrides[f.key] = v;
    else req[f.key] = v;
  }
  if (Array.isArray(state.styles) && state.styles.length) req.styles = state.styles;
  if (mode === 'txt2img' && !req.enable_hr) {
    // Without the hires fix A1111 leaves denoising_strength out of the txt2img infotext; send its default.
    delete req.denoising_strength;
  }
  req.override_settings = overrides;
  // What a person at the UI expects: the images are saved under outputs/ as the A1111 UI saves them.
  req.save_images = true;
  req.send_images = true;
  return req;
}

/**
 * Form values from an infotext's parsed parameters (the `parameters` of /png-info: A1111's
 * `parse_generation_parameters` dict), read with the same rules as every other front door
 * (infotext/infotext-fields.ts `paramsFromInfotext`: A1111's paste rules). Only the fields the
 * infotext carries are returned, so the rest of the form keeps its values; on txt2img the hires fix
 * follows the infotext.
 */
export function fromInfotext(params: Record<string, unknown>, mode: Mode): FormState {
  const p = paramsFromInfotext(params);
  const out = fromRequest(p as Record<string, unknown>, mode);
  if (mode === 'txt2img') out.enable_hr = Boolean(p.enable_hr);
  return out;
}

/** Width and height snapped to multiples of 8 within bounds, as the size inputs do on blur. */
export function snapSize(value: number, f: UiField): number {
  return normalise(f, value) as number;
}

/**
 * Form values from a request body that was sent (a result's "send to"): every field of `mode` the
 * request has, `override_settings` included.
 */
export function fromRequest(req: Record<string, unknown>, mode: Mode): FormState {
  const out: FormState = {};
  const overrides = (req.override_settings ?? {}) as Record<string, unknown>;
  for (const f of fieldsFor(mode)) {
    const v = f.setting ? overrides[f.key] : req[f.key];
    if (v !== undefined && v !== null) out[f.key] = normalise(f, v);
  }
  if (Array.isArray(req.styles)) out.styles = req.styles;
  return out;
}
