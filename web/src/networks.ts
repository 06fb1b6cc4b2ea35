/**
 * The server's extra networks (checkpoints, LoRAs, embeddings, hypernetworks), loaded once for the
 * whole page and shared by every prompt box (highlighting, autocomplete) and the extra-networks
 * panel; `refresh` reloads them for all.
 */
import { useMemo, useSyncExternalStore } from 'react';
import { api, type NetworkCard } from './api.ts';
import type { CompletionNames } from './autocomplete.ts';
import type { SyntaxNames } from './prompt-syntax.ts';

interface Snapshot {
  items: NetworkCard[] | null;
  error: string | null;
}

let snapshot: Snapshot = { items: null, error: null };
let loading: Promise<void> | null = null;
const listeners = new Set<() => void>();

function set(next: Snapshot) {
  snapshot = next;
  for (const l of listeners) l();
}

export function refreshNetworks(): Promise<void> {
  loading = api.extraNetworks().then(
    (r) => set({ items: r.items, error: null }),
    (e: Error) => set({ items: snapshot.items, error: e.message }),
  );
  return loading;
}

function subscribe(listener: () => void) {
  listeners.add(listener);
  if (!loading) void refreshNetworks();
  return () => listeners.delete(listener);
}

export function useNetworks(): Snapshot & { refresh: () => Promise<void> } {
  const s = useSyncExternalStore(subscribe, () => snapshot);
  return { ...s, refresh: refreshNetworks };
}

/** The names the prompt boxes highlight and complete. */
export function useNetworkNames(): CompletionNames & SyntaxNames {
  const { items } = useNetworks();
  return useMemo(() => {
    const of = (kind: NetworkCard['kind']) => (items ?? []).filter((i) => i.kind === kind).map((i) => i.name);
    const embeddings = (items ?? []).filter((i) => i.kind === 'embedding' && i.compatible !== false);
    const loras = of('lora');
    const hypernetworks = of('hypernetwork');
    return {
      loras,
      hypernetworks,
      embeddings: embeddings.map((e) => e.name),
      embeddingNames: new Set(embeddings.map((e) => e.name.toLowerCase())),
      networks: items
        ? new Map([
            ['lora', new Set(loras)],
            ['hypernet', new Set(hypernetworks)],
          ])
        : undefined,
    };
  }, [items]);
}
