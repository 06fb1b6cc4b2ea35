/**
 * What the forms need from the server, loaded once and refreshed on demand: checkpoints, samplers,
 * schedulers, upscalers, styles and the options. While the server does not answer, `error` says so
 * and the lists are retried every few seconds (the page reconnects by itself).
 */
import { createContext, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from 'react';
import {
  api,
  OFFLINE_EVENT,
  type Options,
  type PromptStyle,
  type SamplerItem,
  type SchedulerItem,
  type SdModel,
  type VaeItem,
} from './api.ts';

export interface ServerLists {
  models: SdModel[];
  vaes: VaeItem[];
  samplers: SamplerItem[];
  schedulers: SchedulerItem[];
  /** Hires-fix upscalers: latent modes first, then image upscalers (A1111's order). */
  hrUpscalers: string[];
  styles: PromptStyle[];
  options: Options;
}

export interface ServerState {
  lists: ServerLists | null;
  /** Why the lists could not be loaded (the server is down, or answered an error). */
  error: string | null;
  reload: () => Promise<void>;
  setOptions: (options: Options) => void;
}

const Ctx = createContext<ServerState | null>(null);

async function loadLists(): Promise<ServerLists> {
  const [models, vaes, samplers, schedulers, upscalers, latent, styles, options] = await Promise.all([
    api.models(),
    api.vaes(),
    api.samplers(),
    api.schedulers(),
    api.upscalers(),
    api.latentUpscaleModes(),
    api.styles(),
    api.options(),
  ]);
  const hrUpscalers = [
    ...latent.map((l) => l.name),
    ...upscalers.map((u) => u.name).filter((n) => n !== 'None'),
  ];
  return { models, vaes, samplers, schedulers, hrUpscalers, styles, options };
}

export function ServerProvider({ children, retryMs = 3000 }: { children: ReactNode; retryMs?: number }) {
  const [lists, setLists] = useState<ServerLists | null>(null);
  const [error, setError] = useState<string | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const reload = useCallback(async () => {
    clearTimeout(timer.current);
    try {
      setLists(await loadLists());
      setError(null);
    } catch (e) {
      setError((e as Error).message);
      timer.current = setTimeout(() => void reload(), retryMs);
    }
  }, [retryMs]);

  useEffect(() => {
    void reload();
    return () => clearTimeout(timer.current);
  }, [reload]);

  // A request that got no answer: say so and poll until the server is back.
  useEffect(() => {
    const onOffline = () => {
      setError('The server does not answer.');
      clearTimeout(timer.current);
      timer.current = setTimeout(() => void reload(), retryMs);
    };
    window.addEventListener(OFFLINE_EVENT, onOffline);
    return () => window.removeEventListener(OFFLINE_EVENT, onOffline);
  }, [reload, retryMs]);

  const setOptions = useCallback((options: Options) => {
    setLists((l) => (l ? { ...l, options: { ...l.options, ...options } } : l));
  }, []);

  return <Ctx.Provider value={{ lists, error, reload, setOptions }}>{children}</Ctx.Provider>;
}

export function useServer(): ServerState {
  const v = useContext(Ctx);
  if (!v) throw new Error('useServer outside ServerProvider');
  return v;
}
