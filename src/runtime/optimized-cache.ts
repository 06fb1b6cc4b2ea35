/**
 * onnxruntime's level-'all' optimisation turns the SD 1.5 UNet's convolutions into MLAS's blocked
 * NCHWc kernels — about a fifth less convolution time, ≈ 12 % off a 512² step — but takes ≈ 35 s
 * for the UNet's 2.2 GB of convolution weights (its NchwcTransformer; measured in
 * docs/performance.md). So it is done once per checkpoint and graph: onnxruntime saves the
 * optimised model (`optimizedModelFilePath`, initializers in `weights.bin` beside it) into the
 * weights cache, and later sessions load that file with optimisations off in ≈ 4 s.
 *
 * The entry is written in a temporary folder and renamed into place (a half-written entry is never
 * used); its key covers the weights' identity, the graph, the onnxruntime version and the CPU (the
 * blocked layout depends on its vector width). `index.json` marks a complete entry, so the weights
 * cache's size limit and least-recently-used eviction cover these entries too.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import type { GraphBuilder } from '../onnx/builder.js';
import { encodeModel, OnnxDataType } from '../onnx/proto.js';
import { prefetchFile } from './prefetch.js';
import { checkProvider, ortSessionOptions, type SessionOptions } from './session.js';
import { WeightsCache, type PreparedModel, type WeightsCacheOptions } from './weights.js';

/** Bump when what an entry holds changes. */
const OPTIMIZED_CACHE_VERSION = 1;
const MODEL_FILE = 'model.onnx';
const WEIGHTS_FILE = 'weights.bin';
const MARKER = 'index.json';

export interface OptimizedSessionResult {
  session: ort.InferenceSession;
  /**
   * 'hit': loaded a saved model; 'created': optimised now and saved for next time; 'unsaved': the
   * cache could not be written, so the session runs at level 'extended'.
   */
  status: 'hit' | 'created' | 'unsaved';
  entry: string;
}

/**
 * A hash of the graph as onnxruntime would see it minus the weights' bytes (nodes, attributes,
 * inputs, outputs, inline constants, every initializer's name, type and dims): any change to the
 * builders gives another cache entry, so a saved model is never one of an older graph.
 */
export function graphFingerprint(g: GraphBuilder): string {
  const model = g.toModel((p) => ({
    name: p.name,
    dims: p.dims,
    dataType: p.dtype === 'I8' ? OnnxDataType.INT8 : OnnxDataType.FLOAT,
  }));
  return createHash('sha256').update(encodeModel(model)).digest('hex');
}

/** The cache folder of the optimised model for `identity` (weights) + `graphKey` (graph and options). */
function entryFor(cacheDir: string, identity: string, graphKey: string): string {
  const versions = ort.env.versions as Record<string, string | undefined>;
  const hash = createHash('sha256')
    .update(
      JSON.stringify([
        OPTIMIZED_CACHE_VERSION,
        versions.common ?? versions.node ?? '',
        cpus()[0]?.model ?? '',
        process.arch,
        identity,
        graphKey,
      ]),
    )
    .digest('hex')
    .slice(0, 32);
  return join(cacheDir, `opt-${hash}`);
}

/**
 * A CPU session of `model` optimised at level 'all': loaded from the cache when this checkpoint
 * and graph were optimised before, else optimised now (the slow part) and saved. `model` may be a
 * function, called only when the graph has to be optimised (placing weights can cost a conversion).
 * `identity` must name the weights' files (weights.sourceIdentity); `onOptimize` is told before the
 * slow path starts, so a caller can say why this load takes longer.
 */
export async function createOptimizedSession(
  model: PreparedModel | (() => Promise<PreparedModel>),
  identity: string,
  graphKey: string,
  opts: SessionOptions,
  cacheOpts: WeightsCacheOptions = {},
  onOptimize?: () => void,
): Promise<OptimizedSessionResult> {
  const provider = checkProvider(opts.provider ?? 'cpu');
  if (provider !== 'cpu') throw new Error('the optimised-model cache is for the CPU provider');
  const cache = new WeightsCache(cacheOpts);
  const entry = entryFor(cache.dir, identity, graphKey);
  const marker = join(entry, MARKER);
  const saved = await stat(marker).then(
    () => true,
    () => false,
  );
  if (saved) {
    const now = new Date();
    await utimes(marker, now, now).catch(() => undefined);
    const options = ortSessionOptions(provider, { ...opts, optLevel: 'disabled' });
    // The mapped weights are read on first use; read them into the page cache now, alongside the
    // session's creation, instead of inside the first run.
    const prefetched = prefetchFile(join(entry, WEIGHTS_FILE));
    try {
      const session = await ort.InferenceSession.create(join(entry, MODEL_FILE), options);
      await prefetched;
      return { session, status: 'hit', entry };
    } catch {
      // Damaged (e.g. an eviction interrupted halfway): remove it and optimise again.
      await prefetched;
      await rm(entry, { recursive: true, force: true }).catch(() => undefined);
    }
  }
  onOptimize?.();
  const prepared = typeof model === 'function' ? await model() : model;
  try {
    return await optimizeAndSave(prepared, entry, provider, opts, cache);
  } catch {
    // The cache cannot be written (read-only folder, disk full): run unsaved at level 'extended'
    // rather than not at all — the optimisation alone would cost more than it saves.
    const options = ortSessionOptions(provider, { ...opts, optLevel: 'extended' });
    options.extra = { session: { model_external_initializers_file_folder_path: prepared.externalFolder } };
    return { session: await ort.InferenceSession.create(prepared.bytes, options), status: 'unsaved', entry };
  }
}

async function optimizeAndSave(
  prepared: PreparedModel,
  entry: string,
  provider: ReturnType<typeof checkProvider>,
  opts: SessionOptions,
  cache: WeightsCache,
): Promise<OptimizedSessionResult> {
  await mkdir(cache.dir, { recursive: true });
  const tmp = join(cache.dir, `.tmp-opt-${process.pid}-${randomUUID().slice(0, 8)}`);
  await mkdir(tmp, { recursive: true });
  try {
    const options = ortSessionOptions(provider, { ...opts, optLevel: 'all' });
    options.optimizedModelFilePath = join(tmp, MODEL_FILE);
    options.extra = {
      session: {
        model_external_initializers_file_folder_path: prepared.externalFolder,
        optimized_model_external_initializers_file_name: WEIGHTS_FILE,
        optimized_model_external_initializers_min_size_in_bytes: '1024',
      },
    };
    const session = await ort.InferenceSession.create(prepared.bytes, options);
    try {
      const size = (await stat(join(tmp, WEIGHTS_FILE)).catch(() => undefined))?.size ?? 0;
      await writeFile(join(tmp, MARKER), JSON.stringify({ kind: 'optimized-onnx', weightsBytes: size }));
      try {
        await rename(tmp, entry);
      } catch {
        if (await isSavedModel(entry)) {
          // Another process saved the same entry first: theirs is as good.
        } else {
          // A folder left by a crash while saving: replace it.
          await rm(entry, { recursive: true, force: true });
          await rename(tmp, entry).catch(() => undefined);
        }
      }
      await cache.evict(entry);
    } catch (e) {
      await session.release();
      throw e;
    }
    return { session, status: 'created', entry };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Whether `entry` holds a complete saved model (for tests and tools). */
export async function isSavedModel(entry: string): Promise<boolean> {
  try {
    return JSON.parse(await readFile(join(entry, MARKER), 'utf8')).kind === 'optimized-onnx';
  } catch {
    return false;
  }
}
