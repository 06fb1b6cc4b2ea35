/**
 * What POST /api/v1/tokenize needs beside the prompt code: the CLIP tokenizer (found as the model
 * loader finds its vocabulary, so no model has to be loaded) and the embeddings folder indexed by
 * token ids, both kept between requests (the UI asks after every pause in typing). The embeddings
 * are re-read when a file in the folder changes; with a model loaded, only those of its text width
 * count, as in generation.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EmbeddingIndex, type EmphasisMode } from '../prompt/chunking.js';
import { EmbeddingDatabase } from '../prompt/embeddings.js';
import { applyStyles, loadStyles } from '../prompt/styles.js';
import { countPromptTokens, type TokenCount } from '../prompt/token-count.js';
import { ClipTokenizer } from '../prompt/tokenizer.js';
import { readClipVocab, resolveClipVocab } from '../prompt/vocab.js';
import type { ServerContext } from './context.js';
import { ValidationError } from './requests.js';
import { currentCheckpoint } from './routes/options.js';

export interface TokenizeRequest {
  prompt: string;
  /** Count as a negative prompt (no AND split). */
  negative?: boolean;
  steps?: number;
  /** Styles applied first (A1111's `include_styles_into_token_counters`, on by default). */
  styles?: string[];
  /** A checkpoint name (any of A1111's aliases); default the selected one. */
  checkpoint?: string;
}

/** Files under a folder with their sizes and times: the embeddings are re-read when this changes. */
async function folderSignature(dir: string, depth = 0): Promise<string> {
  if (depth > 8) return '';
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return '';
  }
  const parts: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, e.name);
    const s = await stat(p).catch(() => null);
    if (!s) continue;
    parts.push(
      s.isDirectory() ? `${p}/{${await folderSignature(p, depth + 1)}}` : `${p}:${s.size}:${s.mtimeMs}`,
    );
  }
  return parts.join('|');
}

/**
 * The text width (summed over text towers) of the model loaded now, or undefined when none is; a
 * model still loading is not waited for (the counter and the cards answer at once).
 */
export async function loadedTextWidth(ctx: ServerContext, waitMs = 200): Promise<number | undefined> {
  if (!ctx.executor.currentSpec()) return undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const width = await Promise.race([
    ctx.executor.withCurrent((m) => m.engine.towers.reduce((sum, t) => sum + t.config.width, 0)),
    new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), waitMs))),
  ]);
  clearTimeout(timer);
  return width ?? undefined;
}

/**
 * Characters × steps one count may take: the prompt-editing schedule is built per step, so a 32k
 * alternating prompt at 1000 steps takes seconds of the event loop (measured: 5 s); this bound
 * keeps a count well under a second.
 */
export const MAX_COUNT_WORK = 4_000_000;

export class TokenCounter {
  private readonly tokenizers = new Map<string, Promise<ClipTokenizer>>();
  private embeddings: { key: string; index: Promise<EmbeddingIndex> } | null = null;
  private vocabFailure: { at: number; error: unknown } | null = null;

  constructor(private readonly ctx: ServerContext) {}

  /** The tokenizer for a checkpoint, and which vocabulary it read. */
  private async tokenizer(modelPath: string | undefined): Promise<[ClipTokenizer, string]> {
    // Without a vocabulary (offline, none cached) every count would retry the download: not for a minute.
    if (this.vocabFailure && Date.now() - this.vocabFailure.at < 60_000) throw this.vocabFailure.error;
    let source;
    try {
      source = await resolveClipVocab({ modelPath });
    } catch (e) {
      this.vocabFailure = { at: Date.now(), error: e };
      throw e;
    }
    this.vocabFailure = null;
    const key = JSON.stringify(source);
    let t = this.tokenizers.get(key);
    if (!t) {
      t = Promise.resolve().then(() => new ClipTokenizer(readClipVocab(source)));
      this.tokenizers.set(key, t);
      t.catch(() => this.tokenizers.delete(key));
    }
    return [await t, key];
  }

  /** The text width of the loaded model when it is `checkpoint` (embeddings of other widths do not count). */
  private async loadedWidth(checkpoint: string | undefined): Promise<number | undefined> {
    const spec = this.ctx.executor.currentSpec();
    if (!spec || !checkpoint || this.ctx.catalog.byRealpath(spec.checkpoint)?.filename !== checkpoint) {
      return undefined;
    }
    return loadedTextWidth(this.ctx);
  }

  private async embeddingIndex(
    [tokenizer, vocab]: [ClipTokenizer, string],
    width: number | undefined,
  ): Promise<EmbeddingIndex> {
    const dir = this.ctx.config.dirs.embeddings;
    const key = `${vocab}\n${width ?? 'any'}\n${await folderSignature(dir)}`;
    if (this.embeddings?.key !== key) {
      const index = EmbeddingDatabase.loadDir(dir, { expectedWidth: width }).then(
        (db) => new EmbeddingIndex(db.loaded, tokenizer),
      );
      this.embeddings = { key, index };
      index.catch(() => (this.embeddings = null));
    }
    return this.embeddings.index;
  }

  async count(req: TokenizeRequest): Promise<TokenCount> {
    const entry = req.checkpoint
      ? this.ctx.catalog.lookupCheckpoint(req.checkpoint)
      : (currentCheckpoint(this.ctx) ?? undefined);
    if (req.checkpoint && !entry) {
      throw new ValidationError(
        'checkpoint',
        `checkpoint: model "${req.checkpoint.slice(0, 200)}" not found; GET /sdapi/v1/sd-models lists the checkpoints`,
      );
    }
    const steps = req.steps ?? 20;
    if (req.prompt.length * steps > MAX_COUNT_WORK) {
      throw new ValidationError(
        'prompt',
        `prompt: ${req.prompt.length} characters at ${steps} steps is more than one count takes ` +
          `(${MAX_COUNT_WORK} characters × steps); shorten it or count at fewer steps`,
      );
    }
    let prompt = req.prompt;
    if (req.styles?.length) {
      const all = await loadStyles(this.ctx.stylesFile).catch(() => []);
      const styled = applyStyles(prompt, prompt, req.styles, all);
      prompt = req.negative ? styled.negativePrompt : styled.prompt;
    }
    const tokenizer = await this.tokenizer(entry?.filename);
    const embeddings = await this.embeddingIndex(tokenizer, await this.loadedWidth(entry?.filename));
    const emphasis = String(this.ctx.options.get('emphasis') ?? 'Original') as EmphasisMode;
    return countPromptTokens(prompt, {
      tokenizer: tokenizer[0],
      embeddings,
      steps,
      negative: req.negative,
      emphasis,
    });
  }
}
