/**
 * A1111's load-time key renames (`sd_models.checkpoint_dict_replacements_*`: old SD1 CLIP names,
 * SD 2.1 Turbo's SGM text tower), applied by `openModel` to every file it opens, whatever its
 * format, so that every reader (detection, the networks, the tools) sees one spelling.
 */
import { OverlaySource, type OverlayRoute } from './overlay.js';
import type { TensorSource } from './tensor.js';

/**
 * A1111 `sd_models.checkpoint_dict_replacements_sd1`: old SD1 files name the CLIP text model
 * without `text_model.`; A1111 renames them when loading any checkpoint.
 */
const SD1_REPLACEMENTS: [string, string][] = [
  ['cond_stage_model.transformer.embeddings.', 'cond_stage_model.transformer.text_model.embeddings.'],
  ['cond_stage_model.transformer.encoder.', 'cond_stage_model.transformer.text_model.encoder.'],
  [
    'cond_stage_model.transformer.final_layer_norm.',
    'cond_stage_model.transformer.text_model.final_layer_norm.',
  ],
];

/**
 * A1111 `checkpoint_dict_replacements_sd2_turbo`: SD 2.1 Turbo ships in SGM layout, its OpenCLIP
 * text tower under `conditioner.embedders.0.`; A1111 moves it to the ldm `cond_stage_model.`.
 */
const SD2_TURBO_REPLACEMENTS: [string, string][] = [['conditioner.embedders.0.', 'cond_stage_model.']];

export function a1111KeyName(key: string, sd2Turbo = false): string {
  for (const [from, to] of sd2Turbo ? SD2_TURBO_REPLACEMENTS : SD1_REPLACEMENTS) {
    if (key.startsWith(from)) return to + key.slice(from.length);
  }
  return key;
}

/** A1111's test: an SGM-layout file whose first embedder is a 1024-wide OpenCLIP (SD 2.1 Turbo). */
export function isSd2Turbo(source: TensorSource): boolean {
  return source.info('conditioner.embedders.0.model.ln_final.weight')?.shape[0] === 1024;
}

/** A read-only view of a source under other names: `names` maps output name → source name. */
export class RenamedSource extends OverlaySource {
  constructor(
    inner: TensorSource,
    private readonly names: Map<string, string>,
  ) {
    super(inner, { owns: [inner] });
  }

  override keys(): string[] {
    return [...this.names.keys()].sort();
  }

  protected route(name: string): OverlayRoute | undefined {
    const src = this.names.get(name);
    return src === undefined ? undefined : { source: this.base, key: src };
  }
}

/** The source with A1111's load-time key renames applied (a no-op view for modern files). */
export function withA1111Names(source: TensorSource): TensorSource {
  const names = new Map<string, string>();
  let renamed = false;
  const turbo = isSd2Turbo(source);
  for (const k of source.keys()) {
    const out = a1111KeyName(k, turbo);
    if (out !== k) renamed = true;
    // Should a file hold both spellings, the modern one wins (it is listed under its own name).
    if (!names.has(out) || out === k) names.set(out, k);
  }
  return renamed ? new RenamedSource(source, names) : source;
}
