import { useCallback, useEffect, useMemo, useState } from 'react';
import { api } from './api.ts';
import type { Bound } from './components/fields.tsx';
import { History } from './screens/History.tsx';
import { ModelDownload } from './components/ModelDownload.tsx';
import { Img2Img, type Img2ImgTab } from './screens/Img2Img.tsx';
import { Models } from './screens/Models.tsx';
import { PngInfo } from './screens/PngInfo.tsx';
import { Settings } from './screens/Settings.tsx';
import { Txt2Img } from './screens/Txt2Img.tsx';
import { defaultsFor, fromInfotext, fromRequest, type FormState } from './request.ts';
import { useServer } from './server-state.tsx';

const SCREENS = [
  { id: 'txt2img', label: 'txt2img' },
  { id: 'img2img', label: 'img2img' },
  { id: 'pnginfo', label: 'PNG Info' },
  { id: 'history', label: 'History' },
  { id: 'models', label: 'Models' },
  { id: 'settings', label: 'Settings' },
] as const;
type ScreenId = (typeof SCREENS)[number]['id'];

function screenFromHash(): ScreenId {
  const h = location.hash.replace(/^#\/?/, '');
  return SCREENS.find((s) => s.id === h)?.id ?? 'txt2img';
}

type Patch = FormState | ((s: FormState) => FormState);

function useBound(id: string, initial: () => FormState): [Bound, (patch: Patch) => void] {
  const [state, setState] = useState<FormState>(initial);
  const set = useCallback((key: string, value: unknown) => setState((s) => ({ ...s, [key]: value })), []);
  const patch = useCallback(
    (p: Patch) => setState((s) => (typeof p === 'function' ? p(s) : { ...s, ...p })),
    [],
  );
  return [useMemo(() => ({ id, state, set }), [id, state, set]), patch];
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

/** A model option (`sd_model_checkpoint`, `sd_vae`) set on the server; switching loads it there. */
function OptionSelect({
  id,
  label,
  option,
  values,
  current,
}: {
  id: string;
  label: string;
  option: string;
  values: string[];
  current: string;
}) {
  const { setOptions } = useServer();
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  return (
    <div className="model-select">
      <label htmlFor={id}>{label}</label>
      <select
        id={id}
        value={current}
        disabled={loading}
        onChange={async (e) => {
          const value = e.target.value;
          setLoading(true);
          setError(null);
          try {
            await api.setOptions({ [option]: value });
            setOptions({ [option]: value });
          } catch (err) {
            setError((err as Error).message);
          } finally {
            setLoading(false);
          }
        }}
      >
        {!values.includes(current) && <option value={current}>{current || '—'}</option>}
        {values.map((v) => (
          <option key={v} value={v}>
            {v}
          </option>
        ))}
      </select>
      {loading && <span className="spinner" role="status" aria-label={`Loading ${label}`} />}
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}

/** Checkpoint and VAE (A1111's quick settings), or what to do when there is no checkpoint. */
function ModelSelect() {
  const { lists, reload } = useServer();
  if (!lists) return null;
  if (!lists.models.length) {
    return (
      <div className="model-select empty" role="alert">
        No checkpoint found. Put a <code>.safetensors</code> or <code>.ckpt</code> into{' '}
        <code>models/Stable-diffusion</code> of the data folder, then{' '}
        <button
          onClick={async () => {
            await api.refreshCheckpoints().catch(() => undefined);
            await reload();
          }}
        >
          Refresh
        </button>
        , or download one:
        <ModelDownload onDone={reload} />
      </div>
    );
  }
  const current = String(lists.options.sd_model_checkpoint ?? '');
  const stem = (t: string) => t.split(' [')[0];
  const match = lists.models.find(
    (m) => m.title === current || m.model_name === current || stem(m.title) === stem(current),
  );
  return (
    <>
      <OptionSelect
        id="checkpoint"
        label="Checkpoint"
        option="sd_model_checkpoint"
        values={lists.models.map((m) => m.title)}
        current={match?.title ?? current}
      />
      <OptionSelect
        id="vae"
        label="VAE"
        option="sd_vae"
        values={['Automatic', 'None', ...lists.vaes.map((v) => v.model_name)]}
        current={String(lists.options.sd_vae ?? 'Automatic')}
      />
    </>
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

  const [t2i, patchT2i] = useBound('txt2img', () => defaultsFor('txt2img'));
  const [i2i, patchI2i] = useBound('img2img', () => defaultsFor('img2img'));
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
        <div hidden={screen !== 'history'}>
          <History
            active={screen === 'history'}
            onSend={(target, params, image, seed) => {
              const form = { ...fromRequest(params, target), ...(seed !== null ? { seed } : {}) };
              if (target === 'txt2img') {
                patchT2i({ ...form, enable_hr: Boolean(params.enable_hr) });
              } else {
                patchI2i(form);
                if (image) setI2iImage(image);
                setI2iTab('img2img');
              }
              go(target);
            }}
          />
        </div>
        <div hidden={screen !== 'models'}>
          <Models />
        </div>
        <div hidden={screen !== 'settings'}>{screen === 'settings' && <Settings />}</div>
      </main>
    </div>
  );
}
