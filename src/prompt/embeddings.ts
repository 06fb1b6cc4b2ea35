/**
 * Textual-inversion embeddings, loaded as A1111 does (modules/textual_inversion/textual_inversion.py,
 * EmbeddingDatabase.load_from_file + create_embedding_from_data, v1.10.1):
 *  - `.pt` / `.bin`: `string_to_param` (A1111 and the original textual_inversion's ParameterDict),
 *    or diffusers' `{token: tensor}`;
 *  - `.safetensors`: `{emb_params: tensor}` or SDXL `{clip_l, clip_g}`;
 *  - `.png` / `.webp` / `.avif`: A1111 embedding images (text chunk or data hidden in pixels).
 * An embedding is named by its file name (images: by the name stored inside). Embeddings whose width
 * does not fit the model are kept aside as "skipped" with a warning; files that cannot be read are
 * reported and never stop the others from loading.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { readTorchFile } from '../formats/torch.js';
import { openSafetensors } from '../formats/safetensors.js';
import { toFloat32 } from '../formats/dtype.js';
import { UserError } from '../util/errors.js';
import type { Tensor } from '../formats/tensor.js';
import { decodeTextChunk, isPng, readPngChunks } from '../formats/png-chunks.js';
import {
  embeddingFromBase64,
  extractImageDataEmbed,
  isJsonTensor,
  type JsonTensor,
} from './embedding-image.js';

/** Files larger than this are not read as embeddings (a real one is kilobytes; this is a misplaced model). */
export const MAX_EMBEDDING_FILE_BYTES = 256 * 1024 * 1024;
const MAX_DIR_DEPTH = 32;

/**
 * Vectors of an embedding, named as in A1111's Embedding (and as the prompt chunker expects):
 * `vectors` is how many token positions it takes, `shape` the width of each vector.
 */
export interface EmbeddingVectors {
  /** vectors × shape values, row-major. */
  vec: Float32Array;
  /** Number of vectors (token positions). */
  vectors: number;
  /** Width of one vector (768 SD1, 1024 SD2, 2048 SDXL). */
  shape: number;
}

export interface Embedding extends EmbeddingVectors {
  /** The word that stands for it in a prompt. */
  name: string;
  /** SDXL embeddings: the rows for each text encoder (`vec` is then clip_l ‖ clip_g per row). */
  parts?: { clip_l: EmbeddingVectors; clip_g: EmbeddingVectors };
  /** Training step, when the file says. */
  step: number | null;
  /** Short hash and name of the checkpoint it was trained on, when the file says. */
  checkpoint: string | null;
  checkpointName: string | null;
  path: string;
  /** sha256 of the file. */
  sha256: string;
  /** A1111's short hash (first 12 hex digits of the sha256), written as "TI hashes: name: hash". */
  hash: string;
}

/** One entry of A1111's /sdapi/v1/embeddings answer. */
export interface EmbeddingInfo {
  step: number | null;
  sd_checkpoint: string | null;
  sd_checkpoint_name: string | null;
  shape: number;
  vectors: number;
}

type AnyTensor = Tensor | JsonTensor;

function isTensor(v: unknown): v is Tensor {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Tensor).dtype === 'string' &&
    Array.isArray((v as Tensor).shape) &&
    (v as Tensor).data instanceof Uint8Array
  );
}

function isAnyTensor(v: unknown): v is AnyTensor {
  return isTensor(v) || isJsonTensor(v);
}

function floats(t: AnyTensor): Float32Array {
  return isJsonTensor(t) ? t.values : toFloat32(t);
}

/** A 1-D (one vector) or 2-D (rows of vectors) tensor as rows. */
function asRows(t: AnyTensor, what: string): EmbeddingVectors {
  const shape = t.shape;
  if (shape.length === 1) return { vec: floats(t), vectors: 1, shape: shape[0] };
  if (shape.length === 2) return { vec: floats(t), vectors: shape[0], shape: shape[1] };
  throw new UserError(
    `${what} has shape [${shape.join(', ')}]; an embedding is one vector or rows of vectors`,
  );
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !isAnyTensor(v);
}

function optNumber(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return null;
}

function optString(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** The part of an embedding that create_embedding_from_data derives from the file's data. */
export interface EmbeddingData {
  rows: EmbeddingVectors;
  parts?: Embedding['parts'];
  step: number | null;
  checkpoint: string | null;
  checkpointName: string | null;
}

/** create_embedding_from_data: recognise the layout and take the vectors out. */
export function embeddingFromData(data: unknown, filename: string): EmbeddingData {
  if (!isRecord(data)) {
    throw new UserError(
      `couldn't identify ${filename} as neither textual inversion embedding nor diffuser concept`,
    );
  }
  const meta = {
    step: optNumber(data['step']),
    checkpoint: optString(data['sd_checkpoint']),
    checkpointName: optString(data['sd_checkpoint_name']),
  };
  if ('string_to_param' in data) {
    let params = data['string_to_param'];
    // torch.nn.ParameterDict (original textual_inversion files) keeps its tensors in _parameters.
    if (isRecord(params) && isRecord(params['_parameters'])) params = params['_parameters'];
    if (!isRecord(params)) throw new UserError(`${filename}: string_to_param is not a dictionary`);
    const values = Object.values(params);
    if (values.length !== 1) throw new UserError(`${filename}: embedding file has multiple terms in it`);
    const emb = values[0];
    if (!isAnyTensor(emb)) throw new UserError(`${filename}: string_to_param holds no tensor`);
    return { rows: asRows(emb, filename), ...meta };
  }
  if ('clip_g' in data && 'clip_l' in data) {
    const g = data['clip_g'];
    const l = data['clip_l'];
    if (!isAnyTensor(g) || !isAnyTensor(l))
      throw new UserError(`${filename}: clip_g / clip_l are not tensors`);
    const clip_g = asRows(g, `${filename} clip_g`);
    const clip_l = asRows(l, `${filename} clip_l`);
    if (clip_g.vectors !== clip_l.vectors) {
      throw new UserError(`${filename}: clip_l has ${clip_l.vectors} vectors but clip_g ${clip_g.vectors}`);
    }
    const shape = clip_l.shape + clip_g.shape;
    const vec = new Float32Array(clip_g.vectors * shape);
    for (let r = 0; r < clip_g.vectors; r++) {
      vec.set(clip_l.vec.subarray(r * clip_l.shape, (r + 1) * clip_l.shape), r * shape);
      vec.set(clip_g.vec.subarray(r * clip_g.shape, (r + 1) * clip_g.shape), r * shape + clip_l.shape);
    }
    return { rows: { vec, vectors: clip_g.vectors, shape }, parts: { clip_l, clip_g }, ...meta };
  }
  const values = Object.values(data);
  if (values.length > 0 && isAnyTensor(values[0])) {
    if (values.length !== 1) throw new UserError(`${filename}: embedding file has multiple terms in it`);
    return { rows: asRows(values[0] as AnyTensor, filename), ...meta };
  }
  throw new UserError(
    `couldn't identify ${filename} as neither textual inversion embedding nor diffuser concept`,
  );
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function readSafetensorsDict(path: string): Promise<Record<string, Tensor>> {
  const src = await openSafetensors(path);
  try {
    const keys = src.keys();
    // Only the layouts A1111 accepts are read; anything else (a model in the wrong folder) stops here.
    const wanted = keys.includes('clip_g') && keys.includes('clip_l') ? ['clip_l', 'clip_g'] : keys;
    if (wanted.length !== 1 && wanted.length !== 2)
      throw new UserError(`${basename(path)}: embedding file has multiple terms in it`);
    const out: Record<string, Tensor> = {};
    for (const k of wanted) out[k] = await src.read(k);
    return out;
  } finally {
    await src.close();
  }
}

/** What an embedding image holds, or undefined when it holds no embedding. */
async function readEmbeddingImage(path: string, bytes: Uint8Array): Promise<unknown> {
  try {
    return await embeddingInImage(bytes);
  } catch (e) {
    if (e instanceof UserError) throw e;
    // A damaged image (sharp's decoder, a malformed text chunk, bad base64/JSON) is the file's fault.
    throw new UserError(
      `${basename(path)}: cannot read an embedding from this image: ${(e as Error).message}`,
    );
  }
}

async function embeddingInImage(bytes: Uint8Array): Promise<unknown> {
  if (isPng(bytes)) {
    for (const c of readPngChunks(bytes).chunks) {
      if ((c.type === 'tEXt' || c.type === 'zTXt' || c.type === 'iTXt') && c.crcOk) {
        const t = decodeTextChunk(c);
        if (t.key === 'sd-ti-embedding') return embeddingFromBase64(t.text);
      }
    }
  }
  return extractImageDataEmbed(bytes);
}

const IMAGE_EXTS = new Set(['.PNG', '.WEBP', '.JXL', '.AVIF']);

/**
 * EmbeddingDatabase.load_from_file for one file: the embedding, or undefined for files that are not
 * embeddings (other extensions, `*.preview.png`, images without embedded data). Throws an Error
 * naming the file when it is an embedding file that cannot be read.
 */
export async function loadEmbeddingFile(path: string): Promise<Embedding | undefined> {
  const filename = basename(path);
  const ext = extname(filename).toUpperCase();
  let name = filename.slice(0, filename.length - extname(filename).length);
  const st = await stat(path);
  if (st.size > MAX_EMBEDDING_FILE_BYTES) {
    throw new UserError(
      `${filename} is ${st.size} bytes, too large for an embedding; is it a model in the wrong folder?`,
    );
  }
  let data: unknown;
  if (IMAGE_EXTS.has(ext)) {
    if (extname(name).toUpperCase() === '.PREVIEW') return undefined;
    if (ext === '.JXL') return undefined; // no JPEG XL decoder here; A1111 needs a plugin for it too
    data = await readEmbeddingImage(path, await readFile(path));
    if (data === undefined) return undefined;
    if (isRecord(data) && typeof data['name'] === 'string') name = data['name'];
  } else if (ext === '.BIN' || ext === '.PT') {
    data = await readTorchFile(path);
  } else if (ext === '.SAFETENSORS') {
    data = await readSafetensorsDict(path);
  } else return undefined;

  const d = embeddingFromData(data, filename);
  const sha256 = await sha256File(path);
  return {
    name,
    ...d.rows,
    parts: d.parts,
    step: d.step,
    checkpoint: d.checkpoint,
    checkpointName: d.checkpointName,
    path,
    sha256,
    hash: sha256.slice(0, 12),
  };
}

export interface LoadEmbeddingsOptions {
  /** Vector width the model's text encoder takes (768 SD1, 1024 SD2, 2048 SDXL); omit to accept all. */
  expectedWidth?: number;
}

/** Files of a folder tree (symlinks followed, each real folder once), in a stable order. */
async function walk(dir: string, depth: number, seen: Set<string>, out: string[]): Promise<void> {
  if (depth > MAX_DIR_DEPTH) return;
  let real: string;
  try {
    real = await realpath(dir);
  } catch {
    return;
  }
  if (seen.has(real)) return;
  seen.add(real);
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      try {
        const s = await stat(p);
        isDir = s.isDirectory();
        isFile = s.isFile();
      } catch {
        continue;
      }
    }
    if (isDir) await walk(p, depth + 1, seen, out);
    else if (isFile) out.push(p);
  }
}

export class EmbeddingDatabase {
  /** Embeddings usable with the model, by name. */
  readonly loaded = new Map<string, Embedding>();
  /** Embeddings of another width (e.g. SD2 ones on SD1), by name: listed, not used. */
  readonly skipped = new Map<string, Embedding>();
  /** Files that looked like embeddings but could not be read. */
  readonly errors: { path: string; message: string }[] = [];
  /** One line per skipped embedding or unreadable file, naming it. */
  readonly warnings: string[] = [];

  constructor(readonly expectedWidth?: number) {}

  /** Loads every embedding under `dir` (sub-folders included). A missing folder is an empty database. */
  static async loadDir(dir: string, options: LoadEmbeddingsOptions = {}): Promise<EmbeddingDatabase> {
    const db = new EmbeddingDatabase(options.expectedWidth);
    const files: string[] = [];
    try {
      if (!(await stat(dir)).isDirectory()) return db;
    } catch {
      return db;
    }
    await walk(dir, 0, new Set(), files);
    for (const f of files) await db.addFile(f);
    if (db.skipped.size > 0) db.warnings.push(db.skippedWarning());
    return db;
  }

  /** Loads one file into the database; never throws for a bad file (it is recorded in errors). */
  async addFile(path: string): Promise<Embedding | undefined> {
    try {
      if ((await stat(path)).size === 0) return undefined;
      const emb = await loadEmbeddingFile(path);
      if (emb) this.add(emb);
      return emb;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.errors.push({ path, message });
      this.warnings.push(`could not load embedding ${basename(path)}: ${message}`);
      return undefined;
    }
  }

  /** Registers an embedding, or sets it aside when its width does not fit the model. */
  add(emb: Embedding): void {
    if (this.expectedWidth === undefined || this.expectedWidth === -1 || this.expectedWidth === emb.shape) {
      this.skipped.delete(emb.name);
      this.loaded.set(emb.name, emb);
    } else {
      this.loaded.delete(emb.name);
      this.skipped.set(emb.name, emb);
    }
  }

  /**
   * A1111's console line for embeddings of another width ("Textual inversion embeddings
   * skipped(N): names"), with each file and width, and why.
   */
  skippedWarning(): string {
    const each = [...this.skipped.values()].map((e) => `${e.name} (${basename(e.path)}, ${e.shape} wide)`);
    return (
      `Textual inversion embeddings skipped(${this.skipped.size}): ${each.join(', ')}; ` +
      `not compatible with this model, whose embeddings are ${this.expectedWidth} wide (trained for another model family)`
    );
  }

  get(name: string): Embedding | undefined {
    return this.loaded.get(name);
  }

  /** A1111's /sdapi/v1/embeddings answer. */
  list(): { loaded: Record<string, EmbeddingInfo>; skipped: Record<string, EmbeddingInfo> } {
    const info = (m: Map<string, Embedding>): Record<string, EmbeddingInfo> => {
      const out: Record<string, EmbeddingInfo> = {};
      for (const [name, e] of m) {
        Object.defineProperty(out, name, {
          value: {
            step: e.step,
            sd_checkpoint: e.checkpoint,
            sd_checkpoint_name: e.checkpointName,
            shape: e.shape,
            vectors: e.vectors,
          },
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    };
    return { loaded: info(this.loaded), skipped: info(this.skipped) };
  }

  /**
   * A1111's ids_lookup: for each first token id, the (token ids, embedding) pairs of the loaded
   * embeddings whose names start with it, longest first — what the prompt chunker matches against.
   */
  tokenIndex(tokenize: (text: string) => number[]): Map<number, { ids: number[]; embedding: Embedding }[]> {
    const index = new Map<number, { ids: number[]; embedding: Embedding }[]>();
    for (const emb of this.loaded.values()) {
      const ids = tokenize(emb.name);
      if (ids.length === 0) continue;
      const list = index.get(ids[0]) ?? [];
      list.push({ ids, embedding: emb });
      index.set(ids[0], list);
    }
    for (const list of index.values()) list.sort((a, b) => b.ids.length - a.ids.length);
    return index;
  }

  /**
   * The "TI hashes" infotext value for the embeddings a prompt used, as A1111 writes it:
   * `name: hash, …` with `:` and `,` removed from names.
   */
  static tiHashes(used: readonly Embedding[]): string {
    return used.map((e) => `${e.name.replaceAll(':', '').replaceAll(',', '')}: ${e.hash}`).join(', ');
  }
}

/** find_embedding_at_position: the embedding whose token ids start at `offset`, and how many tokens it covers. */
export function findEmbeddingAtPosition(
  index: Map<number, { ids: number[]; embedding: Embedding }[]>,
  tokens: readonly number[],
  offset: number,
): { embedding: Embedding; length: number } | undefined {
  const candidates = index.get(tokens[offset]);
  if (!candidates) return undefined;
  for (const { ids, embedding } of candidates) {
    if (ids.every((id, i) => tokens[offset + i] === id)) return { embedding, length: ids.length };
  }
  return undefined;
}
