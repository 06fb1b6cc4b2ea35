/**
 * What a front door does for `<lora:…>` / `<lyco:…>` tags before loading the model: find the
 * networks the (styled) prompt names, map `Lora hashes` of a `--params` image back to files, and
 * hand `loadModel` a function that puts the patched weights over the checkpoint.
 */
import type { TensorSource } from '../formats/tensor.js';
import { parseExtraNetworks } from '../prompt/extra-networks.js';
import {
  activateLoras,
  listLoraFiles,
  loraDirs,
  renameLoraTags,
  resolveLoraHashes,
  type LoraActivation,
} from './lora-library.js';
import { isLoraTagKind, parseLoraTag, type LoraTag } from './lora-tags.js';

export interface LoraRunOptions {
  dataDir: string;
  /** `--lora-dir` (A1111's flag); default `<data-dir>/models/Lora`. */
  loraDir?: string;
  /** The prompt after styles (tags in styles count, as in A1111). */
  prompt: string;
  /** `Lora hashes` of the infotext the parameters came from (`--params`). */
  infotextLoraHashes?: string;
  warn: (message: string) => void;
}

export interface LoraRun {
  tags: LoraTag[];
  /** The prompt with tags renamed to the files the infotext's hashes found (unchanged otherwise). */
  prompt: string;
  /** For `loadModel({patch})`; undefined when the prompt names no network. */
  patch?: (source: TensorSource) => Promise<TensorSource>;
  /** Filled once `patch` ran. */
  activation?: LoraActivation;
}

/** The LoRA tags of a prompt (A1111: the first prompt's tags; `lyco` is an alias of `lora`). */
export function loraTagsOf(prompt: string): LoraTag[] {
  return parseExtraNetworks(prompt)
    .networks.filter((n) => isLoraTagKind(n.name))
    .map(parseLoraTag);
}

export async function prepareLoraRun(opts: LoraRunOptions): Promise<LoraRun> {
  let prompt = opts.prompt;
  if (loraTagsOf(prompt).length === 0) return { tags: [], prompt };
  const files = await listLoraFiles(loraDirs(opts.dataDir, opts.loraDir));
  if (opts.infotextLoraHashes) {
    const { renames, warnings } = await resolveLoraHashes(opts.infotextLoraHashes, files);
    for (const w of warnings) opts.warn(w);
    prompt = renameLoraTags(prompt, renames);
  }
  const tags = loraTagsOf(prompt);
  const run: LoraRun = { tags, prompt };
  run.patch = async (source) => {
    run.activation = await activateLoras(source, tags, files, { warn: opts.warn });
    return run.activation.source;
  };
  return run;
}
