/**
 * The settings of GET/POST /sdapi/v1/options: A1111's keys with A1111 1.10.1's defaults, validated
 * by the type of their default (and a few by their allowed values), persisted in
 * `<data-dir>/config.json` (atomic rename, only keys that differ from the default).
 */
import { existsSync, readFileSync } from 'node:fs';
import { SETTING_NAMES } from '../params/fields.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { UserError } from '../util/errors.js';
import { OPTION_DEFAULTS, type OptionValue } from './option-defaults.js';

export { OPTION_DEFAULTS };

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
