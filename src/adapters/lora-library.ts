/**
 * Finding LoRA files where A1111 finds them and turning a prompt's `<lora:…>` tags into a patched
 * checkpoint: `models/Lora` and `models/LyCORIS` (or `--lora-dir`), by file name or by alias
 * (`ss_output_name`), as A1111's `list_available_networks` / `load_networks`.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { openModel } from '../formats/open.js';
import { readSafetensorsHeader } from '../formats/safetensors.js';
import type { TensorSource } from '../formats/tensor.js';
import { embeddingFromData, type Embedding } from '../prompt/embeddings.js';
import { hashFile } from '../tools/hash.js';
import { UserError } from '../util/errors.js';
import { FAMILY_LABEL, loraFamily, tableFamily } from './lora-family.js';
import type { LowRankBranch } from '../runtime/tensors.js';
import { splitLowRankBranches } from './lora-branches.js';
import { buildLayerTable } from './lora-keys.js';
import { applyNetworks, loadNetwork, networkErrorsComment, type ActiveNetwork } from './lora.js';
import { loraAlias, loraHash, loraHashesInfotext, type LoraTag } from './lora-tags.js';
import { PatchedTensorSource } from './patched-source.js';

export const LORA_EXTENSIONS = ['.pt', '.ckpt', '.safetensors'];

export interface LoraFile {
  /** File name without extension (A1111's network name). */
  name: string;
  path: string;
  alias: string;
  metadata: Record<string, string>;
}

/** The folders searched: `--lora-dir` (else `<data-dir>/models/Lora`) and `<data-dir>/models/LyCORIS`. */
export function loraDirs(dataDir: string, loraDir?: string): string[] {
  return [loraDir ?? join(dataDir, 'models', 'Lora'), join(dataDir, 'models', 'LyCORIS')];
}

function walk(dir: string, out: string[], depth = 0): void {
  if (!existsSync(dir) || depth > 8) return;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) walk(p, out, depth + 1);
    else if (st.isFile() && LORA_EXTENSIONS.includes(extname(name).toLowerCase())) out.push(p);
  }
}

/** Every network file in the folders, with metadata (safetensors only) and alias. */
export async function listLoraFiles(dirs: readonly string[]): Promise<LoraFile[]> {
  const paths: string[] = [];
  for (const d of dirs) walk(d, paths);
  const out: LoraFile[] = [];
  for (const path of paths) {
    const name = basename(path, extname(path));
    let metadata: Record<string, string> = {};
    if (extname(path).toLowerCase() === '.safetensors') {
      try {
        metadata = (await readSafetensorsHeader(path)).metadata;
      } catch {
        // A damaged file is still listed by name; loading it reports the problem.
      }
    }
    out.push({ name, path, alias: loraAlias(name, metadata), metadata });
  }
  return out;
}

/** A1111's `available_network_aliases`: each file under its name and its alias (later files win). */
export function aliasTable(files: readonly LoraFile[]): Map<string, LoraFile> {
  const map = new Map<string, LoraFile>();
  for (const f of files) {
    map.set(f.name, f);
    map.set(f.alias, f);
  }
  return map;
}

/** One network to apply: the file a tag resolved to, with the tag's multipliers. */
export interface LoraSpec {
  /** The name the prompt used (a file name or an alias): infotext and error reports use it. */
  name: string;
  path: string;
  te: number;
  unet: number;
  dynDim: number | null;
}

export interface LoraActivation {
  /** The checkpoint with the patched weights over it (the input source when nothing changed). */
  source: TensorSource;
  /** `Lora hashes` infotext value, or undefined. */
  loraHashes?: string;
  /** `Networks with errors: …` when layers failed to apply. */
  errorsComment?: string;
  /** What was loaded, in prompt order. */
  applied: { spec: LoraSpec; hash: string; matched: number; unmatched: number }[];
  /** Patched weight count. */
  patchedTensors: number;
  /** Textual inversions bundled in the files (`bundle_emb.*`), usable while the networks are active. */
  embeddings: Embedding[];
  /** Layers run as low-rank branches (`ActivateOptions.branchPrefixes`), for loadSd1. */
  branches: Map<string, LowRankBranch>;
  /** Seconds spent loading, matching and patching. */
  seconds: number;
}

export interface ActivateOptions {
  warn?: (message: string) => void;
  /** Hash cache folder (tools/hash.ts); `noCache` for tests. */
  hashCacheDir?: string;
  noHashCache?: boolean;
  /**
   * Key prefixes (`model.diffusion_model.`, the CLIP text model's) of the graphs whose plain LoRA
   * layers run as low-rank graph branches (adapters/lora-branches.ts) instead of patched weights;
   * default: patch all.
   */
  branchPrefixes?: readonly string[];
}

/**
 * Find the files the tags name (A1111's alias table). A tag no file answers to is a warning
 * (`Failed to find networks: …`, as A1111) and is left out.
 */
export function resolveLoraTags(
  tags: readonly LoraTag[],
  files: readonly LoraFile[],
  warn: (message: string) => void = () => undefined,
): LoraSpec[] {
  const aliases = aliasTable(files);
  const specs: LoraSpec[] = [];
  const missing: string[] = [];
  for (const tag of tags) {
    const file = aliases.get(tag.name);
    if (!file) missing.push(tag.name);
    else specs.push({ name: tag.name, path: file.path, te: tag.te, unet: tag.unet, dynDim: tag.dynDim });
  }
  if (missing.length) {
    const dirs = [...new Set(files.map((f) => f.path.replace(/[\\/][^\\/]*$/, '')))];
    warn(
      `Failed to find networks: ${missing.join(', ')} (looked for file names and aliases in ` +
        `${dirs.join(', ') || 'the LoRA folders, which hold none'})`,
    );
  }
  return specs;
}

/**
 * Load the networks (prompt order), patch the checkpoint's weights as A1111 does and return the
 * patched source with the infotext values. A damaged file is a UserError; keys that match nothing
 * and layers that fail are warnings.
 */
export async function activateLoras(
  base: TensorSource,
  specs: readonly LoraSpec[],
  opts: ActivateOptions = {},
): Promise<LoraActivation> {
  const t0 = performance.now();
  const warn = opts.warn ?? (() => undefined);
  const table = buildLayerTable(base);
  const active: ActiveNetwork[] = [];
  const applied: LoraActivation['applied'] = [];
  const modelFamily = tableFamily(table);
  const embeddings: Embedding[] = [];
  for (const spec of specs) {
    const src = await openModel(spec.path);
    let net;
    let fileFamily;
    try {
      net = await loadNetwork(src, table, { name: spec.name });
      fileFamily = loraFamily(
        src.metadata,
        src.keys().map((k) => src.info(k)!),
      );
    } finally {
      await src.close();
    }
    if (net.unmatched.size > 0) {
      const sample = [...net.unmatched.keys()].slice(0, 3).join(', ');
      // As A1111, keys that match nothing are skipped; say why when the families differ.
      const other =
        fileFamily.family !== 'unknown' && fileFamily.family !== modelFamily
          ? `it is a LoRA for ${FAMILY_LABEL[fileFamily.family]}, this is ${FAMILY_LABEL[modelFamily]}: not compatible`
          : 'is it for another model family?';
      warn(
        `${spec.path}: ${net.unmatched.size} of ${net.unmatched.size + net.matchedKeys} key(s) match no layer ` +
          `of this model and are skipped (e.g. ${sample}); ${other}`,
      );
    }
    for (const [embName, data] of net.bundled) {
      const where = `${spec.path}/${embName}`;
      try {
        const d = embeddingFromData(data, where);
        // A1111 gives a bundled embedding the network's name as its "TI hashes" value.
        embeddings.push({
          name: embName,
          ...d.rows,
          parts: d.parts,
          step: d.step,
          checkpoint: d.checkpoint,
          checkpointName: d.checkpointName,
          path: where,
          sha256: '',
          hash: spec.name,
        });
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        warn(`bundled embedding ${embName} in ${spec.path} cannot be used: ${e.message}`);
      }
    }
    const hashes = await hashFile(spec.path, { cacheDir: opts.hashCacheDir, noCache: opts.noHashCache });
    const hash = loraHash(net.metadata, hashes.addnet ?? hashes.sha256);
    active.push({ network: net, te: spec.te, unet: spec.unet, dynDim: spec.dynDim });
    applied.push({ spec, hash, matched: net.modules.size, unmatched: net.unmatched.size });
  }
  const split = opts.branchPrefixes?.length
    ? splitLowRankBranches(active, opts.branchPrefixes)
    : { branches: new Map<string, LowRankBranch>(), patched: active };
  const result = await applyNetworks(async (key) => {
    const info = base.info(key);
    if (!info) throw new UserError(`checkpoint tensor ${key} vanished while applying LoRA`);
    return { shape: [...info.shape], data: await base.readFloat32(key) };
  }, split.patched);
  const errorsComment = networkErrorsComment(result.errors);
  if (errorsComment) warn(errorsComment);
  const loraHashes = loraHashesInfotext(applied.map((a) => ({ name: a.spec.name, hash: a.hash })));
  return {
    source: result.patched.size > 0 ? new PatchedTensorSource(base, result.patched) : base,
    loraHashes,
    errorsComment,
    applied,
    patchedTensors: result.patched.size,
    embeddings,
    branches: split.branches,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * `Lora hashes` read back from an infotext (`name: hash, …`), so `--params` finds the same files:
 * each name whose hash belongs to a known file is mapped to that file's name. Returns the renames
 * (prompt name → file name) and warnings for hashes no file has.
 */
export async function resolveLoraHashes(
  value: string,
  files: readonly LoraFile[],
  opts: Pick<ActivateOptions, 'hashCacheDir' | 'noHashCache'> = {},
): Promise<{ renames: Map<string, string>; warnings: string[] }> {
  const renames = new Map<string, string>();
  const warnings: string[] = [];
  const wanted = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const i = s.lastIndexOf(':');
      return i < 0
        ? undefined
        : {
            name: s.slice(0, i).trim(),
            hash: s
              .slice(i + 1)
              .trim()
              .toLowerCase(),
          };
    })
    .filter((x): x is { name: string; hash: string } => !!x && x.hash.length > 0);
  if (wanted.length === 0) return { renames, warnings };
  const byHash = new Map<string, LoraFile>();
  for (const f of files) {
    const h = await hashFile(f.path, { cacheDir: opts.hashCacheDir, noCache: opts.noHashCache });
    byHash.set(
      loraHash(f.metadata, h.addnet ?? h.sha256)
        .slice(0, 12)
        .toLowerCase(),
      f,
    );
  }
  const aliases = aliasTable(files);
  for (const w of wanted) {
    const f = byHash.get(w.hash.slice(0, 12));
    if (f) {
      if (aliases.get(w.name) !== f) renames.set(w.name, f.alias);
    } else if (aliases.has(w.name)) {
      warnings.push(
        `LoRA "${w.name}" here has another hash than the image's ${w.hash}: the result may differ`,
      );
    } else {
      warnings.push(`LoRA "${w.name}" (hash ${w.hash}) is not in the LoRA folders`);
    }
  }
  return { renames, warnings };
}

/** Rewrite `<lora:old:` / `<lyco:old:` tags to the names `resolveLoraHashes` found. */
export function renameLoraTags(prompt: string, renames: ReadonlyMap<string, string>): string {
  let out = prompt;
  for (const [from, to] of renames) {
    for (const kind of ['lora', 'lyco']) {
      out = out
        .split(`<${kind}:${from}:`)
        .join(`<${kind}:${to}:`)
        .split(`<${kind}:${from}>`)
        .join(`<${kind}:${to}>`);
    }
  }
  return out;
}
