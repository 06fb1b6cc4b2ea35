/**
 * The models a process keeps loaded between jobs. A job asks for a checkpoint + VAE + UNet
 * precision + provider (+ later its LoRA set); the library hands back the loaded model it already
 * has for that key, or loads it, and unloads the least recently used ones beyond `keep` once no
 * job holds them. The server keeps one library for its lifetime; the CLI makes one per run and
 * releases it at exit. No globals: two libraries never share anything.
 */
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import type { LoraSpec } from '../adapters/lora-library.js';
import type { Provider } from '../runtime/session.js';
import { UserError } from '../util/errors.js';
import type { LoadedModel, LoadModelOptions } from './model.js';
import type { PreviewMode } from './preview-mode.js';
import type { TaesdDecoder } from './taesd.js';
import type { UnetPrecisionChoice } from '../params/unet-precision.js';

/** What identifies one loaded model. */
export interface ModelSpec {
  /** Real path of the checkpoint file. */
  checkpoint: string;
  /** Real path of a VAE swapped in, or null for the checkpoint's own. */
  vaePath: string | null;
  precision: UnetPrecisionChoice;
  /** undefined = onnxruntime's CPU provider. */
  provider?: Provider;
  /** What the UNet predicts, when the request overrides the file (`--prediction`); part of the key. */
  prediction?: 'eps' | 'v';
  /** LoRA / LyCORIS networks patched into the weights, in prompt order (adapters/run-loras.ts). */
  loras?: readonly LoraSpec[];
}

export interface ModelLibraryOptions {
  /** The A1111-style data folder: models/Stable-diffusion, models/VAE, models/VAE-taesd, embeddings/. */
  dataDir: string;
  /** Checkpoint folder (A1111 --ckpt-dir); default <dataDir>/models/Stable-diffusion. */
  ckptDir?: string;
  /** VAE folder (A1111 --vae-dir); default <dataDir>/models/VAE. */
  vaeDir?: string;
  /** Weights cache folder (runtime/weights.ts). */
  cacheDir?: string;
  clipVocab?: string;
  /** How many models stay loaded when no job uses them (default 1). */
  keep?: number;
  /** Told about slow one-time work (optimising or quantizing a checkpoint's UNet). */
  onNotice?: (message: string) => void;
  /** Loads one model (default pipeline/model.ts loadModel); tests count loads through it. */
  loader?: (opts: LoadModelOptions) => Promise<LoadedModel>;
}

/** A loaded model lent to a job; `done()` gives it back (it stays cached). */
export interface ModelLease {
  model: LoadedModel;
  key: string;
  done(): void;
}

interface Entry {
  key: string;
  spec: ModelSpec;
  loading: Promise<LoadedModel>;
  users: number;
  lastUsed: number;
}

export const MODEL_EXTENSIONS = ['.safetensors', '.ckpt', '.pt', '.bin'];

export function modelKey(spec: ModelSpec): string {
  const loras = (spec.loras ?? []).map((l) => `${l.path}:${l.name}:${l.te}:${l.unet}:${l.dynDim}`).join(',');
  return [
    spec.checkpoint,
    spec.vaePath ?? '-',
    spec.precision,
    spec.provider ?? 'cpu',
    loras,
    ...(spec.prediction ? [spec.prediction] : []),
  ].join('|');
}

export class ModelLibrary {
  readonly dataDir: string;
  readonly ckptDir: string;
  readonly vaeDir: string;
  private readonly entries = new Map<string, Entry>();
  private readonly previews = new Map<string, Promise<TaesdDecoder | null>>();
  private clock = 0;
  private closed = false;

  constructor(readonly options: ModelLibraryOptions) {
    this.dataDir = options.dataDir;
    this.ckptDir = options.ckptDir ?? join(options.dataDir, 'models', 'Stable-diffusion');
    this.vaeDir = options.vaeDir ?? join(options.dataDir, 'models', 'VAE');
  }

  /** Checkpoint files under the checkpoint folder (sub-folders included; not `*.vae.*`), sorted. */
  listCheckpoints(): string[] {
    return listModelFiles(this.ckptDir, /\.vae\.[^.]+$/i);
  }

  /**
   * A checkpoint by path, by file name or stem (case-insensitive), by A1111 title
   * ("name.safetensors [hash]") or by hash (the 10-hex "Model hash" or the full sha256, looked up
   * in the hash cache, so only files hashed before are found that way). No name: the first one.
   * Returns the real path (onnxruntime resolves links when it maps weights).
   */
  async findCheckpoint(nameOrPath?: string): Promise<string> {
    try {
      return this.findCheckpointByName(nameOrPath);
    } catch (e) {
      const title = nameOrPath && /\[([0-9a-f]{8,10})\]$/i.exec(nameOrPath);
      const hash = title
        ? title[1]!
        : nameOrPath && /^([0-9a-f]{10}|[0-9a-f]{64})$/i.test(nameOrPath)
          ? nameOrPath
          : null;
      if (!hash) throw e;
      const { cachedHashes } = await import('../tools/hash.js');
      const h = hash.toLowerCase();
      for (const p of this.listCheckpoints()) {
        const known = await cachedHashes(p);
        if (known && (known.autov2 === h || known.sha256 === h)) return realpathSync(p);
      }
      throw e;
    }
  }

  /** `findCheckpoint` without the hash lookup (synchronous). */
  findCheckpointByName(nameOrPath?: string): string {
    const dir = this.ckptDir;
    const all = this.listCheckpoints();
    if (!nameOrPath) {
      if (all.length > 0) return realpathSync(all[0]!);
      throw new UserError(
        `no model found: put an SD 1.5 checkpoint (.safetensors or .ckpt, e.g. v1-5-pruned-emaonly.safetensors ` +
          `from Hugging Face or Civitai) in ${dir}, or pass --model PATH`,
        4,
      );
    }
    const rel = (p: string) => p.slice(dir.length + 1).toLowerCase();
    const want = nameOrPath.toLowerCase();
    if (nameOrPath.includes('/') || nameOrPath.includes('\\')) {
      if (isFile(nameOrPath)) return realpathSync(nameOrPath);
      if (!all.some((p) => rel(p) === want || stem(rel(p)) === want)) {
        throw new UserError(
          `model file ${resolve(nameOrPath)} does not exist; check the path` +
            (all.length
              ? ` (or give a name from ${dir}: ${all.map((p) => basename(p)).join(', ')})`
              : ` (or put the checkpoint in ${dir} and give its name)`),
          4,
        );
      }
    }
    // A title like "name.safetensors [abcdef0123]" names the file.
    const wanted = want.replace(/\s*\[[0-9a-f]{8,10}\]$/i, '');
    const byName = all.find((p) => {
      const file = basename(p).toLowerCase();
      return file === wanted || stem(file) === wanted || rel(p) === wanted || stem(rel(p)) === wanted;
    });
    if (byName) return realpathSync(byName);
    if (isFile(nameOrPath)) return realpathSync(nameOrPath);
    throw new UserError(
      `model "${nameOrPath}" not found in ${dir}` +
        (all.length ? ` (found: ${all.map((p) => basename(p)).join(', ')})` : '') +
        '; give a file name from there or the path of a checkpoint file (no model yet? any SD 1.5 ' +
        'checkpoint works, e.g. v1-5-pruned-emaonly.safetensors from ' +
        'https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5)',
      4,
    );
  }

  /**
   * The VAE to use: "None"/undefined → none; "Automatic" → a .vae.* file beside the checkpoint
   * (none: the checkpoint's own); else a file in the VAE folder by name or stem, or a path.
   */
  findVae(name: string | undefined, checkpoint: string): string | null {
    if (!name || name === 'None') return null;
    if (name === 'Automatic') {
      const s = checkpoint.slice(0, -extname(checkpoint).length);
      for (const ext of ['.vae.safetensors', '.vae.pt', '.vae.ckpt'])
        if (existsSync(s + ext)) return realpathSync(s + ext);
      return null;
    }
    const all = listModelFiles(this.vaeDir);
    const match = all.find((p) => basename(p) === name || basename(p, extname(p)) === name);
    if (match) return realpathSync(match);
    if (isFile(name)) return realpathSync(name);
    throw new UserError(`VAE "${name}" not found in ${this.vaeDir}; put the file there or pass its path`, 4);
  }

  /** Whether a model for `spec` is loaded (or loading) now. */
  has(spec: ModelSpec): boolean {
    return this.entries.has(modelKey(spec));
  }

  /** The specs of the models loaded now, most recently used first. */
  loaded(): ModelSpec[] {
    return [...this.entries.values()].sort((a, b) => b.lastUsed - a.lastUsed).map((e) => e.spec);
  }

  /** The model for `spec`, loaded once and shared; give it back with `done()`. */
  async acquire(spec: ModelSpec): Promise<ModelLease> {
    if (this.closed) throw new Error('this model library has been released');
    const key = modelKey(spec);
    let entry = this.entries.get(key);
    if (!entry) {
      const loader = this.options.loader ?? (await import('./model.js')).loadModel;
      const load = async (): Promise<LoadedModel> => {
        // Idle models beyond `keep` go before this one loads, so two never sit in memory at once.
        await this.evict(key);
        return loader({
          checkpoint: spec.checkpoint,
          vaePath: spec.vaePath,
          provider: spec.provider,
          cacheDir: this.options.cacheDir,
          clipVocab: this.options.clipVocab,
          unetPrecision: spec.precision,
          prediction: spec.prediction,
          onNotice: this.options.onNotice,
          loras: spec.loras,
        });
      };
      const e: Entry = { key, spec, users: 0, lastUsed: 0, loading: Promise.resolve(null as never) };
      this.entries.set(key, e);
      e.loading = load();
      entry = e;
      e.loading.catch(() => {
        if (this.entries.get(key) === e) this.entries.delete(key);
      });
    }
    entry.users++;
    entry.lastUsed = ++this.clock;
    let model: LoadedModel;
    try {
      model = await entry.loading;
    } catch (e) {
      entry.users--;
      throw e;
    }
    const e = entry;
    let given = false;
    return {
      model,
      key,
      done: () => {
        if (given) return;
        given = true;
        e.users--;
        e.lastUsed = ++this.clock;
        void this.evict(null);
      },
    };
  }

  /** Unloads idle models beyond `keep` (least recently used first); `wanted` is never unloaded. */
  private async evict(wanted: string | null): Promise<void> {
    const keep = Math.max(0, this.options.keep ?? 1);
    const idle = [...this.entries.values()]
      .filter((e) => e.users === 0 && e.key !== wanted)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    const busy = this.entries.size - idle.length;
    const allowedIdle = Math.max(0, keep - busy);
    for (const e of idle.slice(0, Math.max(0, idle.length - allowedIdle))) await this.unloadEntry(e);
  }

  private async unloadEntry(e: Entry): Promise<void> {
    this.entries.delete(e.key);
    const m = await e.loading.catch(() => null);
    await m?.release();
  }

  /** Unloads the model of `spec` (or every idle model) now; one a job holds is refused. */
  async unload(spec?: ModelSpec): Promise<void> {
    const targets = spec
      ? [this.entries.get(modelKey(spec))].filter((e): e is Entry => !!e)
      : [...this.entries.values()];
    for (const e of targets) {
      if (e.users > 0) {
        if (spec)
          throw new UserError('that model is in use by a running job; unload it when the job ends', 2, 409);
        continue;
      }
      await this.unloadEntry(e);
    }
  }

  /**
   * The live-preview decoder for `mode` (TAESD from models/VAE-taesd when there; null → the cheap
   * preview), loaded once per provider. `warn` hears why a TAESD that was asked for is not used.
   */
  previewDecoder(
    mode: PreviewMode,
    provider: Provider | undefined,
    warn?: (m: string) => void,
  ): Promise<TaesdDecoder | null> {
    if (mode !== 'taesd') return Promise.resolve(null);
    const key = `${mode}|${provider ?? 'cpu'}`;
    let p = this.previews.get(key);
    if (!p) {
      p = import('./taesd.js').then((m) =>
        m.loadPreviewDecoder(mode, this.dataDir, { provider, cacheDir: this.options.cacheDir, warn }),
      );
      this.previews.set(key, p);
      // A missing file may appear later: only a loaded decoder is kept.
      void p.then(
        (d) => {
          if (!d && this.previews.get(key) === p) this.previews.delete(key);
        },
        () => this.previews.delete(key),
      );
    }
    return p;
  }

  /** Unloads everything, held or not: the end of the process (CLI exit, server shutdown). */
  async release(): Promise<void> {
    this.closed = true;
    const entries = [...this.entries.values()];
    this.entries.clear();
    const previews = [...this.previews.values()];
    this.previews.clear();
    for (const e of entries) {
      const m = await e.loading.catch(() => null);
      await m?.release();
    }
    for (const p of previews) await (await p.catch(() => null))?.release();
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function stem(file: string): string {
  const e = extname(file);
  return e ? file.slice(0, -e.length) : file;
}

/** Model files under `dir` (four levels of sub-folders; names matching `skip` left out), sorted. */
export function listModelFiles(dir: string, skip?: RegExp): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(d, name);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory() && depth < 4) walk(p, depth + 1);
      else if (st.isFile() && MODEL_EXTENSIONS.includes(extname(name).toLowerCase()) && !skip?.test(name))
        out.push(p);
    }
  };
  walk(dir, 0);
  return out.sort();
}

/**
 * A checkpoint by path, or by name (file name or stem, case-insensitive; A1111 title) in
 * models/Stable-diffusion; no name → the first one; its real path. `ModelLibrary.findCheckpoint`
 * (which also finds hashed files by hash) for a data dir.
 */
export function findCheckpoint(nameOrPath: string | undefined, dataDir: string): string {
  return new ModelLibrary({ dataDir }).findCheckpointByName(nameOrPath);
}

/** The VAE to use ("None", "Automatic", a name in models/VAE or a path): `ModelLibrary.findVae`. */
export function findVae(name: string | undefined, checkpointPath: string, dataDir: string): string | null {
  return new ModelLibrary({ dataDir }).findVae(name, checkpointPath);
}
