/**
 * Where a graph's weights live when onnxruntime loads it. onnxruntime maps external-data files
 * instead of copying them, but only files inside one folder: it refuses absolute locations, `..`
 * and symlinks that leave the folder, and a model given in-memory external data must get all of it
 * that way. So:
 *
 * - in place: params that are contiguous F32 data in one file (an fp32 `.safetensors`) are
 *   referenced straight in the checkpoint (folder = its directory). No conversion, no copy.
 * - overlay: when only a few params are not (LoRA-patched tensors, at most OVERLAY_MAX_BYTES),
 *   those are stored inline in the model bytes and the rest stays in place.
 * - weights cache: otherwise (F16/BF16 on CPU, .ckpt, in-memory sources) the params are converted
 *   to float32 once into `<cacheDir>/<entry>/weights.bin`, keyed by the checkpoint's identity
 *   (real path, size, mtime), the graph version and the list of params. The entry is written in a
 *   temporary folder and renamed into place, so a half-written entry is never used.
 *   The cache has a size limit; the least recently used entries are removed beyond it.
 *   The identity comes from the files the tensors' locations point into, so a source that
 *   combines files (checkpoint + separate VAE) is recognised again, while tensors without a file
 *   location (in memory, patched) make the entry ephemeral: removed when the model is released.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  mkdir,
  open,
  readFile,
  readdir,
  realpath,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { float32ArrayToTensor } from '../formats/dtype.js';
import { DTYPE_BYTES, numel, type TensorSource } from '../formats/tensor.js';
import type { GraphBuilder, ParamInit } from '../onnx/builder.js';
import { UserError } from '../util/errors.js';
import { encodeModel, OnnxDataType, type TensorProtoObj } from '../onnx/proto.js';

/** Bump when the meaning of a cache entry changes (layout, dtype, param transforms). */
export const WEIGHTS_CACHE_VERSION = 1;
const ALIGN = 64;
const DEFAULT_LIMIT_BYTES = 20 * 1024 ** 3;
/** A temporary folder untouched this long belongs to a process that stopped without cleaning up. */
const STALE_TMP_MS = 6 * 3600 * 1000;

export interface WeightsCacheOptions {
  /** Cache folder; default `$SDSTUDIO_CACHE/weights` or `~/.cache/sdstudio/weights`. */
  cacheDir?: string;
  /** Total size above which least-recently-used entries are removed (default 20 GiB or `$SDSTUDIO_CACHE_LIMIT_GB`). */
  limitBytes?: number;
  /** Told when a lasting entry is about to be written (a conversion that happens once per checkpoint). */
  onNotice?: (message: string) => void;
}

/** A serialised model plus the folder its external data is resolved against. */
export interface PreparedModel {
  bytes: Uint8Array;
  externalFolder: string;
  /** How the weights were placed (for logs and tests). */
  placement: 'in-place' | 'in-place+overlay' | 'cache' | 'cache-hit';
  /** Cache entry folder, when the weights are in the cache. */
  cacheEntry?: string;
  /**
   * Some params have no file location (in memory, patched): the entry can never be reused,
   * so its owner removes it (`removeEntry`) once the session is released.
   */
  ephemeral?: boolean;
}

export function defaultCacheDir(): string {
  const base = process.env.SDSTUDIO_CACHE ?? join(homedir(), '.cache', 'sdstudio');
  return join(base, 'weights');
}

function limitFromEnv(): number {
  const gb = Number(process.env.SDSTUDIO_CACHE_LIMIT_GB);
  return Number.isFinite(gb) && gb > 0 ? gb * 1024 ** 3 : DEFAULT_LIMIT_BYTES;
}

const ONNX_TYPE: Record<ParamInit['dtype'], number> = {
  F32: OnnxDataType.FLOAT,
  F16: OnnxDataType.FLOAT16,
  I8: OnnxDataType.INT8,
};

function external(p: ParamInit, location: string, offset: number, length: number): TensorProtoObj {
  return {
    name: p.name,
    dims: p.dims,
    dataType: ONNX_TYPE[p.dtype],
    dataLocation: 1,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  };
}

/** Beyond this many bytes of params that cannot be referenced in place, use the weights cache. */
export const OVERLAY_MAX_BYTES = 256 * 1024 ** 2;

/**
 * The file holding the most param bytes stored as onnxruntime gets them (F32 for float32 params,
 * F16 for float16 ones: referencable in place), and which params live there.
 */
function inPlaceFile(source: TensorSource, params: ParamInit[]): { file?: string; located: Set<string> } {
  const bytesPerFile = new Map<string, number>();
  for (const p of params) {
    const info = source.info(p.key);
    const loc = source.location(p.key);
    if (!info || info.dtype !== p.dtype || !loc) continue;
    bytesPerFile.set(loc.path, (bytesPerFile.get(loc.path) ?? 0) + loc.length);
  }
  let file: string | undefined;
  for (const [f, n] of bytesPerFile) if (file === undefined || n > bytesPerFile.get(file)!) file = f;
  const located = new Set<string>();
  if (file !== undefined) {
    for (const p of params) {
      if (source.info(p.key)?.dtype === p.dtype && source.location(p.key)?.path === file) located.add(p.key);
    }
  }
  return { file, located };
}

/**
 * Serialise `g`, placing its weights: in place in the checkpoint; in place plus a small inline
 * overlay for the few params that are not (e.g. LoRA-patched tensors, at most OVERLAY_MAX_BYTES);
 * or in the weights cache.
 */
export async function prepareModel(
  g: GraphBuilder,
  graphVersion: string,
  opts: WeightsCacheOptions = {},
): Promise<PreparedModel> {
  const params = [...g.params.values()];
  const source = g.source;
  const { file, located } = inPlaceFile(source, params);
  const rest = params.filter((p) => !located.has(p.key));
  const restBytes = rest.reduce((n, p) => n + numel(p.shape) * paramBytes(p), 0);
  if (file !== undefined && restBytes <= OVERLAY_MAX_BYTES) {
    const overlay = new Map<string, Uint8Array>();
    for (const p of rest) {
      if (overlay.has(p.key)) continue;
      overlay.set(p.key, await paramData(source, p));
    }
    // onnxruntime refuses external data whose real path leaves the model folder, so a symlinked
    // checkpoint is referenced through its target.
    const real = await realpath(file).catch(() => file);
    const name = basename(real);
    const model = g.toModel((p) => {
      const inline = overlay.get(p.key);
      if (inline) {
        return { name: p.name, dims: p.dims, dataType: ONNX_TYPE[p.dtype], rawData: inline };
      }
      const loc = source.location(p.key)!;
      return external(p, name, loc.offset, loc.length);
    });
    return {
      bytes: encodeModel(model),
      externalFolder: dirname(real),
      placement: rest.length > 0 ? 'in-place+overlay' : 'in-place',
    };
  }
  const cache = new WeightsCache(opts);
  const { entry, index, hit, ephemeral } = await cache.ensure(source, params, graphVersion, g.graphName);
  const model = g.toModel((p) => {
    const slot = index[p.key];
    if (!slot) {
      throw new UserError(
        `weights cache entry ${entry} lacks ${p.key} (damaged); delete that folder and run again`,
      );
    }
    return external(p, 'weights.bin', slot[0], slot[1]);
  });
  return {
    bytes: encodeModel(model),
    externalFolder: entry,
    placement: hit ? 'cache-hit' : 'cache',
    cacheEntry: entry,
    ephemeral,
  };
}

/**
 * What a one-time weights conversion writes per second on the 2-core development VM (docs/
 * performance.md, Session 7), for the notice's estimate: float16 → float32, and int8 quantization
 * (per output byte: it reads 2–4 bytes and computes scales).
 */
export const CONVERT_BYTES_PER_S = 60e6;
export const QUANTIZE_BYTES_PER_S = 20e6;

export function formatGb(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${Math.max(1, Math.round(bytes / 1e6))} MB`;
}

/** "20 s", "3 minutes": a rough duration for a notice. */
export function aboutDuration(seconds: number): string {
  if (seconds < 90) return `${Math.max(5, Math.ceil(seconds / 5) * 5)} s`;
  return `${Math.round(seconds / 60)} minutes`;
}

/** Bytes per element of a param as onnxruntime gets it. */
export function paramBytes(p: ParamInit): number {
  return DTYPE_BYTES[p.dtype];
}

/**
 * A param's bytes as onnxruntime gets them: int8 as stored, any float dtype as float32 or, for
 * float16 params, float16 (an F16 tensor as stored, others rounded to nearest even).
 */
async function paramData(source: TensorSource, p: ParamInit): Promise<Uint8Array> {
  if (p.dtype === 'I8') return (await source.read(p.key)).data;
  if (p.dtype === 'F16' && source.info(p.key)?.dtype === 'F16') return (await source.read(p.key)).data;
  const data = await source.readFloat32(p.key);
  if (p.dtype === 'F16') return float32ArrayToTensor(data, p.shape, 'F16').data;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

type CacheIndex = Record<string, [offset: number, length: number]>;

/**
 * Identity of the bytes behind `keys`: the files their locations point into (real path + size +
 * mtime). Undefined when any tensor has no file location (in memory, patched, converted on read):
 * such weights cannot be recognised again, so their entry is ephemeral.
 */
export async function sourceIdentity(source: TensorSource, keys: string[]): Promise<string | undefined> {
  const files = new Set<string>();
  for (const k of keys) {
    const loc = source.location(k) ?? source.derivedFrom?.(k);
    if (!loc) return undefined;
    files.add(loc.path);
  }
  const ids: string[] = [];
  try {
    for (const f of [...files].sort()) {
      const real = await realpath(f);
      const st = await stat(real);
      ids.push(`${real}|${st.size}|${st.mtimeMs}`);
    }
  } catch {
    return undefined;
  }
  return ids.join('\n');
}

export class WeightsCache {
  readonly dir: string;
  readonly limitBytes: number;

  private readonly onNotice?: (message: string) => void;

  constructor(opts: WeightsCacheOptions = {}) {
    this.dir = opts.cacheDir ?? defaultCacheDir();
    this.limitBytes = opts.limitBytes ?? limitFromEnv();
    this.onNotice = opts.onNotice;
  }

  /** Make sure an entry with `params` converted to their dtypes exists; returns its folder and index. */
  async ensure(
    source: TensorSource,
    params: ParamInit[],
    graphVersion: string,
    /** The network, for the notice (e.g. "UNet"). */
    what = 'network',
  ): Promise<{ entry: string; index: CacheIndex; hit: boolean; ephemeral: boolean }> {
    const byKey = new Map(params.map((p) => [p.key, p]));
    const keys = [...byKey.keys()].sort();
    // float32 entries keep the hashes they had before float16 entries existed.
    const keyWithDtype = (k: string) => (byKey.get(k)!.dtype === 'F16' ? `${k}|F16` : k);
    const known = await sourceIdentity(source, keys);
    const ephemeral = known === undefined;
    const identity = known ?? `memory:${randomUUID()}`;
    const hash = createHash('sha256')
      .update(JSON.stringify([WEIGHTS_CACHE_VERSION, graphVersion, identity, keys.map(keyWithDtype)]))
      .digest('hex')
      .slice(0, 32);
    const entry = join(this.dir, hash);
    await mkdir(this.dir, { recursive: true });
    try {
      const index = JSON.parse(await readFile(join(entry, 'index.json'), 'utf8')) as CacheIndex;
      const now = new Date();
      await utimes(join(entry, 'index.json'), now, now).catch(() => undefined);
      return { entry, index, hit: true, ephemeral };
    } catch {
      // not cached yet (or unreadable): write it
    }
    if (!ephemeral) {
      const bytes = [...byKey.values()].reduce((n, p) => n + numel(p.shape) * paramBytes(p), 0);
      const int8 = [...byKey.values()].some((p) => p.dtype === 'I8');
      this.onNotice?.(
        `preparing the ${what} weights of ${basename(source.path)} for onnxruntime: ` +
          `${int8 ? 'quantizing to int8' : 'converting'} ${formatGb(bytes)} once per checkpoint, ` +
          `about ${aboutDuration(bytes / (int8 ? QUANTIZE_BYTES_PER_S : CONVERT_BYTES_PER_S))} (saved in the weights cache)`,
      );
    }
    const tmp = join(this.dir, `.tmp-${hash}-${process.pid}-${randomUUID().slice(0, 8)}`);
    await mkdir(tmp, { recursive: true });
    try {
      const index: CacheIndex = {};
      const fh = await open(join(tmp, 'weights.bin'), 'w');
      try {
        let pos = 0;
        for (const key of keys) {
          const bytes = await paramData(source, byKey.get(key)!);
          pos = Math.ceil(pos / ALIGN) * ALIGN;
          let done = 0;
          while (done < bytes.byteLength) {
            const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, pos + done);
            done += bytesWritten;
          }
          index[key] = [pos, bytes.byteLength];
          pos += bytes.byteLength;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await writeFile(join(tmp, 'index.json'), JSON.stringify(index));
      try {
        await rename(tmp, entry);
      } catch {
        // Another process finished the same entry first: use theirs.
        await rm(tmp, { recursive: true, force: true });
      }
      const final = JSON.parse(await readFile(join(entry, 'index.json'), 'utf8')) as CacheIndex;
      await this.evict(entry);
      return { entry, index: final, hit: false, ephemeral };
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /** Remove least-recently-used entries until the cache fits its limit (never `keep`). */
  async evict(keep: string): Promise<void> {
    const entries: { path: string; size: number; used: number }[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name.startsWith('.tmp-')) {
        // Left by a process stopped while writing (Ctrl-C during a conversion or optimisation).
        const path = join(this.dir, name);
        const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now());
        if (age > STALE_TMP_MS) await rm(path, { recursive: true, force: true }).catch(() => undefined);
        continue;
      }
      const path = join(this.dir, name);
      try {
        const w = await stat(join(path, 'weights.bin'));
        const i = await stat(join(path, 'index.json'));
        entries.push({ path, size: w.size, used: i.mtimeMs });
      } catch {
        continue;
      }
    }
    let total = entries.reduce((s, e) => s + e.size, 0);
    entries.sort((a, b) => a.used - b.used);
    for (const e of entries) {
      if (total <= this.limitBytes) break;
      if (e.path === keep) continue;
      try {
        await rm(e.path, { recursive: true, force: true });
        total -= e.size;
      } catch {
        // In use where open files cannot be removed (Windows): try again at the next eviction.
      }
    }
  }
}

/** Delete one cache entry (an ephemeral one whose session has been released). */
export async function removeEntry(entry: string): Promise<void> {
  await rm(entry, { recursive: true, force: true });
}
