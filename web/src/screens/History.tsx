import { useCallback, useEffect, useRef, useState } from 'react';
import { fetchBase64, jobsApi, type HistoryEntry } from '../jobs-api.ts';
import './library.css';

export interface HistoryProps {
  /** The screen is on show: reload then, and poll while a job runs. */
  active: boolean;
  /** Send a job's parameters (and, for img2img, the chosen image as base64) to a screen. */
  onSend: (
    target: 'txt2img' | 'img2img',
    params: Record<string, unknown>,
    image: string | null,
    seed: number | null,
  ) => void;
}

const PAGE = 20;

/**
 * Every generation the server's store holds (it survives restarts), newest first: search by prompt,
 * thumbnails, the infotext of each image, and re-run / send to / delete.
 */
export function History({ active, onSend }: HistoryProps) {
  const [query, setQuery] = useState('');
  const [entries, setEntries] = useState<HistoryEntry[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // Only the newest request may set the list (typing fires several).
  const generation = useRef(0);

  const load = useCallback(async (q: string) => {
    const mine = ++generation.current;
    try {
      // Keeps as many entries as are shown, so polling does not shrink a list paged further.
      const page = await jobsApi.history(q, null, PAGE);
      if (mine !== generation.current) return;
      setEntries(page.jobs);
      setNext(page.next_before);
      setError(null);
    } catch (e) {
      if (mine === generation.current) setError((e as Error).message);
    } finally {
      if (mine === generation.current) setLoaded(true);
    }
  }, []);

  useEffect(() => {
    if (!active) return;
    const t = setTimeout(() => void load(query), 250);
    return () => clearTimeout(t);
  }, [active, query, load]);

  const busy = entries.some((e) => e.state === 'queued' || e.state === 'running');
  useEffect(() => {
    if (!active || !busy) return;
    const t = setInterval(() => void load(query), 1000);
    return () => clearInterval(t);
  }, [active, busy, query, load]);

  async function more() {
    if (!next) return;
    try {
      const page = await jobsApi.history(query, next, PAGE);
      setEntries((es) => [...es, ...page.jobs.filter((j) => !es.some((e) => e.id === j.id))]);
      setNext(page.next_before);
    } catch (e) {
      setError((e as Error).message);
    }
  }

  return (
    <div className="screen library">
      <div className="settings-bar">
        <input
          type="search"
          placeholder="Search prompts"
          aria-label="Search prompts"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
        />
        <button onClick={() => void load(query)}>Refresh</button>
        {error && (
          <span className="error" role="alert">
            {error}
          </span>
        )}
      </div>
      {loaded && !entries.length && !error && (
        <p className="hint">
          {query.trim() ? `No generation's prompt contains “${query.trim()}”.` : 'No generations yet.'}
        </p>
      )}
      <ul className="hist-list" aria-label="History">
        {entries.map((e) => (
          <Entry
            key={e.id}
            entry={e}
            onSend={onSend}
            onRerun={async () => {
              await jobsApi.rerun(e.id);
              await load(query);
            }}
            onDelete={async () => {
              await jobsApi.remove(e.id);
              setEntries((es) => es.filter((x) => x.id !== e.id));
            }}
          />
        ))}
      </ul>
      {next && <button onClick={() => void more()}>Load older</button>}
    </div>
  );
}

function when(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function Entry({
  entry,
  onSend,
  onRerun,
  onDelete,
}: {
  entry: HistoryEntry;
  onSend: HistoryProps['onSend'];
  onRerun: () => Promise<void>;
  onDelete: () => Promise<void>;
}) {
  const [selected, setSelected] = useState(0);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const images = entry.result?.images ?? [];
  const image = images[Math.min(selected, images.length - 1)];
  const params = entry.params ?? {};
  const prompt = String(params.prompt ?? '');
  const running = entry.state === 'queued' || entry.state === 'running';

  const act = (fn: () => Promise<void>) => async () => {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <li className="hist-entry" aria-label={`Job: ${prompt.slice(0, 80) || '(no prompt)'}`}>
      <div className="hist-thumbs">
        {entry.thumbs.map((src, i) => (
          <button
            key={src}
            className={i === selected ? 'thumb selected' : 'thumb'}
            aria-label={`Image ${i + 1}`}
            onClick={() => setSelected(i)}
          >
            <img src={src} alt="" loading="lazy" />
          </button>
        ))}
        {!entry.thumbs.length && <div className="hist-empty">{running ? '…' : '∅'}</div>}
      </div>
      <div className="hist-body">
        <div className="hist-meta">
          <span>{entry.mode}</span>
          <span>{when(entry.created_at)}</span>
          <span className={`hist-state ${entry.state}`}>{entry.state}</span>
          {entry.progress && entry.state === 'running' && (
            <span>{Math.round(entry.progress.fraction * 100)} %</span>
          )}
          {image && (
            <a href={image.url} target="_blank" rel="noreferrer">
              Full size
            </a>
          )}
        </div>
        {image ? (
          <pre className="infotext" aria-label="Infotext">
            {image.infotext}
          </pre>
        ) : (
          <p className="hist-prompt">{prompt || '(no prompt)'}</p>
        )}
        {entry.error && entry.state !== 'succeeded' && <p className="error">{entry.error}</p>}
        <div className="actions">
          <button
            disabled={busy}
            onClick={act(onRerun)}
            title="Queue it again with the same parameters and seed"
          >
            Re-run
          </button>
          <button onClick={() => onSend('txt2img', params, null, image?.seed ?? null)}>
            Send to txt2img
          </button>
          <button
            disabled={busy || !image}
            onClick={act(async () => onSend('img2img', params, await fetchBase64(image!.url), image!.seed))}
          >
            Send to img2img
          </button>
          {confirming ? (
            <span className="hist-confirm" role="group" aria-label="Confirm delete">
              Delete this job and its {images.length} image file{images.length === 1 ? '' : 's'}?
              <button className="danger" disabled={busy} onClick={act(onDelete)}>
                Yes, delete
              </button>
              <button onClick={() => setConfirming(false)}>Cancel</button>
            </span>
          ) : (
            <button disabled={busy || entry.state === 'running'} onClick={() => setConfirming(true)}>
              Delete
            </button>
          )}
        </div>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </div>
    </li>
  );
}
