/**
 * The Settings screen's groups: A1111 1.10.1's settings sections, each named by its first option.
 * GET /sdapi/v1/options lists the options in A1111's order (server/options.ts), so a section runs
 * from its first option to the next section's.
 */
export const SECTION_STARTS: Readonly<Record<string, string>> = {
  samples_save: 'Saving images/grids',
  outdir_samples: 'Paths for saving',
  save_to_dirs: 'Saving to a directory',
  ESRGAN_tile: 'Upscaling',
  face_restoration: 'Face restoration',
  auto_launch_browser: 'System',
  api_enable_requests: 'API',
  sd_model_checkpoint: 'Stable Diffusion',
  sdxl_crop_top: 'Stable Diffusion XL',
  sd_vae_checkpoint_cache: 'VAE',
  inpainting_mask_weight: 'img2img',
  cross_attention_optimization: 'Optimizations',
  auto_backcompat: 'Compatibility',
  sd_hypernetwork: 'Extra Networks',
  localization: 'User interface',
  add_model_name_to_info: 'Infotext',
  show_progressbar: 'Live previews',
  hide_samplers: 'Sampler parameters',
  postprocessing_enable_in_main_ui: 'Postprocessing',
  disabled_extensions: 'Other',
};

/** Options before the first known section start (none today) fall under this title. */
const FIRST_SECTION = 'General';

export interface OptionGroup {
  title: string;
  keys: string[];
}

/**
 * `keys` (in the server's order) grouped into sections, keeping only those `keep` accepts; empty
 * sections are left out.
 */
export function groupOptions(
  keys: readonly string[],
  keep: (key: string) => boolean = () => true,
): OptionGroup[] {
  const groups: OptionGroup[] = [];
  let current: OptionGroup = { title: FIRST_SECTION, keys: [] };
  for (const k of keys) {
    const title = SECTION_STARTS[k];
    if (title) {
      if (current.keys.length) groups.push(current);
      current = { title, keys: [] };
    }
    if (keep(k)) current.keys.push(k);
  }
  if (current.keys.length) groups.push(current);
  return groups;
}
