/**
 * The extra-networks panel's cards: checkpoints, LoRAs, embeddings and hypernetworks as the
 * catalog and the embeddings folder hold them, with what the files say (LoRA base model, rank and
 * most used training tags; embedding vectors and width) and whether a preview image lies beside
 * the file (`name.png`, `name.preview.png`, …). Preview paths stay on the server: a card names its
 * preview by kind and name, and only a path found by this listing is ever served.
 */
import { extname } from 'node:path';
import { previewFor, trainingTags } from '../adapters/listing.js';
import { loraSdVersion } from '../adapters/lora-tags.js';
import { EmbeddingDatabase } from '../prompt/embeddings.js';
import type { ServerContext } from './context.js';
import { loadedTextWidth } from './token-counter.js';

export const NETWORK_KINDS = ['checkpoint', 'lora', 'embedding', 'hypernetwork'] as const;
export type NetworkKind = (typeof NETWORK_KINDS)[number];

export interface NetworkCard {
  kind: NetworkKind;
  name: string;
  /** What a click puts in the prompt (a checkpoint card selects this title instead). */
  prompt: string;
  /** Checkpoint title as /sdapi/v1/sd-models lists it. */
  title?: string;
  alias?: string;
  base_model?: string;
  rank?: number | null;
  /** Most used training tags with counts (at most 20). */
  tags?: [string, number][];
  vectors?: number;
  shape?: number;
  /** False for an embedding the loaded model cannot use (another family's width). */
  compatible?: boolean;
  has_preview: boolean;
}

export async function listNetworks(
  ctx: ServerContext,
): Promise<{ cards: NetworkCard[]; previews: Map<string, string> }> {
  const previews = new Map<string, string>();
  const cards: NetworkCard[] = [];
  const add = (card: Omit<NetworkCard, 'has_preview'>, file: string) => {
    const preview = previewFor(file);
    if (preview) previews.set(`${card.kind}\n${card.name}`, preview);
    cards.push({ ...card, has_preview: preview !== null });
  };
  for (const c of ctx.catalog.checkpoints) {
    add({ kind: 'checkpoint', name: c.model_name, title: c.title, prompt: '' }, c.filename);
  }
  for (const l of ctx.catalog.loras) {
    const meta = Object.fromEntries(
      Object.entries(l.metadata).filter(([, v]) => typeof v === 'string'),
    ) as Record<string, string>;
    const dim = Number(meta.ss_network_dim);
    add(
      {
        kind: 'lora',
        name: l.name,
        alias: l.alias,
        prompt: `<lora:${l.name}:1>`,
        base_model: loraSdVersion(meta),
        rank: Number.isInteger(dim) && dim > 0 ? dim : null,
        tags: trainingTags(meta).slice(0, 20),
      },
      l.path,
    );
  }
  const db = await EmbeddingDatabase.loadDir(ctx.config.dirs.embeddings, {
    expectedWidth: await loadedTextWidth(ctx),
  });
  for (const [map, compatible] of [
    [db.loaded, true],
    [db.skipped, false],
  ] as const) {
    for (const e of map.values()) {
      // An embedding stored in a PNG (`x.png`) is found as its own preview.
      add(
        { kind: 'embedding', name: e.name, prompt: e.name, vectors: e.vectors, shape: e.shape, compatible },
        e.path,
      );
    }
  }
  // No A1111 route rescans hypernetworks; the listing does (a folder walk, no file read).
  await ctx.catalog.refreshHypernetworks();
  for (const h of ctx.catalog.hypernetworks) {
    add({ kind: 'hypernetwork', name: h.name, prompt: `<hypernet:${h.name}:1>` }, h.path);
  }
  return { cards, previews };
}

const IMAGE_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
};

export function imageType(path: string): string {
  return IMAGE_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}
