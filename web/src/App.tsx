import { useCallback, useEffect, useMemo, useState } from 'react';
import { api } from './api.ts';
import type { Bound } from './components/fields.tsx';
import { Img2Img, type Img2ImgTab } from './screens/Img2Img.tsx';
import { PngInfo } from './screens/PngInfo.tsx';
import { Settings } from './screens/Settings.tsx';
import { Txt2Img } from './screens/Txt2Img.tsx';
import { defaultsFor, fromInfotext, fromRequest, type FormState } from './request.ts';
import { useServer } from './server-state.tsx';

const SCREENS = [
  { id: 'txt2img', label: 'txt2img' },
  { id: 'img2img', label: 'img2img' },
  { id: 'pnginfo', label: 'PNG Info' },
  { id: 'settings', label: 'Settings' },
] as const;
type ScreenId = (typeof SCREENS)[number]['id'];

function screenFromHash(): ScreenId {
  const h = location.hash.replace(/^#\/?/, '');
  return SCREENS.find((s) => s.id === h)?.id ?? 'txt2img';
}

type Patch = FormState | ((s: FormState) => FormState);

function useBound(initial: () => FormState): [Bound, (patch: Patch) => void] {
  const [state, setState] = useState<FormState>(initial);
  const set = useCallback((key: string, value: unknown) => setState((s) => ({ ...s, [key]: value })), []);
  const patch = useCallback(
    (p: Patch) => setState((s) => (typeof p === 'function' ? p(s) : { ...s, ...p })),
    [],
  );
  return [useMemo(() => ({ state, set }), [state, set]), patch];
}

function ThemeToggle() {
  const [theme, setTheme] = useState<string>(() => localStorage.getItem('sdstudio-theme') ?? 'auto');
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem('sdstudio-theme', theme);
  }, [theme]);
  const next = theme === 'auto' ? 'dark' : theme === 'dark' ? 'light' : 'auto';
  return (
    <button
      className="icon"
      title={`Theme: ${theme} (click for ${next})`}
      aria-label="Theme"
      onClick={() => setTheme(next)}
    >
      {theme === 'dark' ? '☾' : theme === 'light' ? '☀' : '◐'}
    </button>
  );
}

/** The checkpoint in use (A1111's `sd_model_checkpoint` option); switching loads it on the server. */
function ModelSelect() {
  const { lists, setOptions, reload } = useServer();
  const [loading, setLoading] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (!lists) return null;
  const current = String(lists.options.sd_model_checkpoint ?? '');
  if (!lists.models.length) {
    return (
      <div className="model-select empty" role="alert">
        No checkpoint found. Put a <code>.safetensors</code> or <code>.ckpt</code> into{' '}
        <code>models/Stable-diffusion</code> of the data folder (or run <code>sdstudio download</code>), then{' '}
        <button
          onClick={async () => {
            await api.refreshCheckpoints().catch(() => undefined);
            await reload();
          }}
        >
          Refresh
        </button>
      </div>
    );
  }
  const matches = (title: string) =>
    lists.models.find(
      (m) => m.title === title || m.model_name === title || m.title.split(' [')[0] === title.split(' [')[0],
    );
  const selected = matches(current)?.title ?? current;
  return (
    <div className="model-select">
      <label htmlFor="checkpoint">Checkpoint</label>
      <select
        id="checkpoint"
        value={selected}
        disabled={loading !== null}
        onChange={async (e) => {
          const title = e.target.value;
          setLoading(title);
          setError(null);
          try {
            await api.setOptions({ sd_model_checkpoint: title });
            setOptions({ sd_model_checkpoint: title });
          } catch (err) {
            setError((err as Error).message);
          } finally {
            setLoading(null);
          }
        }}
      >
        {!matches(current) && <option value={current}>{current || '—'}</option>}
        {lists.models.map((m) => (
          <option key={m.title} value={m.title}>
            {m.title}
          </option>
        ))}
      </select>
      {loading && <span className="spinner" aria-label="Loading checkpoint" />}
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}

export function App() {
  const { error, lists } = useServer();
  const [screen, setScreen] = useState<ScreenId>(screenFromHash);
  useEffect(() => {
    const onHash = () => setScreen(screenFromHash());
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  const go = (id: ScreenId) => {
    location.hash = `#${id}`;
    setScreen(id);
  };

  const [t2i, patchT2i] = useBound(() => defaultsFor('txt2img'));
  const [i2i, patchI2i] = useBound(() => defaultsFor('img2img'));
  const [i2iImage, setI2iImage] = useState<string | null>(null);
  const [i2iTab, setI2iTab] = useState<Img2ImgTab>('img2img');

  // The server's sampler list decides: a default it does not offer falls back to its first.
  useEffect(() => {
    const names = lists?.samplers.map((s) => s.name) ?? [];
    if (!names.length) return;
    const fix = (s: FormState) =>
      names.includes(String(s.sampler_name)) ? s : { ...s, sampler_name: names[0] };
    patchT2i(fix);
    patchI2i(fix);
  }, [lists, patchT2i, patchI2i]);

  return (
    <div className="app">
      <header>
        <h1>SD Studio</h1>
        <ModelSelect />
        <nav role="tablist">
          {SCREENS.map((s) => (
            <button
              key={s.id}
              role="tab"
              aria-selected={screen === s.id}
              className={screen === s.id ? 'active' : ''}
              onClick={() => go(s.id)}
            >
              {s.label}
            </button>
          ))}
        </nav>
        <ThemeToggle />
      </header>
      {error && (
        <div className="banner error" role="alert">
          {error} Retrying…
        </div>
      )}
      <main>
        <div hidden={screen !== 'txt2img'}>
          <Txt2Img
            form={t2i}
            onSend={(target, image, request, seed) => {
              patchI2i({ ...fromRequest(request, 'img2img'), ...(seed !== null ? { seed } : {}) });
              setI2iImage(image);
              setI2iTab(target);
              go('img2img');
            }}
          />
        </div>
        <div hidden={screen !== 'img2img'}>
          <Img2Img form={i2i} image={i2iImage} setImage={setI2iImage} tab={i2iTab} setTab={setI2iTab} />
        </div>
        <div hidden={screen !== 'pnginfo'}>
          <PngInfo
            onSend={(target, parameters, image) => {
              if (target === 'txt2img') {
                patchT2i(fromInfotext(parameters, 'txt2img'));
              } else {
                patchI2i(fromInfotext(parameters, 'img2img'));
                setI2iImage(image);
                setI2iTab('img2img');
              }
              go(target);
            }}
          />
        </div>
        <div hidden={screen !== 'settings'}>{screen === 'settings' && <Settings />}</div>
      </main>
    </div>
  );
}
