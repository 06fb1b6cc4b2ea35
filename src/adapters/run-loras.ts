/**
 * What the job runner does for `<lora:…>` / `<lyco:…>` tags before it asks for a model: find the
 * networks the (styled) prompt names and map the `Lora hashes` of an image's infotext back to
 * files. The model library then loads the checkpoint with those networks patched in
 * (`loadModel({loras})` → `activateLoras`), so a LoRA set is part of what identifies a loaded model.
 */
import { parseExtraNetworks } from '../prompt/extra-networks.js';
import {
  listLoraFiles,
  loraDirs,
  renameLoraTags,
  resolveLoraHashes,
  resolveLoraTags,
  type LoraSpec,
} from './lora-library.js';
import { isLoraTagKind, parseLoraTag, type LoraTag } from './lora-tags.js';

/** The LoRA tags of a prompt (A1111: the first prompt's tags; `lyco` is an alias of `lora`). */
export function loraTagsOf(prompt: string): LoraTag[] {
  return parseExtraNetworks(prompt)
    .networks.filter((n) => isLoraTagKind(n.name))
    .map(parseLoraTag);
}

export interface LoraJobOptions {
  dataDir: string;
  /** `--lora-dir` (A1111's flag); default `<data-dir>/models/Lora`. */
  loraDir?: string;
  /** The prompt after styles (tags in styles count, as in A1111). */
  styledPrompt: string;
  /** `Lora hashes` of the infotext the parameters came from (`--params`, pasted infotext). */
  infotextLoraHashes?: string;
  warn: (message: string) => void;
}

export interface LoraJob {
  specs: LoraSpec[];
  /** Prompt-name renames the infotext's hashes asked for (apply with `renameLoraTags`). */
  renames: Map<string, string>;
}

export async function resolveLoraJob(opts: LoraJobOptions): Promise<LoraJob> {
  if (loraTagsOf(opts.styledPrompt).length === 0) return { specs: [], renames: new Map() };
  const files = await listLoraFiles(loraDirs(opts.dataDir, opts.loraDir));
  let prompt = opts.styledPrompt;
  let renames = new Map<string, string>();
  if (opts.infotextLoraHashes) {
    const r = await resolveLoraHashes(opts.infotextLoraHashes, files);
    for (const w of r.warnings) opts.warn(w);
    renames = r.renames;
    prompt = renameLoraTags(prompt, renames);
  }
  return { specs: resolveLoraTags(loraTagsOf(prompt), files, opts.warn), renames };
}
