/**
 * Running generations the way A1111's own UI does over its API: the blocking POST runs while
 * /sdapi/v1/progress is polled for the step, ETA and the live preview. Pressing Generate while a job
 * runs queues the new one here; queued jobs start one after the other and can be removed before they
 * start. Results of this session's jobs are kept (newest first) so earlier ones can be looked at again.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, parseInfo, type GenerationInfo, type ProgressResponse } from './api.ts';

export type GenerationMode = 'txt2img' | 'img2img';

export interface GenerationResult {
  id: number;
  images: string[];
  info: GenerationInfo | null;
  /** The request as sent (for "reuse" and "send to"). */
  request: Record<string, unknown>;
}

export interface QueuedJob {
  id: number;
  mode: GenerationMode;
  request: Record<string, unknown>;
}

export interface GenerationState {
  running: boolean;
  progress: ProgressResponse | null;
  /** The last preview image received (kept between polls that carry none). */
  preview: string | null;
  /** The result shown: the last job's unless an earlier one was picked. */
  result: GenerationResult | null;
  /** This session's results, newest first (at most MAX_HISTORY). */
  history: GenerationResult[];
  queue: QueuedJob[];
  error: string | null;
}

const MAX_HISTORY = 20;
let nextId = 1;

export function useGeneration(pollMs = 500) {
  const [state, setState] = useState<GenerationState>({
    running: false,
    progress: null,
    preview: null,
    result: null,
    history: [],
    queue: [],
    error: null,
  });
  const alive = useRef(true);
  const running = useRef(false);
  const queue = useRef<QueuedJob[]>([]);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);

  const runOne = useCallback(
    async (job: QueuedJob) => {
      running.current = true;
      setState((s) => ({ ...s, running: true, progress: null, preview: null }));
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
      let result: GenerationResult | null = null;
      let error: string | null = null;
      try {
        const res = job.mode === 'txt2img' ? await api.txt2img(job.request) : await api.img2img(job.request);
        result = { id: job.id, images: res.images, info: parseInfo(res.info), request: job.request };
      } catch (e) {
        error = (e as Error).message;
      }
      done = true;
      running.current = false;
      // The next queued job starts at once; this job's last poll ends on its own.
      const next = queue.current.shift();
      if (alive.current) {
        setState((s) => ({
          ...s,
          running: next !== undefined,
          queue: [...queue.current],
          error: error ?? s.error,
          ...(result && { result, history: [result, ...s.history].slice(0, MAX_HISTORY) }),
        }));
        if (next) void runOne(next);
      }
      await polling;
    },
    [pollMs],
  );

  /** Start a job now, or queue it behind the running one. */
  const run = useCallback(
    (mode: GenerationMode, request: Record<string, unknown>) => {
      const job = { id: nextId++, mode, request };
      if (running.current) {
        queue.current.push(job);
        setState((s) => ({ ...s, queue: [...queue.current] }));
      } else {
        setState((s) => ({ ...s, error: null }));
        void runOne(job);
      }
    },
    [runOne],
  );

  /** Remove a queued job that has not started. */
  const unqueue = useCallback((id: number) => {
    queue.current = queue.current.filter((j) => j.id !== id);
    setState((s) => ({ ...s, queue: [...queue.current] }));
  }, []);

  /** Show an earlier result of this session. */
  const show = useCallback((id: number) => {
    setState((s) => ({ ...s, result: s.history.find((r) => r.id === id) ?? s.result }));
  }, []);

  return { state, run, unqueue, show };
}

/** The seed of image `index` of a result (a prepended grid gets the job's first seed). */
export function seedOf(info: GenerationInfo | null, index: number): number | null {
  if (!info) return null;
  const first = info.index_of_first_image ?? 0;
  const i = index - first;
  if (i >= 0 && Array.isArray(info.all_seeds) && i < info.all_seeds.length) return info.all_seeds[i];
  return typeof info.seed === 'number' ? info.seed : null;
}
