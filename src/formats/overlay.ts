/**
 * The one overlay `TensorSource`: a base source seen through a routing rule. Every view the engine
 * puts over a checkpoint is one — A1111's key renames (formats/key-renames.ts), a separate VAE file
 * (pipeline/model.ts), LoRA-patched weights (adapters/patched-source.ts) and the int8 weights
 * (runtime/quantize.ts) — so each states only where a name comes from, and the rules every
 * consumer relies on live here once: a tensor read from another source keeps that source's file
 * location (so weights placement still maps it in place), a computed tensor has none (so caches key
 * it by `derivedFrom` or treat it as in-memory), and a missing one is an error naming it.
 */
import type { FileLocation, Tensor, TensorInfo, TensorSource } from './tensor.js';

/** A stored tensor of some source, under that source's own name. */
export interface StoredRoute {
  source: TensorSource;
  key: string;
}

/** A tensor the overlay makes itself (patched, quantized): never at a file location. */
export interface ComputedRoute {
  info: TensorInfo;
  read(): Promise<Tensor>;
  readFloat32(): Promise<Float32Array>;
  /** Where the stored tensor it is computed from lies (weights caches recognise the file again). */
  derivedFrom?(): FileLocation | undefined;
}

export type OverlayRoute = StoredRoute | ComputedRoute;

export interface OverlayOptions {
  /** Default: the base's. */
  path?: string;
  format?: TensorSource['format'];
  metadata?: Record<string, string>;
  /** Sources closed with this one (default none: the caller keeps owning the base). */
  owns?: readonly TensorSource[];
}

function isStored(r: OverlayRoute): r is StoredRoute {
  return 'source' in r;
}

export abstract class OverlaySource implements TensorSource {
  readonly path: string;
  readonly format: TensorSource['format'];
  readonly metadata: Record<string, string>;
  private readonly owns: readonly TensorSource[];

  constructor(
    protected readonly base: TensorSource,
    opts: OverlayOptions = {},
  ) {
    this.path = opts.path ?? base.path;
    this.format = opts.format ?? base.format;
    this.metadata = opts.metadata ?? base.metadata;
    this.owns = opts.owns ?? [];
  }

  /** Where `name` comes from; undefined when this view has no such tensor. */
  protected abstract route(name: string): OverlayRoute | undefined;

  /** The names this view lists (default: the base's). */
  keys(): string[] {
    return this.base.keys();
  }

  has(name: string): boolean {
    return this.info(name) !== undefined;
  }

  info(name: string): TensorInfo | undefined {
    const r = this.route(name);
    if (!r) return undefined;
    if (!isStored(r)) return r.info;
    const i = r.source.info(r.key);
    return i && { ...i, name };
  }

  private routeOrThrow(name: string): OverlayRoute {
    const r = this.route(name);
    if (!r) throw new Error(`tensor "${name}" is not in ${this.path}`);
    return r;
  }

  read(name: string): Promise<Tensor> {
    try {
      const r = this.routeOrThrow(name);
      return isStored(r) ? r.source.read(r.key) : r.read();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  readFloat32(name: string): Promise<Float32Array> {
    try {
      const r = this.routeOrThrow(name);
      return isStored(r) ? r.source.readFloat32(r.key) : r.readFloat32();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  location(name: string): FileLocation | undefined {
    const r = this.route(name);
    return r && isStored(r) ? r.source.location(r.key) : undefined;
  }

  derivedFrom(name: string): FileLocation | undefined {
    const r = this.route(name);
    if (!r) return undefined;
    return isStored(r) ? r.source.derivedFrom?.(r.key) : r.derivedFrom?.();
  }

  async close(): Promise<void> {
    for (const s of this.owns) await s.close();
  }
}
