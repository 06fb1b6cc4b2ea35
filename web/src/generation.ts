/**
 * Running one generation the way A1111's own UI does over its API: the blocking POST runs while
 * /sdapi/v1/progress is polled for the step, ETA and the live preview.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, parseInfo, type GenerationInfo, type ProgressResponse } from './api.ts';

export interface GenerationResult {
  images: string[];
  info: GenerationInfo | null;
  /** The request as sent (for "reuse" and "send to"). */
  request: Record<string, unknown>;
}

export interface GenerationState {
  running: boolean;
  progress: ProgressResponse | null;
  /** The last preview image received (kept between polls that carry none). */
  preview: string | null;
  result: GenerationResult | null;
  error: string | null;
  started: number | null;
}

export function useGeneration(pollMs = 500) {
  const [state, setState] = useState<GenerationState>({
    running: false,
    progress: null,
    preview: null,
    result: null,
    error: null,
    started: null,
  });
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);

  const run = useCallback(
    async (mode: 'txt2img' | 'img2img', request: Record<string, unknown>) => {
      setState((s) => ({
        ...s,
        running: true,
        progress: null,
        preview: null,
        error: null,
        started: Date.now(),
      }));
      let done = false;
      const poll = async () => {
        while (!done && alive.current) {
          try {
            const p = await api.progress();
            if (done || !alive.current) break;
            setState((s) => ({ ...s, progress: p, preview: p.current_image ?? s.preview }));
          } catch {
            // A missed poll is not an error of the job; the POST reports real failures.
          }
          await new Promise((r) => setTimeout(r, pollMs));
        }
      };
      const polling = poll();
      try {
        const res = mode === 'txt2img' ? await api.txt2img(request) : await api.img2img(request);
        done = true;
        if (alive.current) {
          setState((s) => ({
            ...s,
            running: false,
            result: { images: res.images, info: parseInfo(res.info), request },
          }));
        }
      } catch (e) {
        done = true;
        if (alive.current) setState((s) => ({ ...s, running: false, error: (e as Error).message }));
      }
      await polling;
    },
    [pollMs],
  );

  return { state, run };
}

/** The seed of image `index` of a result (a prepended grid gets the job's first seed). */
export function seedOf(info: GenerationInfo | null, index: number): number | null {
  if (!info) return null;
  const first = info.index_of_first_image ?? 0;
  const i = index - first;
  if (i >= 0 && Array.isArray(info.all_seeds) && i < info.all_seeds.length) return info.all_seeds[i];
  return typeof info.seed === 'number' ? info.seed : null;
}
