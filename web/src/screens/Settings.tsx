import { useEffect, useMemo, useState } from 'react';
import { api, type Options } from '../api.ts';
import { groupOptions } from '../option-sections.ts';
import { useServer } from '../server-state.tsx';

type Draft = Record<string, string | boolean>;

function toDraft(v: unknown): string | boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' || typeof v === 'string') return String(v);
  return JSON.stringify(v);
}

/** The draft's value in the option's own type, or an error message. */
export function parseOption(
  original: unknown,
  draft: string | boolean,
): { value: unknown } | { error: string } {
  if (typeof original === 'boolean') return { value: Boolean(draft) };
  const text = String(draft);
  if (typeof original === 'number') {
    const n = Number(text.trim());
    if (text.trim() === '' || !Number.isFinite(n)) return { error: 'must be a number' };
    return { value: n };
  }
  if (typeof original === 'string') return { value: text };
  try {
    return { value: JSON.parse(text) };
  } catch {
    return { error: 'must be JSON' };
  }
}

/**
 * Every option the server exposes (GET /sdapi/v1/options), grouped in A1111's sections and
 * searchable; Apply posts the changed ones.
 */
export function Settings() {
  const { setOptions } = useServer();
  const [options, setLoaded] = useState<Options | null>(null);
  const [draft, setDraft] = useState<Draft>({});
  const [filter, setFilter] = useState('');
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [saving, setSaving] = useState(false);

  const load = async () => {
    try {
      const o = await api.options();
      setLoaded(o);
      setDraft(Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toDraft(v)])));
    } catch (e) {
      setMessage({ ok: false, text: (e as Error).message });
    }
  };
  useEffect(() => {
    void load();
  }, []);

  // In the server's order (A1111's), grouped into A1111's sections; the search keeps matching keys.
  const groups = useMemo(
    () => groupOptions(Object.keys(options ?? {}), (k) => k.toLowerCase().includes(filter.toLowerCase())),
    [options, filter],
  );
  const changes: Options = {};
  const errors: Record<string, string> = {};
  for (const [k, d] of Object.entries(draft)) {
    if (!options || d === toDraft(options[k])) continue;
    const r = parseOption(options[k], d);
    if ('error' in r) errors[k] = r.error;
    else changes[k] = r.value;
  }
  const changed = Object.keys(changes).length;

  async function save() {
    setSaving(true);
    setMessage(null);
    try {
      await api.setOptions(changes);
      setOptions(changes);
      setMessage({ ok: true, text: `Saved ${changed} setting${changed === 1 ? '' : 's'}.` });
      await load();
    } catch (e) {
      setMessage({ ok: false, text: (e as Error).message });
    } finally {
      setSaving(false);
    }
  }

  return (
    <div className="screen settings">
      <div className="settings-bar">
        <input
          type="search"
          placeholder="Search settings"
          aria-label="Search settings"
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
        />
        <button
          className="primary"
          disabled={!changed || saving || Object.keys(errors).length > 0}
          onClick={() => void save()}
        >
          {saving ? 'Saving…' : `Apply settings${changed ? ` (${changed})` : ''}`}
        </button>
        <button onClick={() => void load()}>Reload</button>
        {message && (
          <span className={message.ok ? 'ok' : 'error'} role={message.ok ? 'status' : 'alert'}>
            {message.text}
          </span>
        )}
      </div>
      {!options && !message && <p>Loading…</p>}
      {groups.map((group) => (
        <section key={group.title} className="settings-group" aria-label={group.title}>
          <h3>{group.title}</h3>
          <div className="settings-list">
            {group.keys.map((k) => {
              const original = options![k];
              const d = draft[k];
              return (
                <div key={k} className={errors[k] ? 'setting invalid' : 'setting'}>
                  <label htmlFor={`opt-${k}`}>{k}</label>
                  {typeof original === 'boolean' ? (
                    <input
                      id={`opt-${k}`}
                      type="checkbox"
                      checked={Boolean(d)}
                      onChange={(e) => setDraft({ ...draft, [k]: e.target.checked })}
                    />
                  ) : (
                    <input
                      id={`opt-${k}`}
                      type={typeof original === 'number' ? 'number' : 'text'}
                      step="any"
                      value={String(d)}
                      onChange={(e) => setDraft({ ...draft, [k]: e.target.value })}
                    />
                  )}
                  {errors[k] && <span className="error">{errors[k]}</span>}
                </div>
              );
            })}
          </div>
        </section>
      ))}
    </div>
  );
}
