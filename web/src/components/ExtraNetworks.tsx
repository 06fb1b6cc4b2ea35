import { useMemo, useState } from 'react';
import { api, previewUrl, type NetworkCard } from '../api.ts';
import { useNetworks } from '../networks.ts';
import { useServer } from '../server-state.tsx';

const TABS: { kind: NetworkCard['kind']; label: string }[] = [
  { kind: 'checkpoint', label: 'Checkpoints' },
  { kind: 'lora', label: 'LoRA' },
  { kind: 'embedding', label: 'Textual Inversion' },
  { kind: 'hypernetwork', label: 'Hypernetworks' },
];

export interface ExtraNetworksProps {
  /** Which form (ids stay unique with both screens in the page). */
  id: string;
  /** A LoRA / embedding / hypernetwork card was clicked: put its text into the prompt. */
  onInsert: (text: string) => void;
}

function describe(card: NetworkCard): string {
  switch (card.kind) {
    case 'lora':
      return [
        card.base_model && card.base_model !== 'Unknown' ? card.base_model : null,
        card.rank ? `rank ${card.rank}` : null,
      ]
        .filter(Boolean)
        .join(' · ');
    case 'embedding':
      return `${card.vectors} vector${card.vectors === 1 ? '' : 's'}${card.compatible === false ? ' · other model family' : ''}`;
    case 'checkpoint':
      return card.title?.match(/\[([0-9a-f]{10})\]$/)?.[1] ?? '';
    default:
      return '';
  }
}

/**
 * A1111's extra-networks panel: cards for checkpoints, LoRAs, embeddings and hypernetworks with
 * their preview image and what their files say, a search over names, aliases and training tags.
 * A click puts `<lora:name:1>` (or the embedding's name) into the prompt; a checkpoint card
 * selects that checkpoint.
 */
export function ExtraNetworks({ id, onInsert }: ExtraNetworksProps) {
  const { items, error, refresh } = useNetworks();
  const { lists, setOptions, reload } = useServer();
  const [tab, setTab] = useState<NetworkCard['kind']>('lora');
  const [search, setSearch] = useState('');
  const [busy, setBusy] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const current = String(lists?.options.sd_model_checkpoint ?? '');

  const shown = useMemo(() => {
    const q = search.trim().toLowerCase();
    return (items ?? []).filter(
      (c) =>
        c.kind === tab &&
        (!q ||
          c.name.toLowerCase().includes(q) ||
          c.alias?.toLowerCase().includes(q) ||
          c.tags?.some(([t]) => t.toLowerCase().includes(q))),
    );
  }, [items, tab, search]);

  async function select(card: NetworkCard) {
    if (card.kind !== 'checkpoint') {
      onInsert(card.prompt);
      return;
    }
    setBusy(card.name);
    setProblem(null);
    try {
      await api.setOptions({ sd_model_checkpoint: card.title });
      setOptions({ sd_model_checkpoint: card.title });
    } catch (e) {
      setProblem((e as Error).message);
    } finally {
      setBusy(null);
    }
  }

  const count = (kind: NetworkCard['kind']) => (items ?? []).filter((c) => c.kind === kind).length;
  return (
    <section className="extra-networks" aria-label="Extra networks">
      <div className="en-bar">
        <div role="tablist" aria-label="Kind of network">
          {TABS.map((t) => (
            <button
              key={t.kind}
              role="tab"
              aria-selected={tab === t.kind}
              className={tab === t.kind ? 'active' : ''}
              onClick={() => setTab(t.kind)}
            >
              {t.label} <span className="count">{count(t.kind)}</span>
            </button>
          ))}
        </div>
        <input
          id={`${id}-en-search`}
          type="search"
          placeholder="Search names and tags"
          aria-label="Search extra networks"
          value={search}
          onChange={(e) => setSearch(e.target.value)}
        />
        <button
          className="icon"
          title="Rescan the model folders"
          aria-label="Refresh extra networks"
          onClick={async () => {
            await Promise.all([api.refreshCheckpoints(), api.refreshLoras()]).catch(() => undefined);
            await Promise.all([refresh(), reload()]);
          }}
        >
          ↻
        </button>
      </div>
      {(error || problem) && (
        <p className="error" role="alert">
          {problem ?? error}
        </p>
      )}
      {items && shown.length === 0 && (
        <p className="hint">
          {search
            ? 'Nothing matches.'
            : `No ${TABS.find((t) => t.kind === tab)!.label} found in the data folder.`}
        </p>
      )}
      <ul className="en-cards" role="list">
        {shown.map((c) => {
          const selected = c.kind === 'checkpoint' && c.title === current;
          const info = describe(c);
          return (
            <li key={`${c.kind}:${c.name}`}>
              <button
                className={`en-card${selected ? ' selected' : ''}`}
                aria-pressed={c.kind === 'checkpoint' ? selected : undefined}
                disabled={busy !== null}
                title={c.kind === 'checkpoint' ? `Use ${c.title}` : `Add ${c.prompt} to the prompt`}
                onClick={() => void select(c)}
              >
                {c.has_preview ? (
                  <img src={previewUrl(c)} alt="" loading="lazy" />
                ) : (
                  <span className="en-placeholder" aria-hidden="true">
                    {c.name.slice(0, 1).toUpperCase()}
                  </span>
                )}
                <span className="en-name">
                  {c.alias && c.alias !== c.name ? `${c.name} (${c.alias})` : c.name}
                </span>
                {info && <span className="en-info">{info}</span>}
                {c.tags && c.tags.length > 0 && (
                  <span className="en-tags">
                    {c.tags
                      .slice(0, 5)
                      .map(([t]) => t)
                      .join(', ')}
                  </span>
                )}
                {busy === c.name && (
                  <span className="spinner" role="status" aria-label={`Loading ${c.name}`} />
                )}
              </button>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
