/**
 * The request contract (no Node imports: the server, the CLI and the browser import it):
 * - `GenerationParamsSchema` / `Txt2ImgRequestSchema` / `Img2ImgRequestSchema` /
 *   `GenerationRequestSchema` / `OverrideSettingsSchema`: TypeBox = JSON Schema (OpenAPI);
 * - `validateGenerationRequest(body, { mode, unknownSampler })`: defaults filled, or errors naming
 *   the JSON field; `withDefaults` throws the first as a UserError;
 * - `FIELDS` / `SETTINGS`: the field table (labels, groups, steps, UI defaults, CLI flags, infotext keys).
 */
export * from './generation.js';
export {
  GenerationParamsSchema,
  GenerationRequestSchema,
  Txt2ImgRequestSchema,
  Img2ImgRequestSchema,
  OverrideSettingsSchema,
} from './schema.js';
export {
  FIELDS,
  SETTINGS,
  FIELD_NAMES,
  SETTING_NAMES,
  specOf,
  type FieldSpec,
  type FieldGroup,
  type CliFlag,
  type GenerationMode,
  type FieldName,
  type SettingName,
} from './fields.js';
