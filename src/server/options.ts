/**
 * The settings of GET/POST /sdapi/v1/options: A1111's keys with A1111 1.10.1's defaults, validated
 * by the type of their default (and a few by their allowed values), persisted in
 * `<data-dir>/config.json` (atomic rename, only keys that differ from the default).
 */
import { existsSync, readFileSync } from 'node:fs';
import { SETTING_NAMES } from '../params/fields.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { UserError } from '../util/errors.js';

type OptionValue = string | number | boolean | null | unknown[];

/** A1111 `shared_options.py` defaults (v1.10.1) of the settings a client can read or set. */
export const OPTION_DEFAULTS: Readonly<Record<string, OptionValue>> = {
  samples_save: true,
  samples_format: 'png',
  samples_filename_pattern: '',
  save_images_add_number: true,
  save_images_replace_action: 'Replace',
  grid_save: true,
  grid_format: 'png',
  grid_extended_filename: false,
  grid_only_if_multiple: true,
  grid_prevent_empty_spots: false,
  grid_zip_filename_pattern: '',
  n_rows: -1,
  font: '',
  grid_text_active_color: '#000000',
  grid_text_inactive_color: '#999999',
  grid_background_color: '#ffffff',
  save_images_before_face_restoration: false,
  save_images_before_highres_fix: false,
  save_images_before_color_correction: false,
  save_mask: false,
  save_mask_composite: false,
  jpeg_quality: 80,
  webp_lossless: false,
  export_for_4chan: true,
  img_downscale_threshold: 4.0,
  target_side_length: 4000,
  img_max_size_mp: 200,
  use_original_name_batch: true,
  use_upscaler_name_as_suffix: false,
  save_selected_only: true,
  save_init_img: false,
  temp_dir: '',
  clean_temp_dir_at_start: false,
  save_incomplete_images: false,
  notification_audio: true,
  notification_volume: 100,
  outdir_samples: '',
  outdir_txt2img_samples: 'outputs/txt2img-images',
  outdir_img2img_samples: 'outputs/img2img-images',
  outdir_extras_samples: 'outputs/extras-images',
  outdir_grids: '',
  outdir_txt2img_grids: 'outputs/txt2img-grids',
  outdir_img2img_grids: 'outputs/img2img-grids',
  outdir_save: 'log/images',
  outdir_init_images: 'outputs/init-images',
  save_to_dirs: true,
  grid_save_to_dirs: true,
  use_save_to_dirs_for_ui: false,
  directories_filename_pattern: '[date]',
  directories_max_prompt_words: 8,
  ESRGAN_tile: 192,
  ESRGAN_tile_overlap: 8,
  realesrgan_enabled_models: ['R-ESRGAN 4x+', 'R-ESRGAN 4x+ Anime6B'],
  dat_enabled_models: ['DAT x2', 'DAT x3', 'DAT x4'],
  DAT_tile: 192,
  DAT_tile_overlap: 8,
  upscaler_for_img2img: null,
  set_scale_by_when_changing_upscaler: false,
  face_restoration: false,
  face_restoration_model: 'CodeFormer',
  code_former_weight: 0.5,
  face_restoration_unload: false,
  auto_launch_browser: 'Local',
  enable_console_prompts: false,
  show_warnings: false,
  show_gradio_deprecation_warnings: true,
  memmon_poll_rate: 8,
  samples_log_stdout: false,
  multiple_tqdm: true,
  enable_upscale_progressbar: true,
  print_hypernet_extra: false,
  list_hidden_files: true,
  disable_mmap_load_safetensors: false,
  hide_ldm_prints: true,
  dump_stacks_on_signal: false,
  api_enable_requests: true,
  api_forbid_local_requests: true,
  api_useragent: '',
  sd_model_checkpoint: null,
  sd_checkpoints_limit: 1,
  sd_checkpoints_keep_in_cpu: true,
  sd_checkpoint_cache: 0,
  sd_unet: 'Automatic',
  enable_quantization: false,
  emphasis: 'Original',
  enable_batch_seeds: true,
  comma_padding_backtrack: 20,
  sdxl_clip_l_skip: false,
  CLIP_stop_at_last_layers: 1,
  upcast_attn: false,
  randn_source: 'GPU',
  tiling: false,
  hires_fix_refiner_pass: 'second pass',
  sdxl_crop_top: 0,
  sdxl_crop_left: 0,
  sdxl_refiner_low_aesthetic_score: 2.5,
  sdxl_refiner_high_aesthetic_score: 6.0,
  sd_vae_checkpoint_cache: 0,
  sd_vae: 'Automatic',
  sd_vae_overrides_per_model_preferences: true,
  auto_vae_precision_bfloat16: false,
  auto_vae_precision: true,
  sd_vae_encode_method: 'Full',
  sd_vae_decode_method: 'Full',
  inpainting_mask_weight: 1.0,
  initial_noise_multiplier: 1.0,
  img2img_extra_noise: 0.0,
  img2img_color_correction: false,
  img2img_fix_steps: false,
  img2img_background_color: '#ffffff',
  img2img_editor_height: 720,
  img2img_sketch_default_brush_color: '#ffffff',
  img2img_inpaint_mask_brush_color: '#ffffff',
  img2img_inpaint_sketch_default_brush_color: '#ffffff',
  return_mask: false,
  return_mask_composite: false,
  img2img_batch_show_results_limit: 32,
  overlay_inpaint: true,
  cross_attention_optimization: 'Automatic',
  s_min_uncond: 0.0,
  s_min_uncond_all: false,
  token_merging_ratio: 0.0,
  token_merging_ratio_img2img: 0.0,
  token_merging_ratio_hr: 0.0,
  pad_cond_uncond: false,
  pad_cond_uncond_v0: false,
  persistent_cond_cache: true,
  batch_cond_uncond: true,
  fp8_storage: 'Disable',
  cache_fp16_weight: false,
  auto_backcompat: true,
  use_old_emphasis_implementation: false,
  use_old_karras_scheduler_sigmas: false,
  no_dpmpp_sde_batch_determinism: false,
  use_old_hires_fix_width_height: false,
  hires_fix_use_firstpass_conds: false,
  use_old_scheduling: false,
  use_downcasted_alpha_bar: false,
  refiner_switch_by_sample_steps: false,
  sd_hypernetwork: 'None',
  sd_lora: 'None',
  lora_preferred_name: 'Alias from file',
  lora_add_hashes_to_infotext: true,
  lora_show_all: false,
  lora_hide_unknown_for_versions: [],
  lora_in_memory_limit: 0,
  localization: 'None',
  quicksettings_list: ['sd_model_checkpoint'],
  return_grid: true,
  do_not_show_images: false,
  // The UI's send-to buttons (A1111's "ui" section); kept so clients (and A1111's test_utils) can
  // read and toggle them, as A1111 answers them.
  send_seed: true,
  send_size: true,
  enable_pnginfo: true,
  save_txt: false,
  add_model_name_to_info: true,
  add_model_hash_to_info: true,
  add_vae_name_to_info: true,
  add_vae_hash_to_info: true,
  add_user_name_to_info: false,
  add_version_to_infotext: true,
  disable_weights_auto_swap: true,
  infotext_skip_pasting: [],
  infotext_styles: 'Apply if any',
  show_progressbar: true,
  live_previews_enable: true,
  live_previews_image_format: 'png',
  show_progress_grid: true,
  show_progress_every_n_steps: 10,
  show_progress_type: 'Approx NN',
  live_preview_allow_lowvram_full: false,
  live_preview_content: 'Prompt',
  live_preview_refresh_period: 1000.0,
  live_preview_fast_interrupt: false,
  hide_samplers: [],
  eta_ddim: 0.0,
  eta_ancestral: 1.0,
  ddim_discretize: 'uniform',
  s_churn: 0.0,
  s_tmin: 0.0,
  s_tmax: 0.0,
  s_noise: 1.0,
  sigma_min: 0.0,
  sigma_max: 0.0,
  rho: 0.0,
  eta_noise_seed_delta: 0,
  always_discard_next_to_last_sigma: false,
  sgm_noise_multiplier: false,
  uni_pc_variant: 'bh1',
  uni_pc_skip_type: 'time_uniform',
  uni_pc_order: 3,
  uni_pc_lower_order_final: true,
  sd_noise_schedule: 'Default',
  skip_early_cond: 0.0,
  beta_dist_alpha: 0.6,
  beta_dist_beta: 0.6,
  latent_upscale_default_mode: 'Latent',
  postprocessing_enable_in_main_ui: [],
  postprocessing_disable_in_extras: [],
  postprocessing_operation_order: [],
  upscaling_max_images_in_cache: 5,
  postprocessing_existing_caption_action: 'Ignore',
  disabled_extensions: [],
  disable_all_extensions: 'none',
  restore_config_state_file: '',
  sd_checkpoint_hash: '',
};

/**
 * Settings the generation reads from a job's override_settings: params' SETTINGS table (the model
 * and VAE are resolved apart, through the catalog) and the img2img token merging ratio.
 */
export const GENERATION_SETTINGS: readonly string[] = [
  ...SETTING_NAMES.filter((k) => k !== 'sd_model_checkpoint' && k !== 'sd_vae'),
  'token_merging_ratio_img2img',
  // A hypernetwork added to every prompt (pipeline/job.ts, adapters/run-hypernetworks.ts).
  'sd_hypernetwork',
];

const CHOICES: Record<string, readonly string[]> = {
  randn_source: ['GPU', 'CPU', 'NV'],
  samples_format: ['png'],
  emphasis: ['Original', 'No norm', 'None'],
  hires_fix_refiner_pass: ['first pass', 'second pass', 'both passes'],
};

const RANGES: Record<string, [number, number, boolean]> = {
  CLIP_stop_at_last_layers: [1, 12, true],
  eta_noise_seed_delta: [-(2 ** 53 - 1), 2 ** 53 - 1, true],
  show_progress_every_n_steps: [-1, 1000, true],
  token_merging_ratio: [0, 0.9, false],
  token_merging_ratio_img2img: [0, 0.9, false],
  token_merging_ratio_hr: [0, 0.9, false],
  initial_noise_multiplier: [0, 10, false],
  inpainting_mask_weight: [0, 1, false],
};

/** Why `value` cannot be the setting `key`, or null when it can. */
export function checkOption(key: string, value: unknown): string | null {
  if (!Object.hasOwn(OPTION_DEFAULTS, key)) return `${key}: unknown setting`;
  const def = OPTION_DEFAULTS[key];
  if (def === null) {
    if (value !== null && typeof value !== 'string') return `${key} must be a string or null`;
    return null;
  }
  if (Array.isArray(def))
    return Array.isArray(value) && value.length <= 10_000 ? null : `${key} must be a list`;
  if (typeof def === 'number') {
    if (typeof value !== 'number' || !Number.isFinite(value)) return `${key} must be a number`;
    const r = RANGES[key];
    if (r && (value < r[0] || value > r[1] || (r[2] && !Number.isInteger(value))))
      return `${key} must be ${r[2] ? 'a whole number' : 'a number'} from ${r[0]} to ${r[1]}`;
    return null;
  }
  if (typeof def === 'boolean') return typeof value === 'boolean' ? null : `${key} must be true or false`;
  if (typeof value !== 'string') return `${key} must be a string`;
  if (value.length > 100_000) return `${key} is too long`;
  const c = CHOICES[key];
  if (c && !c.includes(value)) return `${key} must be one of ${c.map((x) => JSON.stringify(x)).join(', ')}`;
  return null;
}

export class OptionsStore {
  private values: Record<string, OptionValue>;

  constructor(private readonly file: string) {
    this.values = { ...OPTION_DEFAULTS };
    if (existsSync(file)) {
      try {
        const saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
        for (const [k, v] of Object.entries(saved)) {
          if (checkOption(k, v) === null) this.values[k] = v as OptionValue;
        }
      } catch {
        // A corrupt config.json is ignored (defaults), and replaced on the next save.
      }
    }
  }

  get(key: string): OptionValue | undefined {
    return this.values[key];
  }

  all(): Record<string, OptionValue> {
    return { ...this.values };
  }

  /** Sets validated values and saves; throws UserError (422) naming the first bad key, changing nothing. */
  async update(changes: Record<string, unknown>): Promise<void> {
    for (const [k, v] of Object.entries(changes)) {
      const why = checkOption(k, v);
      if (why) throw new UserError(why, 2, 422);
    }
    Object.assign(this.values, changes);
    await this.save();
  }

  private async save(): Promise<void> {
    const out: Record<string, OptionValue> = {};
    for (const [k, v] of Object.entries(this.values)) {
      if (JSON.stringify(v) !== JSON.stringify(OPTION_DEFAULTS[k])) out[k] = v;
    }
    await writeFileAtomic(this.file, JSON.stringify(out, null, 2));
  }
}
