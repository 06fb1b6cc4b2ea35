/**
 * The TypeBox schemas derived from the field table (fields.ts): the GenerationParams the pipeline
 * takes (every field present), and the request bodies of the API (every field optional and
 * nullable, as A1111's pydantic models; these are the OpenAPI schemas). No Node imports.
 */
import { Type, type Static, type TSchema } from 'typebox';
import { FIELDS, SETTINGS, type GenerationMode, type FieldSpec } from './fields.js';

type SettingsSchemas = {
  [K in keyof typeof SETTINGS]: ReturnType<typeof Type.Optional<(typeof SETTINGS)[K]['schema']>>;
};

function mapEntries<T extends Record<string, FieldSpec>, R>(
  table: T,
  fn: (spec: FieldSpec, key: string) => R,
): Record<string, R> {
  return Object.fromEntries(Object.entries(table).map(([k, spec]) => [k, fn(spec, k)]));
}

/** `override_settings`: the settings we interpret, typed; any other key is kept (A1111 accepts any). */
export const OverrideSettingsSchema = Type.Object(
  mapEntries(SETTINGS, (spec) => Type.Optional(spec.schema)) as SettingsSchemas,
  {
    additionalProperties: true,
    default: {},
    description: 'Settings applied to this job only (keys of /sdapi/v1/options).',
  },
);

export type OverrideSettings = Static<typeof OverrideSettingsSchema> & { [key: string]: unknown };

type ParamsSchemas = {
  [K in keyof typeof FIELDS]: K extends 'override_settings'
    ? typeof OverrideSettingsSchema
    : (typeof FIELDS)[K]['schema'];
};

/** The request as the pipeline takes it: every field present, A1111's defaults filled in. */
export const GenerationParamsSchema = Type.Object(
  mapEntries(FIELDS, (spec, key) =>
    key === 'override_settings' ? OverrideSettingsSchema : withTitle(spec),
  ) as ParamsSchemas,
  { additionalProperties: false },
);

export type GenerationParams = Omit<Static<typeof GenerationParamsSchema>, 'override_settings'> & {
  override_settings: OverrideSettings;
};

function withTitle(spec: FieldSpec): TSchema {
  return { ...spec.schema, title: spec.label };
}

/** A field as an API body takes it: optional, and null = absent (A1111's None). */
function requestField(spec: FieldSpec, key: string): TSchema {
  const schema = key === 'override_settings' ? OverrideSettingsSchema : withTitle(spec);
  const anyOf = (schema as { anyOf?: TSchema[] }).anyOf;
  const nullable = anyOf?.some((s) => (s as { type?: string }).type === 'null');
  return Type.Optional(
    nullable
      ? schema
      : Type.Union([schema, Type.Null()], { default: (schema as { default?: unknown }).default }),
  );
}

function requestSchema(mode: GenerationMode | 'any') {
  const props: Record<string, TSchema> = {};
  for (const [key, spec] of Object.entries(FIELDS) as [string, FieldSpec][]) {
    if (mode !== 'any' && spec.modes && !spec.modes.includes(mode)) continue;
    props[key] = requestField(spec, key);
  }
  props.sampler_index = Type.Optional(
    Type.Union([Type.String(), Type.Null()], {
      default: 'Euler',
      description: 'Legacy alias of sampler_name, used when sampler_name is absent.',
    }),
  );
  // Unknown keys are ignored, as A1111's API does.
  return Type.Object(props, { additionalProperties: true });
}

/** Body of POST /sdapi/v1/txt2img (the OpenAPI schema); validate with `validateGenerationRequest`. */
export const Txt2ImgRequestSchema = requestSchema('txt2img');
/** Body of POST /sdapi/v1/img2img. */
export const Img2ImgRequestSchema = requestSchema('img2img');
/** Every field of both modes (our own API, the UI form). */
export const GenerationRequestSchema = requestSchema('any');

export type GenerationRequest = Partial<{
  [K in keyof GenerationParams]: GenerationParams[K] | null;
}> & { sampler_index?: string | null };
