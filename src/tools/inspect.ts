/**
 * `inspect`: everything detection knows about a model file plus its hashes and metadata, as one
 * JSON-ready object (the CLI prints it; the API and UI will serve the same object).
 */
import { open, stat } from 'node:fs/promises';
import { openModel } from '../formats/open.js';
import { numel, type TensorSource } from '../formats/tensor.js';
import { readTorchFile } from '../formats/torch.js';
import { embeddingArchitecture, type EmbeddingConfig } from '../models/detect-adapters.js';
import { detectModel, type ModelInfo } from '../models/detect.js';
import { loadEmbeddingFile } from '../prompt/embeddings.js';
import { sidecarPathFor } from '../models/detect-sidecar.js';
import { UserError } from '../util/errors.js';
import { hashFile } from './hash.js';

export interface InspectReport extends ModelInfo {
  /** null for a diffusers folder (not one file) or when hashing was skipped. */
  hash: { sha256: string; autov2: string; legacy: string; addnet?: string } | null;
  /**
   * safetensors `__metadata__` (strings holding JSON objects/arrays parsed, as A1111 shows them);
   * for embedding / hypernetwork `.pt` files, their top-level settings (name, step, layer_structure…).
   */
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

/** Small .pt files (embeddings, hypernetworks) keep their settings next to the tensors. */
const MAX_TREE_FILE_BYTES = 64 * 1024 * 1024;
const MAX_FIELDS = 64;

function plainValue(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) {
    return typeof v === 'string' && v.length > 1000 ? v.slice(0, 1000) + '…' : v;
  }
  if (Array.isArray(v) && v.length <= 64) {
    const items = v.map(plainValue);
    return items.every((x) => x !== undefined) ? items : undefined;
  }
  return undefined;
}

/**
 * The top-level non-tensor fields of an embedding or hypernetwork `.pt` (name, step,
 * sd_checkpoint, layer_structure, activation_func, …): what A1111 shows for such files.
 */
async function torchFields(path: string): Promise<Record<string, unknown>> {
  const tree = await readTorchFile(path);
  const out: Record<string, unknown> = {};
  if (!tree || typeof tree !== 'object' || Array.isArray(tree)) return out;
  for (const [k, v] of Object.entries(tree as Record<string, unknown>)) {
    if (Object.keys(out).length >= MAX_FIELDS) break;
    const plain = plainValue(v);
    if (plain !== undefined && !/^\d+$/.test(k)) out[k] = plain;
  }
  return out;
}

/** A LoRA's module alphas: most common value and, when they differ, the count per value. */
async function loraAlphas(
  source: TensorSource,
): Promise<{ alpha?: number; alphas?: Record<string, number> }> {
  const count = new Map<number, number>();
  for (const k of source.keys()) {
    const info = k.endsWith('.alpha') ? source.info(k) : undefined;
    // A scalar (or one-element) tensor: anything bigger is not an alpha and is not read.
    if (!info || numel(info.shape) !== 1) continue;
    const v = (await source.readFloat32(k))[0]!;
    if (Number.isFinite(v)) count.set(v, (count.get(v) ?? 0) + 1);
  }
  if (count.size === 0) return {};
  const sorted = [...count].sort((a, b) => b[1] - a[1] || b[0] - a[0]);
  return {
    alpha: sorted[0]![0],
    ...(count.size > 1 ? { alphas: Object.fromEntries(sorted.map(([v, n]) => [String(v), n])) } : {}),
  };
}

/** PNG or WebP, by content: A1111 keeps textual-inversion embeddings in such images too. */
async function isImageFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(12);
    const { bytesRead } = await fh.read(b, 0, 12, 0);
    const png = bytesRead >= 8 && b.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex'));
    const webp =
      bytesRead >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP';
    return png || webp;
  } finally {
    await fh.close();
  }
}

/** An embedding image, read by the prompt loader (the same code that loads it for generation). */
async function inspectEmbeddingImage(path: string, opts: InspectOptions): Promise<InspectReport> {
  if (!/\.(png|webp)$/i.test(path)) {
    throw new UserError(
      `${path} is an image but not named .png/.webp; rename it to inspect it as an embedding`,
    );
  }
  let emb;
  try {
    emb = await loadEmbeddingFile(path);
  } catch (e) {
    throw new UserError(`${path}: ${(e as Error).message}`);
  }
  if (!emb) {
    throw new UserError(
      `${path} is an image without a textual-inversion embedding in it (for generation parameters run \`sdstudio pnginfo\`)`,
    );
  }
  const embedding: EmbeddingConfig = {
    format: 'image',
    vectors: emb.vectors,
    dim: emb.parts ? { clip_l: emb.parts.clip_l.shape, clip_g: emb.parts.clip_g.shape } : emb.shape,
  };
  let hash: InspectReport['hash'] = null;
  if (!opts.noHash) {
    const { cached: _cached, ...h } = await hashFile(path, {
      cacheDir: opts.cacheDir,
      onProgress: opts.onHashProgress,
    });
    hash = h;
  }
  return {
    kind: 'embedding',
    architecture: embeddingArchitecture(embedding),
    prediction: null,
    variant: 'normal',
    components: { embedding: emb.vectors * emb.shape },
    // The values come from JSON text or pixels: no stored dtype to report.
    dtypes: {},
    tensors: emb.parts ? 2 : 1,
    hash,
    config: { embedding },
    metadata: {
      name: emb.name,
      step: emb.step,
      sd_checkpoint: emb.checkpoint,
      sd_checkpoint_name: emb.checkpointName,
    },
  };
}

export async function inspectFile(path: string, opts: InspectOptions = {}): Promise<InspectReport> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    throw new UserError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!isDir && (await isImageFile(path))) return inspectEmbeddingImage(path, opts);
  const source = await openModel(path);
  let info: ModelInfo;
  let metadata: Record<string, string>;
  try {
    const yamlPath = opts.yamlPath ?? (isDir ? undefined : sidecarPathFor(path));
    info = detectModel(source, { yamlPath, vPred: opts.vPred });
    if (info.config.lora) Object.assign(info.config.lora, await loraAlphas(source));
    metadata = source.metadata;
  } finally {
    await source.close();
  }
  let fields: Record<string, unknown> = parseMetadata(metadata);
  if (source.format === 'ckpt' && (info.kind === 'embedding' || info.kind === 'hypernetwork')) {
    if ((await stat(path)).size <= MAX_TREE_FILE_BYTES) fields = { ...fields, ...(await torchFields(path)) };
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
    metadata: fields,
  };
}
