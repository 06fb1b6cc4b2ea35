/**
 * The names a request may use: samplers, schedulers, hires upscalers, inpainting choices, and the
 * limits that keep hostile requests bounded. Sampler lookups go through `samplerCatalog()` only, so
 * the list can be swapped for the sampling registry without touching the callers. No Node imports:
 * the browser uses this module.
 */
import {
  findSampler as findRegistrySampler,
  findScheduler as findRegistryScheduler,
  SAMPLERS as REGISTRY_SAMPLERS,
  SCHEDULERS as REGISTRY_SCHEDULERS,
} from '../sampling/registry.js';
import { UserError } from '../util/errors.js';

export interface SamplerInfo {
  name: string;
  aliases: readonly string[];
  defaultScheduler?: string;
  /** Its per-step noise is shifted by ENSD (A1111 option uses_ensd). */
  usesEnsd?: boolean;
  /** Takes eta; default 1 (ancestral) unless etaDefaultZero. */
  usesEta?: boolean;
}

/**
 * A1111 1.10.1 sampler display names (order of /sdapi/v1/samplers) with their aliases: a view of the
 * sampling registry (src/sampling/registry.ts), which holds the functions and all metadata.
 */
export const SAMPLERS: readonly SamplerInfo[] = REGISTRY_SAMPLERS.map((s) => ({
  name: s.label,
  aliases: s.aliases,
  defaultScheduler: s.scheduler ? findRegistryScheduler(s.scheduler)?.label : undefined,
  usesEnsd: s.usesEnsd,
  usesEta: s.etaDefault !== null,
}));

/** A1111 schedulers: label (shown, written to infotext) and name (API), plus aliases (the registry's). */
export const SCHEDULERS: readonly { label: string; name: string; aliases?: readonly string[] }[] =
  REGISTRY_SCHEDULERS.map((s) => ({ label: s.label, name: s.name, aliases: s.aliases }));

/** Latent upscale modes of the hires fix (A1111 shared.latent_upscale_modes). */
export const LATENT_UPSCALE_MODES: readonly string[] = [
  'Latent',
  'Latent (antialiased)',
  'Latent (bicubic)',
  'Latent (bicubic antialiased)',
  'Latent (nearest)',
  'Latent (nearest-exact)',
];

/** Image upscalers available without model weights. */
export const IMAGE_UPSCALERS: readonly string[] = ['None', 'Lanczos', 'Nearest'];

export const MASKED_CONTENT = ['fill', 'original', 'latent noise', 'latent nothing'] as const;

export const RESIZE_MODES = [
  'Just resize',
  'Crop and resize',
  'Resize and fill',
  'Just resize (latent upscale)',
] as const;

/**
 * A1111's `emphasis` setting (sd_emphasis.py): how (word:1.2) weights are applied to the text
 * encoder's output — "Original" multiplies and restores the mean, "No norm" only multiplies,
 * "Ignore" drops the weights, "None" reads the brackets as plain text.
 */
export const EMPHASIS_MODES = ['Original', 'No norm', 'Ignore', 'None'] as const;

/** A1111's `hires_fix_refiner_pass` setting: which hires-fix passes the SDXL refiner may take over. */
export const HIRES_REFINER_PASSES = ['second pass', 'first pass', 'both passes'] as const;

/** A1111's `randn_source` setting. */
export const RANDN_SOURCES = ['GPU', 'CPU', 'NV'] as const;

/** Upper bounds that keep hostile requests from asking for unbounded memory or time. */
export const LIMITS = {
  maxSide: 8192,
  maxSteps: 1000,
  maxBatchSize: 64,
  maxBatchCount: 10000,
  maxMaskBlur: 256,
  maxPadding: 4096,
  maxHrScale: 8,
  maxPromptChars: 100_000,
} as const;

export const MAX_SEED = 2 ** 53 - 1;

/** Largest token merging ratio (tomesd); models/token-merging.ts holds the same bound. */
export const MAX_TOKEN_MERGE_RATIO = 0.9;

/**
 * The samplers a request may name. The one place the list is read, so it can become the sampling
 * registry's without changing any caller.
 */
export function samplerCatalog(): readonly SamplerInfo[] {
  return SAMPLERS;
}

/** A sampler by display name or alias, case-insensitively as A1111's samplers_map. */
export function findSamplerInfo(name: string): SamplerInfo | undefined {
  const n = name.trim().toLowerCase();
  return samplerCatalog().find(
    (s) => s.name.toLowerCase() === n || s.aliases.some((a) => a.toLowerCase() === n),
  );
}

/** A scheduler by label, name or alias, case-insensitively. */
export function findSchedulerInfo(nameOrLabel: string): (typeof SCHEDULERS)[number] | undefined {
  const n = nameOrLabel.trim().toLowerCase();
  return SCHEDULERS.find(
    (x) =>
      x.label.toLowerCase() === n ||
      x.name.toLowerCase() === n ||
      (x.aliases ?? []).some((a) => a.toLowerCase() === n),
  );
}

/** Edit distance with adjacent transpositions (optimal string alignment), for names and flags. */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      }
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The candidate closest to `input` (case-insensitive edit distance), when it is close enough to be
 * a typo: at most a third of the longer string, and at least 1 edit always allowed.
 */
export function closestName(input: string, candidates: readonly string[]): string | undefined {
  const a = input.trim().toLowerCase();
  if (a === '') return undefined;
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(a, c.toLowerCase());
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  if (best === undefined) return undefined;
  const allowed = Math.max(1, Math.floor(Math.max(a.length, best.length) / 3));
  return bestDist <= allowed ? best : undefined;
}

/** ` (did you mean "X"?)` or '' — said after an unknown name. */
export function didYouMean(input: string, candidates: readonly string[], quote = '"'): string {
  const c = closestName(input, candidates);
  return c === undefined ? '' : ` (did you mean ${quote}${c}${quote}?)`;
}

function findScheduler(nameOrLabel: string, field: string): (typeof SCHEDULERS)[number] {
  const s = findSchedulerInfo(nameOrLabel);
  if (!s) {
    const labels = SCHEDULERS.map((x) => x.label);
    throw new UserError(
      `${field} "${nameOrLabel}" is unknown${didYouMean(nameOrLabel, labels)}; use one of ${labels.join(', ')}`,
    );
  }
  return s;
}

/** Checks a scheduler name (label, name or alias, any case); throws UserError naming `field`. */
export function checkScheduler(nameOrLabel: string, field = 'scheduler'): string {
  return findScheduler(nameOrLabel, field).label;
}

export interface ResolvedSampler {
  /** A1111 display name. */
  sampler: string;
  /** Scheduler label actually used ("Automatic" resolved to the sampler's default, e.g. "Karras"). */
  scheduleLabel: string;
  /** Scheduler name ("karras", "automatic" …) to hand to the schedule builder. */
  schedulerName: string;
}

/**
 * A1111's sampler/scheduler resolution: a sampler name may end with " <scheduler>" ("DPM++ 2M Karras");
 * the name is matched by name or alias, case-insensitively as A1111's API does. Unlike A1111 (which
 * silently falls back to DPM++ 2M), an unknown name is an error: a silent fallback gives a user a
 * different image than asked for. `field` / `schedulerField` name the inputs in messages.
 */
export function resolveSampler(
  samplerName: string,
  scheduler: string,
  field = 'sampler_name',
  schedulerField = 'scheduler',
): ResolvedSampler {
  const name = samplerName.trim();
  let sched = scheduler;
  let schedField = schedulerField;
  // The registry's lookup: names and aliases in any case, and old combined names ("DPM++ 2M
  // Karras", "k_dpmpp_2m_ka") whose schedule suffix wins over `scheduler`, as A1111.
  const found = findRegistrySampler(name);
  const entry = found && findSamplerInfo(found.sampler.label);
  if (found?.scheduler) {
    sched = findRegistryScheduler(found.scheduler)?.label ?? sched;
    schedField = field;
  }
  if (!entry) {
    const names = samplerCatalog().map((s) => s.name);
    throw new UserError(
      `${field} "${samplerName}" is unknown${didYouMean(name, [...names, ...samplerCatalog().flatMap((s) => s.aliases)])}; use one of ${names.join(', ')}`,
    );
  }
  const s = findScheduler(sched, schedField);
  const effective = s.label === 'Automatic' ? (entry.defaultScheduler ?? 'Automatic') : s.label;
  const effectiveEntry = findScheduler(effective, schedField);
  return { sampler: entry.name, scheduleLabel: effectiveEntry.label, schedulerName: effectiveEntry.name };
}
