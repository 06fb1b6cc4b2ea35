/**
 * onnxruntime-node sessions: execution provider by name, threads, optimisation level, free
 * dimension overrides. Models come from memory with their external data resolved against a folder
 * (`session.model_external_initializers_file_folder_path`), which onnxruntime maps from disk.
 */
import { availableParallelism } from 'node:os';
import ort from 'onnxruntime-node';
import { UserError } from '../util/errors.js';
import type { PreparedModel } from './weights.js';

export type Provider = 'cpu' | 'cuda' | 'webgpu' | 'dml' | 'coreml';
export const PROVIDERS: readonly Provider[] = ['cpu', 'cuda', 'webgpu', 'dml', 'coreml'];

export type OptLevel = 'disabled' | 'basic' | 'extended' | 'all';

export interface SessionOptions {
  provider?: Provider;
  /** Intra-op threads; default: os.availableParallelism() (onnxruntime's own default picked 1 on a 2-vCPU VM). */
  threads?: number;
  /** Default 'extended': created ~6× faster than 'all' at about the same step time (docs/performance.md). */
  optLevel?: OptLevel;
  /** Fix symbolic dimensions (e.g. {batch: 2, height: 64, width: 64}) so kernels can specialise. */
  freeDimOverrides?: Record<string, number>;
  logSeverity?: 0 | 1 | 2 | 3 | 4;
  /**
   * onnxruntime's CPU memory arena (default on): keeps each session's peak activation memory
   * allocated between runs. Off returns it after every run, lowering the resident total when
   * several large sessions (UNet, VAE) live in one process.
   */
  memArena?: boolean;
  /**
   * onnxruntime's memory-pattern planner (default on). Off, a session reuses arena chunks from its
   * first run instead of allocating a planned block on the second: one slow first run instead of
   * two, and 0.6–0.9 GB less peak for the VAE at 512² (docs/performance.md).
   */
  memPattern?: boolean;
}

/** Providers this onnxruntime build can use on this machine. */
export function availableProviders(): Provider[] {
  const names = new Set(ort.listSupportedBackends().map((b) => b.name));
  return PROVIDERS.filter((p) => names.has(p));
}

export function checkProvider(provider: string): Provider {
  if (!(PROVIDERS as readonly string[]).includes(provider)) {
    throw new UserError(`unknown execution provider "${provider}"; choose one of ${PROVIDERS.join(', ')}`);
  }
  const available = availableProviders();
  if (!available.includes(provider as Provider)) {
    throw new UserError(
      `execution provider "${provider}" is not available in this onnxruntime build on this machine ` +
        `(available: ${available.join(', ')}); use --provider cpu, or install an onnxruntime-node with ${provider} support`,
    );
  }
  return provider as Provider;
}

/** onnxruntime's session options for our SessionOptions on `provider` (threads default to every CPU). */
export function ortSessionOptions(
  provider: Provider,
  opts: SessionOptions,
): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider],
    graphOptimizationLevel: opts.optLevel ?? 'extended',
    logSeverityLevel: opts.logSeverity ?? 3,
  };
  if (opts.threads !== undefined) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1)
      throw new UserError(`--threads must be a positive integer`);
    options.intraOpNumThreads = opts.threads;
  } else {
    // onnxruntime's own default (physical cores as it detects them) chose 1 thread on the 2-vCPU
    // development VM and doubled the step time (13.8 s vs 6.3 s measured); use every CPU we may run on.
    options.intraOpNumThreads = availableParallelism();
  }
  if (opts.freeDimOverrides) options.freeDimensionOverrides = opts.freeDimOverrides;
  if (opts.memArena !== undefined) options.enableCpuMemArena = opts.memArena;
  if (opts.memPattern !== undefined) options.enableMemPattern = opts.memPattern;
  return options;
}

export async function createSession(
  model: PreparedModel,
  opts: SessionOptions = {},
): Promise<ort.InferenceSession> {
  const provider = checkProvider(opts.provider ?? 'cpu');
  const options = ortSessionOptions(provider, opts);
  options.extra = { session: { model_external_initializers_file_folder_path: model.externalFolder } };
  try {
    return await ort.InferenceSession.create(model.bytes, options);
  } catch (e) {
    const msg = (e as Error).message;
    if (provider !== 'cpu') {
      throw new UserError(`could not start the ${provider} execution provider: ${msg}; try --provider cpu`);
    }
    throw e;
  }
}

/** Run a session with float32/int64 inputs and return the requested outputs as Float32Arrays. */
export async function runSession(
  session: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
  outputs: string[],
): Promise<Record<string, { data: Float32Array; dims: number[] }>> {
  const res = await session.run(feeds, outputs);
  const out: Record<string, { data: Float32Array; dims: number[] }> = {};
  for (const name of outputs) {
    const t = res[name];
    if (!t) throw new Error(`session returned no output ${name}`);
    out[name] = { data: t.data as Float32Array, dims: [...t.dims] };
  }
  return out;
}

export function f32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function i64(data: BigInt64Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', data, dims);
}
