/**
 * SD Studio's own job API, as the History and Models screens use it: the store's generations
 * (/api/v1/history), model tools queued as jobs (/api/v1/tools), and one job's state and progress
 * (/api/v1/jobs/:id), polled until it ends.
 */
import { apiUrl, call } from './api.ts';

export interface JobProgressView {
  phase: string;
  step: number;
  steps: number;
  fraction: number;
  eta_seconds: number;
}

export interface JobImageView {
  url: string;
  seed: number;
  subseed: number;
  infotext: string;
}

export type JobStateName = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobView {
  id: string;
  mode: 'txt2img' | 'img2img' | 'tool';
  state: JobStateName;
  created_at: string;
  finished_at: string | null;
  error: string | null;
  params: Record<string, unknown> | null;
  progress: JobProgressView | null;
  result: { images: JobImageView[]; grid: { url: string } | null; interrupted: boolean } | null;
  tool?: Record<string, unknown> & { tool: string; result: Record<string, unknown> | null };
}

export interface HistoryEntry extends JobView {
  seq: number;
  thumbs: string[];
}

export interface HistoryPage {
  jobs: HistoryEntry[];
  next_before: number | null;
}

export const jobsApi = {
  history: (q: string, before?: number | null, limit = 30) => {
    const args = new URLSearchParams({ limit: String(limit) });
    if (q.trim()) args.set('q', q.trim());
    if (before) args.set('before', String(before));
    return call<HistoryPage>('GET', `/api/v1/history?${args}`);
  },
  rerun: (id: string) => call<HistoryEntry>('POST', `/api/v1/history/${encodeURIComponent(id)}/rerun`),
  remove: (id: string) => call<null>('DELETE', `/api/v1/history/${encodeURIComponent(id)}`),
  job: (id: string) => call<JobView>('GET', `/api/v1/jobs/${encodeURIComponent(id)}`),
  cancel: (id: string) => call<JobView>('POST', `/api/v1/jobs/${encodeURIComponent(id)}/cancel`),
  tool: (body: Record<string, unknown>) => call<JobView>('POST', '/api/v1/tools', body),
};

export const isDone = (j: JobView) =>
  j.state === 'succeeded' || j.state === 'failed' || j.state === 'cancelled';

/** Polls a job until it ends, telling `onUpdate` each state seen. */
export async function pollJob(id: string, onUpdate: (j: JobView) => void, pollMs = 250): Promise<JobView> {
  for (;;) {
    const j = await jobsApi.job(id);
    onUpdate(j);
    if (isDone(j)) return j;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Follows a job through its event stream (every progress event arrives, however fast the job), and
 * by polling where the stream fails; resolves with the job once it has ended.
 */
export function followJob(id: string, onUpdate: (j: JobView) => void): Promise<JobView> {
  return new Promise((resolve, reject) => {
    const es = new EventSource(apiUrl(`/api/v1/jobs/${encodeURIComponent(id)}/events`));
    let last: JobView | null = null;
    let ended = false;
    es.addEventListener('state', (e) => {
      last = JSON.parse((e as MessageEvent<string>).data) as JobView;
      onUpdate(last);
      if (isDone(last)) {
        ended = true;
        es.close();
        resolve(last);
      }
    });
    es.addEventListener('progress', (e) => {
      if (!last) return;
      last = { ...last, progress: JSON.parse((e as MessageEvent<string>).data) as JobProgressView };
      onUpdate(last);
    });
    es.onerror = () => {
      if (ended) return;
      es.close();
      pollJob(id, onUpdate).then(resolve, reject);
    };
  });
}

/** An image URL from the server (an absolute path) as base64 without the data: prefix. */
export async function fetchBase64(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not load ${url} (HTTP ${res.status})`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
