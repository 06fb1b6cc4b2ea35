/**
 * What is in the model folders, in the shapes A1111's list routes answer (sd-models, sd-vae, loras,
 * hypernetworks), and name lookup the way A1111 matches a checkpoint (title, name, file name, hash).
 * Names are only ever matched against files found by the scan: a request can never name a path, so
 * nothing outside the model folders is opened on a client's say-so.
 */
import { existsSync, realpathSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, relative, sep } from 'node:path';
import { readSafetensorsHeader } from '../formats/safetensors.js';
import { MODEL_EXTENSIONS } from '../pipeline/model-library.js';
import { hashFile } from '../tools/hash.js';
import { UserError } from '../util/errors.js';

export interface ModelDirs {
  checkpoints: string;
  vae: string;
  lora: string;
  hypernetworks: string;
  embeddings: string;
  esrgan: string;
}

export interface CheckpointEntry {
  title: string;
  model_name: string;
  hash: string | null;
  sha256: string | null;
  filename: string;
  config: string | null;
}

export interface VaeEntry {
  model_name: string;
  filename: string;
}

export interface LoraEntry {
  name: string;
  alias: string;
  path: string;
  metadata: Record<string, unknown>;
}

/** Files at most this big are hashed when listed (the tiny and pruned models); others once loaded. */
const HASH_ON_SCAN_BYTES = 256 * 1024 * 1024;

async function listFiles(dir: string, exts: readonly string[], depth = 0): Promise<string[]> {
  if (depth > 4 || !existsSync(dir)) return [];
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const s = await stat(p).catch(() => null);
      isDir = !!s?.isDirectory();
      isFile = !!s?.isFile();
    }
    if (isDir) out.push(...(await listFiles(p, exts, depth + 1)));
    else if (isFile && exts.includes(extname(e.name).toLowerCase())) out.push(p);
  }
  return out;
}

const stem = (p: string) => basename(p, extname(p));

export class ModelCatalog {
  checkpoints: CheckpointEntry[] = [];
  vaes: VaeEntry[] = [];
  loras: LoraEntry[] = [];
  hypernetworks: { name: string; path: string }[] = [];
  private readonly hashes = new Map<string, { sha256: string; autov2: string }>();

  constructor(
    readonly dirs: ModelDirs,
    private readonly hashCacheDir?: string,
  ) {}

  async refreshAll(): Promise<void> {
    await this.refreshCheckpoints();
    await this.refreshVae();
    await this.refreshLoras();
    await this.refreshHypernetworks();
  }

  async refreshCheckpoints(): Promise<void> {
    const files = await listFiles(this.dirs.checkpoints, MODEL_EXTENSIONS);
    const out: CheckpointEntry[] = [];
    for (const filename of files) {
      // VAEs kept beside their checkpoint ("x.vae.safetensors") are not checkpoints.
      if (/\.vae\.[^.]+$/i.test(filename)) continue;
      let h = this.hashes.get(filename);
      if (!h) {
        const size = (await stat(filename).catch(() => null))?.size ?? Infinity;
        if (size <= HASH_ON_SCAN_BYTES) {
          const r = await hashFile(filename, { cacheDir: this.hashCacheDir }).catch(() => null);
          if (r) this.hashes.set(filename, (h = { sha256: r.sha256, autov2: r.autov2 }));
        }
      }
      out.push(this.entry(filename, h));
    }
    this.checkpoints = out;
  }

  /** The listed checkpoint that is (a link to) the file `real`. */
  byRealpath(real: string): CheckpointEntry | undefined {
    return this.checkpoints.find((c) => {
      try {
        return c.filename === real || realpathSync(c.filename) === real;
      } catch {
        return false;
      }
    });
  }

  /** Records a checkpoint's hash once it has been computed (by loading it). */
  setHash(filename: string, sha256: string, autov2: string): void {
    this.hashes.set(filename, { sha256, autov2 });
    this.checkpoints = this.checkpoints.map((c) =>
      c.filename === filename ? this.entry(filename, { sha256, autov2 }) : c,
    );
  }

  private entry(filename: string, h: { sha256: string; autov2: string } | undefined): CheckpointEntry {
    const rel = relative(this.dirs.checkpoints, filename).split(sep).join('/');
    const yaml = filename.slice(0, -extname(filename).length) + '.yaml';
    return {
      title: h ? `${rel} [${h.autov2}]` : rel,
      model_name: rel.slice(0, -extname(rel).length).replace(/\//g, '_'),
      hash: h?.autov2 ?? null,
      sha256: h?.sha256 ?? null,
      filename,
      config: existsSync(yaml) ? yaml : null,
    };
  }

  async refreshVae(): Promise<void> {
    const files = await listFiles(this.dirs.vae, ['.safetensors', '.pt', '.ckpt', '.bin']);
    this.vaes = files.map((filename) => ({ model_name: basename(filename), filename }));
  }

  async refreshLoras(): Promise<void> {
    const files = await listFiles(this.dirs.lora, ['.safetensors', '.pt', '.ckpt']);
    const out: LoraEntry[] = [];
    for (const path of files) {
      let metadata: Record<string, unknown> = {};
      if (path.toLowerCase().endsWith('.safetensors')) {
        metadata = await readSafetensorsHeader(path).then(
          (h) => ({ ...h.metadata }),
          () => ({}),
        );
      }
      const alias = typeof metadata.ss_output_name === 'string' ? metadata.ss_output_name : stem(path);
      out.push({ name: stem(path), alias, path, metadata });
    }
    this.loras = out;
  }

  async refreshHypernetworks(): Promise<void> {
    // The table `<hypernet:…>` tags resolve against (A1111: *.pt by file stem).
    const { hypernetworkTable } = await import('../adapters/run-hypernetworks.js');
    const table = hypernetworkTable(this.dirs.hypernetworks);
    this.hypernetworks = [...table].map(([name, path]) => ({ name, path }));
  }

  /**
   * A checkpoint by any of A1111's aliases: title, title without hash, relative file name, model_name,
   * file stem, short hash (10 hex), full sha256, "stem [hash]". Throws a UserError (422) naming
   * `field` when nothing matches.
   */
  findCheckpoint(name: string, field = 'sd_model_checkpoint'): CheckpointEntry {
    const found = this.lookupCheckpoint(name);
    if (found) return found;
    throw new UserError(
      `${field}: model "${name.slice(0, 200)}" not found; GET /sdapi/v1/sd-models lists the checkpoints in ${this.dirs.checkpoints}`,
      2,
      422,
    );
  }

  lookupCheckpoint(name: string): CheckpointEntry | undefined {
    const n = name.trim();
    if (!n) return undefined;
    const bare = n.replace(/\s*\[[0-9a-fA-F]{8,64}\]$/, '');
    const lower = n.toLowerCase();
    for (const c of this.checkpoints) {
      const rel = c.title.replace(/\s*\[[0-9a-f]{10}\]$/, '');
      const s = stem(c.filename);
      const aliases = [
        c.title,
        rel,
        c.model_name,
        basename(c.filename),
        s,
        rel.slice(0, -extname(rel).length),
      ];
      if (aliases.includes(n) || aliases.includes(bare)) return c;
      if (c.hash && (lower === c.hash || lower === c.sha256 || n === `${s} [${c.hash}]`)) return c;
    }
    return undefined;
  }

  /** The VAE file for an `sd_vae` value: null for "Automatic" (beside the checkpoint) and "None". */
  findVae(name: string, field = 'sd_vae'): VaeEntry | null {
    if (name === 'Automatic' || name === 'None' || name === '') return null;
    const v = this.vaes.find((x) => x.model_name === name || stem(x.filename) === name);
    if (v) return v;
    throw new UserError(
      `${field}: VAE "${name.slice(0, 200)}" not found; use "Automatic", "None" or a name from GET /sdapi/v1/sd-vae (files in ${this.dirs.vae})`,
      2,
      422,
    );
  }
}
