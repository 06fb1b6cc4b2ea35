/**
 * Defaults and validation, read off the field table's schemas (type, bounds, multipleOf, choices):
 * `withDefaults` for every front door, `validateGenerationRequest` for API bodies (errors name the
 * JSON field), `validateParams` for a filled-in GenerationParams. Messages name what the user typed:
 * the JSON field by default, or whatever `nameOf` says (the CLI passes its flags). No Node imports.
 */
import type { TSchema } from 'typebox';
import { UserError } from '../util/errors.js';
import { IMAGE_UPSCALERS, LATENT_UPSCALE_MODES, LIMITS, checkScheduler, resolveSampler } from './catalog.js';
import { FIELDS, SETTINGS, specOf, type FieldSpec, type GenerationMode } from './fields.js';
import type { GenerationParams, OverrideSettings } from './schema.js';

/** One problem with a request: the field as the JSON names it ("steps", "override_settings.X"). */
export interface FieldError {
  field: string;
  message: string;
}

/** A UserError that lists every bad field; its message is the first one's. */
export class ParamsError extends UserError {
  constructor(readonly errors: FieldError[]) {
    super(errors[0]?.message ?? 'invalid generation parameters');
    this.name = 'ParamsError';
  }
}

export interface WithDefaultsOptions {
  /**
   * "error" (default): an unknown sampler is a UserError. "fallback": A1111's API behaviour — an
   * unknown name silently becomes "DPM++ 2M" (for drop-in API compatibility).
   */
  unknownSampler?: 'error' | 'fallback';
  /**
   * The name of a field in messages, given its JSON path ("steps", "override_settings.emphasis");
   * undefined = the JSON path. The CLI maps the fields its flags set to the flags.
   */
  nameOf?: (path: string) => string | undefined;
}

type Kind =
  | { kind: 'integer' | 'number'; min: number; max: number; multipleOf?: number }
  | { kind: 'enum'; values: readonly (string | number)[] }
  | { kind: 'string'; maxLength?: number }
  | { kind: 'boolean' | 'array' | 'object' };

interface FieldKind {
  nullable: boolean;
  type: Kind;
}

const kindCache = new Map<TSchema, FieldKind>();

/** What the validator needs of a schema: its type, bounds, and whether null is a value. */
export function fieldKind(schema: TSchema): FieldKind {
  const cached = kindCache.get(schema);
  if (cached) return cached;
  let base = schema as Record<string, unknown>;
  let nullable = false;
  const anyOf = base.anyOf as Record<string, unknown>[] | undefined;
  if (anyOf && anyOf.some((s) => s.type === 'null')) {
    nullable = true;
    const rest = anyOf.filter((s) => s.type !== 'null');
    base = rest.length === 1 ? rest[0]! : { anyOf: rest };
  }
  let type: Kind;
  const members = base.anyOf as Record<string, unknown>[] | undefined;
  if (members && members.every((s) => 'const' in s)) {
    type = { kind: 'enum', values: members.map((s) => s.const as string | number) };
  } else if (base.type === 'integer' || base.type === 'number') {
    type = {
      kind: base.type,
      min: (base.minimum as number | undefined) ?? -Infinity,
      max: (base.maximum as number | undefined) ?? Infinity,
      multipleOf: base.multipleOf as number | undefined,
    };
  } else if (base.type === 'string') {
    type = { kind: 'string', maxLength: base.maxLength as number | undefined };
  } else if (base.type === 'boolean' || base.type === 'array' || base.type === 'object') {
    type = { kind: base.type };
  } else {
    throw new Error(`params schema: unsupported field schema ${JSON.stringify(schema)}`);
  }
  const k = { nullable, type };
  kindCache.set(schema, k);
  return k;
}

/** The A1111 API defaults of every field (from the schemas' `default`). */
export function defaultParams(): GenerationParams {
  const p: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(FIELDS) as [string, FieldSpec][]) {
    const d = (spec.schema as { default?: unknown }).default;
    p[key] = Array.isArray(d) ? [...d] : d !== null && typeof d === 'object' ? { ...d } : d;
  }
  return p as GenerationParams;
}

/** The A1111 web UI's defaults where they differ from the API's (what a person expects). */
export function uiDefaults(): Partial<GenerationParams> {
  const p: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(FIELDS) as [string, FieldSpec][]) {
    if (spec.uiDefault !== undefined) p[key] = spec.uiDefault;
  }
  return p as Partial<GenerationParams>;
}

class Problems {
  readonly errors: FieldError[] = [];
  constructor(private readonly nameOf?: (path: string) => string | undefined) {}

  /** How the user named the field: a flag, or the JSON path with its hint. */
  name(path: string): string {
    const named = this.nameOf?.(path);
    if (named !== undefined) return named;
    const hint = specOf(path)?.hint;
    return hint ? `${path} (${hint})` : path;
  }

  add(path: string, message: string): void {
    if (!this.errors.some((e) => e.field === path)) this.errors.push({ field: path, message });
  }

  /** Runs a check that throws UserError (sampler resolution) and records its message. */
  run(path: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      this.add(path, e.message);
    }
  }
}

function fmt(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function toBool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  if (v === 'true' || v === 'True') return true;
  if (v === 'false' || v === 'False') return false;
  return undefined;
}

function toNumber(v: unknown): number {
  return typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
}

/** JSON value → field value: numeric strings to numbers, 0/1 and "true" to booleans (as pydantic). */
function coerce(path: string, spec: FieldSpec, v: unknown, pr: Problems): unknown {
  const { type } = fieldKind(spec.schema);
  const name = pr.name(path);
  switch (type.kind) {
    case 'integer':
    case 'number': {
      const n = toNumber(v);
      if (Number.isNaN(n) && type.kind === 'integer')
        pr.add(path, `${name} must be a number (got ${fmt(v)})`);
      return n;
    }
    case 'enum': {
      if (type.values.every((x) => typeof x === 'number')) {
        // inpainting_mask_invert also arrives as a boolean.
        const b = typeof v === 'boolean' ? (v ? 1 : 0) : toNumber(v);
        return b;
      }
      return v;
    }
    case 'boolean': {
      const b = toBool(v);
      if (b === undefined) pr.add(path, `${name} must be true or false (got ${fmt(v)})`);
      return b ?? v;
    }
    case 'string':
      if (typeof v !== 'string') pr.add(path, `${name} must be a string (got ${fmt(v)})`);
      return v;
    case 'array':
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
        pr.add(path, `${name} must be a list of ${path === 'styles' ? 'style names' : 'strings'}`);
        return v;
      }
      return [...v];
    case 'object':
      if (typeof v !== 'object' || v === null || Array.isArray(v)) pr.add(path, `${name} must be an object`);
      return v;
  }
}

/** Checks one value against its schema's bounds and choices; records a message naming the field. */
function checkValue(path: string, spec: FieldSpec, v: unknown, pr: Problems): void {
  const { nullable, type } = fieldKind(spec.schema);
  if (v === null && nullable) return;
  if (pr.errors.some((e) => e.field === path)) return;
  const name = pr.name(path);
  switch (type.kind) {
    case 'integer': {
      const n = v as number;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < type.min || n > type.max) {
        pr.add(path, `${name} must be a whole number from ${type.min} to ${type.max} (got ${fmt(v)})`);
      } else if (type.multipleOf && n % type.multipleOf !== 0) {
        const m = type.multipleOf;
        pr.add(
          path,
          `${name} must be a multiple of ${m} (got ${n}); try ${Math.max(m, Math.round(n / m) * m)}`,
        );
      }
      return;
    }
    case 'number': {
      const n = v as number;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < type.min || n > type.max) {
        pr.add(path, `${name} must be ${type.min} to ${type.max} (got ${fmt(v)})`);
      }
      return;
    }
    case 'enum':
      if (!type.values.includes(v as string | number)) {
        pr.add(path, `${name} must be one of ${type.values.join(', ')} (got ${fmt(v)})`);
      }
      return;
    case 'string':
      if (typeof v !== 'string') pr.add(path, `${name} must be a string (got ${fmt(v)})`);
      else if (type.maxLength !== undefined && v.length > type.maxLength) {
        pr.add(path, `${name} is longer than ${type.maxLength} characters`);
      } else if (spec.choices && !spec.choices.includes(v)) {
        pr.add(path, `${name} must be ${spec.choices.map((c) => `"${c}"`).join(', ')} (got ${fmt(v)})`);
      }
      return;
    default:
      return;
  }
}

/** A setting's value as given → its value (numbers from numeric strings, choices in their case). */
function coerceSetting(spec: FieldSpec, v: unknown): unknown {
  const { type } = fieldKind(spec.schema);
  if (type.kind === 'integer' || type.kind === 'number') return toNumber(v);
  if (type.kind === 'string' && spec.choices && typeof v === 'string') {
    return spec.choices.find((c) => c.toLowerCase() === v.trim().toLowerCase()) ?? v;
  }
  return v;
}

function collect(
  input: unknown,
  options: WithDefaultsOptions,
): { params?: GenerationParams; errors: FieldError[] } {
  const pr = new Problems(options.nameOf);
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { errors: [{ field: '', message: 'generation parameters must be an object' }] };
  }
  const src = input as Record<string, unknown>;
  const p = defaultParams() as unknown as Record<string, unknown>;
  for (const [key, spec] of Object.entries(FIELDS) as [string, FieldSpec][]) {
    const v = src[key];
    if (v === undefined || v === null) continue;
    // A1111 get_fixed_seed: "" or a non-numeric string means random.
    if ((key === 'seed' || key === 'subseed') && typeof v === 'string' && !/^\s*-?\d+\s*$/.test(v)) {
      p[key] = -1;
      continue;
    }
    p[key] = coerce(key, spec, v, pr);
  }
  if (
    (src.sampler_name === undefined || src.sampler_name === null) &&
    typeof src.sampler_index === 'string'
  ) {
    p.sampler_name = src.sampler_index;
  }
  const params = p as unknown as GenerationParams;
  if (options.unknownSampler === 'fallback' && typeof params.sampler_name === 'string') {
    try {
      resolveSampler(params.sampler_name, 'Automatic');
    } catch {
      params.sampler_name = 'DPM++ 2M';
    }
  }
  if (typeof params.mask_blur === 'number') {
    params.mask_blur_x = params.mask_blur;
    params.mask_blur_y = params.mask_blur;
  }
  if (typeof params.override_settings === 'object' && params.override_settings !== null) {
    const o: OverrideSettings = { ...params.override_settings };
    for (const [key, spec] of Object.entries(SETTINGS) as [string, FieldSpec][]) {
      if (o[key] === null) delete o[key];
      else if (o[key] !== undefined) o[key] = coerceSetting(spec, o[key]);
    }
    params.override_settings = o;
  }
  checkParams(params, pr);
  return pr.errors.length ? { errors: pr.errors } : { params, errors: [] };
}

/**
 * Fills every field missing or null in `input` with A1111's default and validates the result.
 * Unknown keys are ignored (as A1111's pydantic models do); legacy `sampler_index` is honoured.
 * Throws a ParamsError (a UserError) naming the first bad field.
 */
export function withDefaults(
  input: Partial<GenerationParams> | Record<string, unknown> = {},
  options: WithDefaultsOptions = {},
): GenerationParams {
  const r = collect(input, options);
  if (!r.params) throw new ParamsError(r.errors);
  return r.params;
}

export type ValidationResult = { ok: true; params: GenerationParams } | { ok: false; errors: FieldError[] };

/**
 * An API body → GenerationParams with defaults, or every problem found, each naming its JSON field
 * ("steps", "override_settings.CLIP_stop_at_last_layers"). With `mode`, fields of the other mode
 * are ignored, as A1111's txt2img and img2img bodies do.
 */
export function validateGenerationRequest(
  body: unknown,
  options: WithDefaultsOptions & { mode?: GenerationMode } = {},
): ValidationResult {
  let input = body;
  if (options.mode && body !== null && typeof body === 'object' && !Array.isArray(body)) {
    // Fields of the other mode are not part of that endpoint's body: A1111 ignores them.
    const kept: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
      const spec = (FIELDS as Record<string, FieldSpec>)[k];
      if (!spec?.modes || spec.modes.includes(options.mode)) kept[k] = v;
    }
    input = kept;
  }
  const r = collect(input, options);
  return r.params ? { ok: true, params: r.params } : { ok: false, errors: r.errors };
}

/** Throws UserError naming the first field that A1111 would not accept or that we cannot run. */
export function validateParams(p: GenerationParams, options: Pick<WithDefaultsOptions, 'nameOf'> = {}): void {
  const pr = new Problems(options.nameOf);
  checkParams(p, pr);
  if (pr.errors.length) throw new ParamsError(pr.errors);
}

function checkParams(p: GenerationParams, pr: Problems): void {
  const rec = p as unknown as Record<string, unknown>;
  for (const [key, spec] of Object.entries(FIELDS) as [string, FieldSpec][]) {
    checkValue(key, spec, rec[key], pr);
  }
  const failed = (...fields: string[]) => pr.errors.some((e) => fields.includes(e.field));
  if (!failed('sampler_name', 'scheduler')) {
    pr.run('sampler_name', () =>
      resolveSampler(p.sampler_name, p.scheduler, pr.name('sampler_name'), pr.name('scheduler')),
    );
  }
  if (!failed('hr_sampler_name') && p.hr_sampler_name !== null && p.hr_sampler_name !== 'Use same sampler') {
    const hrSampler = p.hr_sampler_name;
    pr.run('hr_sampler_name', () => resolveSampler(hrSampler, 'Automatic', pr.name('hr_sampler_name')));
  }
  if (!failed('hr_scheduler') && p.hr_scheduler !== null && p.hr_scheduler !== 'Use same scheduler') {
    const hrScheduler = p.hr_scheduler;
    pr.run('hr_scheduler', () => checkScheduler(hrScheduler, pr.name('hr_scheduler')));
  }
  if (
    p.enable_hr &&
    !pr.errors.some((e) => e.field.startsWith('hr_') || e.field === 'width' || e.field === 'height')
  ) {
    if (!LATENT_UPSCALE_MODES.includes(p.hr_upscaler) && !IMAGE_UPSCALERS.includes(p.hr_upscaler)) {
      pr.add(
        'hr_upscaler',
        `${pr.name('hr_upscaler')} "${p.hr_upscaler}" is not available; use one of ${[...LATENT_UPSCALE_MODES, ...IMAGE_UPSCALERS].join(', ')}`,
      );
    } else {
      const { width, height } = hiresTargetSize(p);
      if (width > LIMITS.maxSide || height > LIMITS.maxSide) {
        pr.add(
          'hr_scale',
          `the hires fix target ${width}x${height} is larger than ${LIMITS.maxSide} pixels a side`,
        );
      }
    }
  }

  const o = p.override_settings;
  if (o === null || typeof o !== 'object') return;
  for (const [key, spec] of Object.entries(SETTINGS) as [string, FieldSpec][]) {
    const v = o[key];
    if (v === undefined) continue;
    const path = `override_settings.${key}`;
    const { type } = fieldKind(spec.schema);
    checkValue(path, spec, type.kind === 'integer' || type.kind === 'number' ? toNumber(v) : v, pr);
  }
}

export interface HiresTarget {
  /** Size the first pass is upscaled to (A1111 hr_upscale_to_x/y). */
  width: number;
  height: number;
  /** Latent columns/rows cropped afterwards when both hr_resize_x and hr_resize_y are given. */
  truncateX: number;
  truncateY: number;
}

/** The hires fix target size, as A1111's calculate_target_resolution. */
export function hiresTargetSize(p: GenerationParams): HiresTarget {
  const floorDiv = (a: number, b: number): number => Math.floor(a / b);
  if (p.hr_resize_x === 0 && p.hr_resize_y === 0) {
    return {
      width: Math.trunc(p.width * p.hr_scale),
      height: Math.trunc(p.height * p.hr_scale),
      truncateX: 0,
      truncateY: 0,
    };
  }
  if (p.hr_resize_y === 0) {
    return {
      width: p.hr_resize_x,
      height: floorDiv(p.hr_resize_x * p.height, p.width),
      truncateX: 0,
      truncateY: 0,
    };
  }
  if (p.hr_resize_x === 0) {
    return {
      width: floorDiv(p.hr_resize_y * p.width, p.height),
      height: p.hr_resize_y,
      truncateX: 0,
      truncateY: 0,
    };
  }
  // Both given: scale to cover the target keeping the aspect, then crop the overflow in latent space.
  let width: number;
  let height: number;
  if (p.width / p.height < p.hr_resize_x / p.hr_resize_y) {
    width = p.hr_resize_x;
    height = floorDiv(p.hr_resize_x * p.height, p.width);
  } else {
    width = floorDiv(p.hr_resize_y * p.width, p.height);
    height = p.hr_resize_y;
  }
  return {
    width,
    height,
    truncateX: floorDiv(width - p.hr_resize_x, 8),
    truncateY: floorDiv(height - p.hr_resize_y, 8),
  };
}
