/**
 * `inspect`: everything detection knows about a model file plus its hashes and metadata, as one
 * JSON-ready object (the CLI prints it; the API and UI will serve the same object).
 */
import { stat } from 'node:fs/promises';
import { openModel } from '../formats/open.js';
import { detectModel, type ModelInfo } from '../models/detect.js';
import { sidecarPathFor } from '../models/detect-sidecar.js';
import { UserError } from '../util/errors.js';
import { hashFile } from './hash.js';

export interface InspectReport extends ModelInfo {
  /** null for a diffusers folder (not one file) or when hashing was skipped. */
  hash: { sha256: string; autov2: string; legacy: string; addnet?: string } | null;
  /** safetensors `__metadata__`; strings that hold JSON objects/arrays are parsed, as A1111 shows them. */
  metadata: Record<string, unknown>;
}

export interface InspectOptions {
  vPred?: boolean;
  /** The ldm sidecar; default `<file stem>.yaml` when it exists (A1111's rule). */
  yamlPath?: string;
  noHash?: boolean;
  cacheDir?: string;
  onHashProgress?: (done: number, total: number) => void;
}

/** A1111 `read_metadata_from_safetensors`: values that look like JSON objects are parsed. */
export function parseMetadata(raw: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    out[k] = v;
    if (typeof v === 'string' && (v.startsWith('{') || v.startsWith('['))) {
      try {
        out[k] = JSON.parse(v);
      } catch {
        // Not JSON after all: keep the string.
      }
    }
  }
  return out;
}

export async function inspectFile(path: string, opts: InspectOptions = {}): Promise<InspectReport> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    throw new UserError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const source = await openModel(path);
  let info: ModelInfo;
  let metadata: Record<string, string>;
  try {
    const yamlPath = opts.yamlPath ?? (isDir ? undefined : sidecarPathFor(path));
    info = detectModel(source, { yamlPath, vPred: opts.vPred });
    metadata = source.metadata;
  } finally {
    await source.close();
  }
  let hash: InspectReport['hash'] = null;
  if (!isDir && !opts.noHash) {
    const { cached: _cached, ...h } = await hashFile(path, {
      cacheDir: opts.cacheDir,
      onProgress: opts.onHashProgress,
    });
    hash = h;
  }
  // Field order as the issue lists them (it is what `--json` prints).
  return {
    kind: info.kind,
    architecture: info.architecture,
    prediction: info.prediction,
    variant: info.variant,
    components: info.components,
    dtypes: info.dtypes,
    tensors: info.tensors,
    hash,
    config: info.config,
    metadata: parseMetadata(metadata),
  };
}
