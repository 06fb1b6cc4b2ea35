/**
 * From a request body (A1111 field names) to a queued job: infotext fill-in, legacy fields, the
 * settings in force (options + override_settings), the checkpoint and VAE resolved through the
 * catalog (never a path from the client), images checked, then `withDefaults` — the pipeline's own
 * validation — with its errors answered as FastAPI's 422 naming the field.
 */
import {
  IMAGE_UPSCALERS,
  LATENT_UPSCALE_MODES,
  resolveSampler,
  validateGenerationRequest,
  type GenerationParams,
} from '../params/generation.js';
import { UserError } from '../util/errors.js';
import type { ServerContext } from './context.js';
import { decodeBase64Image } from './images.js';
import type { JobMode, JobRequest } from './jobs.js';
import { checkOption, GENERATION_SETTINGS } from './options.js';

/** A validation failure answered as FastAPI does: 422 `{detail: [{loc, msg, type}]}`. */
export class ValidationError extends UserError {
  readonly errors: { field: string; message: string }[];
  constructor(field: string, message: string, more: { field: string; message: string }[] = []) {
    super(message, 2, 422);
    this.name = 'ValidationError';
    this.errors = [{ field, message }, ...more];
  }
  detail(): unknown[] {
    return this.errors.map((e) => ({
      loc: ['body', ...e.field.split('.')],
      msg: e.message.startsWith(e.field) ? e.message : `${e.field}: ${e.message}`,
      type: 'value_error',
    }));
  }
}

const NO_MODEL = (dir: string) =>
  `no checkpoint to generate with: put a Stable Diffusion 1.x checkpoint (.safetensors or .ckpt) in ${dir} ` +
  '(or run `sdstudio download`), then POST /sdapi/v1/refresh-checkpoints';

export interface BuildOptions {
  source: JobRequest['source'];
  /** Overrides save_images (our API always keeps its results). */
  save?: boolean;
  previewEvery?: number;
}

export async function buildJobRequest(
  ctx: ServerContext,
  mode: JobMode,
  input: Record<string, unknown> | undefined | null,
  opts: BuildOptions,
): Promise<{
  request: JobRequest;
  body: Record<string, unknown>;
  restoreOverrides: Record<string, unknown> | null;
}> {
  if (input !== undefined && input !== null && (typeof input !== 'object' || Array.isArray(input))) {
    throw new ValidationError('body', 'body must be a JSON object of generation fields');
  }
  const body: Record<string, unknown> = { ...(input ?? {}) };
  if (typeof body.script_name === 'string' && body.script_name.trim() !== '') {
    throw new UserError(`Script '${body.script_name.slice(0, 200)}' not found`, 2, 422);
  }
  if (
    typeof body.firstpass_image === 'string' &&
    body.firstpass_image !== '' &&
    body.firstpass_image !== 'None'
  ) {
    throw new ValidationError('firstpass_image', 'firstpass_image: not supported yet; leave it out');
  }
  // A1111 reads "", "None" and "none" as no refiner.
  if (typeof body.refiner_checkpoint === 'string' && ['', 'None', 'none'].includes(body.refiner_checkpoint)) {
    body.refiner_checkpoint = null;
  }
  if (
    typeof body.hr_checkpoint_name === 'string' &&
    !['', 'Use same checkpoint'].includes(body.hr_checkpoint_name)
  ) {
    throw new ValidationError(
      'hr_checkpoint_name',
      'hr_checkpoint_name: a separate hires-fix checkpoint is not supported yet',
    );
  }
  if (body.restore_faces === true) {
    throw new ValidationError(
      'restore_faces',
      'restore_faces: face restoration is not available yet; send false',
    );
  }

  // A full infotext fills every field the request leaves out (A1111's `infotext` key).
  if (typeof body.infotext === 'string' && body.infotext.trim()) {
    const { parseInfotext } = await import('../infotext/infotext.js');
    const { paramsFromInfotext } = await import('../infotext/infotext-fields.js');
    let fromInfo: Partial<GenerationParams>;
    try {
      fromInfo = paramsFromInfotext(parseInfotext(body.infotext));
    } catch (e) {
      throw new ValidationError('infotext', `infotext: ${(e as Error).message}`);
    }
    for (const [k, v] of Object.entries(fromInfo)) {
      if (k === 'override_settings') {
        body.override_settings = { ...(v as object), ...((body.override_settings as object | null) ?? {}) };
      } else if (body[k] === undefined || body[k] === null) body[k] = v;
    }
  }

  // Legacy hires sizing: firstphase_* is the first pass, width/height the target.
  const fw = Number(body.firstphase_width ?? 0);
  const fh = Number(body.firstphase_height ?? 0);
  if (mode === 'txt2img' && body.enable_hr === true && (fw > 0 || fh > 0)) {
    body.hr_resize_x = body.width ?? 512;
    body.hr_resize_y = body.height ?? 512;
    body.width = fw;
    body.height = fh;
  }
  // Sizes that are not multiples of 8 are rounded down, as A1111's latent shape does.
  for (const key of ['width', 'height'] as const) {
    const v = body[key];
    if (typeof v === 'number' && Number.isInteger(v) && v >= 8 && v % 8 !== 0) body[key] = v - (v % 8);
  }

  if (mode === 'img2img') {
    const init = body.init_images;
    if (!Array.isArray(init) || init.length === 0) throw new UserError('Init image not found', 2, 404);
    if (init.length > 64) throw new ValidationError('init_images', 'init_images: at most 64 images');
    for (let i = 0; i < init.length; i++) await decodeBase64Image(init[i], `init_images[${i}]`);
    if (body.mask !== undefined && body.mask !== null && body.mask !== '')
      await decodeBase64Image(body.mask, 'mask');
    else body.mask = null;
  } else {
    delete body.init_images;
    delete body.mask;
  }

  // The settings in force: saved options, then this request's override_settings.
  const override = body.override_settings ?? {};
  if (typeof override !== 'object' || Array.isArray(override)) {
    throw new ValidationError('override_settings', 'override_settings must be an object');
  }
  const o = override as Record<string, unknown>;
  for (const [k, v] of Object.entries(o)) {
    const why = checkOption(k, v);
    if (why && !why.endsWith('unknown setting'))
      throw new ValidationError(`override_settings.${k}`, `override_settings.${why}`);
  }
  const { catalog, options } = ctx;
  const wanted = (o.sd_model_checkpoint as string | null | undefined) ?? null;
  let checkpoint = wanted
    ? catalog.findCheckpoint(wanted, 'override_settings.sd_model_checkpoint')
    : undefined;
  if (!checkpoint) {
    const saved = options.get('sd_model_checkpoint');
    checkpoint = (typeof saved === 'string' && catalog.lookupCheckpoint(saved)) || catalog.checkpoints[0];
  }
  if (!checkpoint) throw new UserError(NO_MODEL(catalog.dirs.checkpoints), 2, 409);
  const sdVae = String(o.sd_vae ?? options.get('sd_vae') ?? 'Automatic');
  const vaeEntry = catalog.findVae(sdVae, o.sd_vae !== undefined ? 'override_settings.sd_vae' : 'sd_vae');
  const settings: Record<string, unknown> = {};
  for (const k of GENERATION_SETTINGS) settings[k] = o[k] ?? options.get(k);

  if (body.hr_upscaler === undefined || body.hr_upscaler === null)
    body.hr_upscaler = options.get('latent_upscale_default_mode');
  if (
    mode === 'txt2img' &&
    body.enable_hr === true &&
    typeof body.hr_upscaler === 'string' &&
    ![...LATENT_UPSCALE_MODES, ...IMAGE_UPSCALERS].includes(body.hr_upscaler)
  ) {
    throw new ValidationError(
      'hr_upscaler',
      `hr_upscaler: could not find upscaler named ${body.hr_upscaler.slice(0, 200)}`,
    );
  }
  const checked = validateGenerationRequest(
    {
      ...body,
      styles: body.styles ?? [],
      denoising_strength: body.denoising_strength ?? (mode === 'txt2img' && body.enable_hr ? 0.7 : undefined),
      override_settings: settings,
    },
    { mode },
  );
  if (!checked.ok) {
    const [first, ...rest] = checked.errors;
    throw new ValidationError(first!.field, first!.message, rest);
  }
  const params: GenerationParams = checked.params;
  if (mode === 'img2img') params.enable_hr = false;
  // The SDXL refiner: a checkpoint of the catalog (422 naming the field when it is not there).
  if (params.refiner_checkpoint) {
    params.refiner_checkpoint = catalog.findCheckpoint(
      params.refiner_checkpoint,
      'refiner_checkpoint',
    ).filename;
  }
  // "DPM++ 2M Karras" and aliases: the sampler's own name, the suffix as the scheduler (as A1111).
  const resolved = resolveSampler(params.sampler_name, params.scheduler);
  if (resolved.sampler !== params.sampler_name) {
    params.sampler_name = resolved.sampler;
    params.scheduler = resolved.scheduleLabel;
  }

  const save = opts.save ?? (body.save_images === true && options.get('samples_save') !== false);
  const nEvery = Number(options.get('show_progress_every_n_steps'));
  const previewEvery =
    opts.previewEvery ?? (options.get('live_previews_enable') !== false && nEvery > 0 ? nEvery : 0);
  const request: JobRequest = {
    mode,
    params,
    checkpoint: checkpoint.filename,
    vae: vaeEntry?.filename ?? (sdVae === 'None' ? 'None' : 'Automatic'),
    save,
    grid: save && options.get('return_grid') !== false && body.do_not_save_grid !== true,
    previewEvery,
    source: opts.source,
  };
  // override_settings_restore_afterwards: false keeps the overrides as settings after the job.
  let restoreOverrides: Record<string, unknown> | null = null;
  if (body.override_settings_restore_afterwards === false && Object.keys(o).length) {
    restoreOverrides = Object.fromEntries(Object.entries(o).filter(([k, v]) => checkOption(k, v) === null));
  }
  return { request, body, restoreOverrides };
}
