/**
 * The UI's only way to the server: A1111's HTTP API (`/sdapi/v1/…`, see shared/reference/a1111-api.md),
 * same origin as the page. Every call throws an ApiError whose message is the server's own words.
 */

export interface SdModel {
  title: string;
  model_name: string;
  hash: string | null;
  sha256: string | null;
  filename: string;
}
export interface SamplerItem {
  name: string;
  aliases: string[];
}
export interface SchedulerItem {
  name: string;
  label: string;
}
export interface UpscalerItem {
  name: string;
}
export interface PromptStyle {
  name: string;
  prompt: string | null;
  negative_prompt: string | null;
}
export interface VaeItem {
  model_name: string;
}

export interface GenerationInfo {
  seed: number;
  all_seeds: number[];
  subseed: number;
  all_subseeds: number[];
  infotexts: string[];
  index_of_first_image?: number;
  width: number;
  height: number;
  [key: string]: unknown;
}

export interface GenerationResponse {
  images: string[];
  parameters: Record<string, unknown>;
  info: string;
}

export interface ProgressResponse {
  progress: number;
  eta_relative: number;
  state: {
    job_count: number;
    job_no: number;
    sampling_step: number;
    sampling_steps: number;
    interrupted?: boolean;
    skipped?: boolean;
  };
  current_image: string | null;
  textinfo: string | null;
}

export interface PngInfoResponse {
  info: string;
  items: Record<string, unknown>;
  parameters: Record<string, unknown>;
}

export type Options = Record<string, unknown>;

export interface TokenCount {
  token_count: number;
  max_length: number;
  chunks: number[];
}

/** A card of the extra-networks panel (GET /api/v1/extra-networks). */
export interface NetworkCard {
  kind: 'checkpoint' | 'lora' | 'embedding' | 'hypernetwork';
  name: string;
  /** What a click inserts into the prompt (empty for checkpoints). */
  prompt: string;
  title?: string;
  alias?: string;
  base_model?: string;
  rank?: number | null;
  tags?: [string, number][];
  vectors?: number;
  shape?: number;
  compatible?: boolean;
  has_preview: boolean;
}

/** Dispatched on `window` when a request gets no answer at all (server stopped, network gone). */
export const OFFLINE_EVENT = 'sdstudio:offline';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The server's message from an error body: FastAPI's `detail` (string or list), or A1111's `errors`. */
export function errorMessage(status: number, body: unknown): string {
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    if (typeof b.detail === 'string' && b.detail) return b.detail;
    if (Array.isArray(b.detail)) {
      return b.detail
        .map((d: { loc?: unknown[]; msg?: string }) =>
          [Array.isArray(d.loc) ? d.loc.filter((l) => l !== 'body').join('.') : '', d.msg ?? '']
            .filter(Boolean)
            .join(': '),
        )
        .join('; ');
    }
    if (typeof b.errors === 'string' && b.errors) return b.errors;
    if (typeof b.message === 'string' && b.message) return b.message;
    if (typeof b.error === 'string' && b.error) return b.error;
  }
  if (typeof body === 'string' && body) return body;
  return `HTTP ${status}`;
}

/**
 * Where the server's routes are: the folder the UI is served from (`/`, or `/sub/` with `--subpath`),
 * found from this bundle's own URL (web/dist/assets/…), so any page path works.
 */
function base(): URL {
  return import.meta.env.DEV ? new URL('/', location.href) : new URL('../', import.meta.url);
}

/** A server path as a URL the page can open (EventSource, images). */
export const apiUrl = (path: string) => new URL(path.replace(/^\//, ''), base());

/** One request to the server (our job API's modules call it too: jobs-api.ts). */
export async function call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(new URL(path.replace(/^\//, ''), base()), {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    // The page's ServerProvider listens and reconnects.
    window.dispatchEvent(new Event(OFFLINE_EVENT));
    throw new ApiError('The server does not answer. Is `sdstudio serve` still running?', 0);
  }
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: keep the text.
  }
  if (!res.ok) throw new ApiError(errorMessage(res.status, parsed), res.status);
  return parsed as T;
}

/** A checkpoint download running on the server (POST /api/v1/downloads). */
export interface DownloadState {
  id: string;
  name: string;
  state: 'running' | 'succeeded' | 'failed';
  bytes: number;
  total: number;
  error: string | null;
}

export const api = {
  models: () => call<SdModel[]>('GET', '/sdapi/v1/sd-models'),
  vaes: () => call<VaeItem[]>('GET', '/sdapi/v1/sd-vae'),
  samplers: () => call<SamplerItem[]>('GET', '/sdapi/v1/samplers'),
  schedulers: () => call<SchedulerItem[]>('GET', '/sdapi/v1/schedulers'),
  upscalers: () => call<UpscalerItem[]>('GET', '/sdapi/v1/upscalers'),
  latentUpscaleModes: () => call<{ name: string }[]>('GET', '/sdapi/v1/latent-upscale-modes'),
  styles: () => call<PromptStyle[]>('GET', '/sdapi/v1/prompt-styles'),
  options: () => call<Options>('GET', '/sdapi/v1/options'),
  setOptions: (changes: Options) => call<null>('POST', '/sdapi/v1/options', changes),
  refreshCheckpoints: () => call<null>('POST', '/sdapi/v1/refresh-checkpoints'),
  startDownload: (source: string) =>
    call<DownloadState>('POST', '/api/v1/downloads', source ? { source } : {}),
  download: (id: string) => call<DownloadState>('GET', `/api/v1/downloads/${encodeURIComponent(id)}`),
  txt2img: (req: Record<string, unknown>) => call<GenerationResponse>('POST', '/sdapi/v1/txt2img', req),
  img2img: (req: Record<string, unknown>) => call<GenerationResponse>('POST', '/sdapi/v1/img2img', req),
  progress: () => call<ProgressResponse>('GET', '/sdapi/v1/progress?skip_current_image=false'),
  interrupt: () => call<unknown>('POST', '/sdapi/v1/interrupt'),
  skip: () => call<unknown>('POST', '/sdapi/v1/skip'),
  pngInfo: (image: string) => call<PngInfoResponse>('POST', '/sdapi/v1/png-info', { image }),
  tokenize: (body: { prompt: string; negative?: boolean; steps?: number; styles?: string[] }) =>
    call<TokenCount>('POST', '/api/v1/tokenize', body),
  extraNetworks: () => call<{ items: NetworkCard[] }>('GET', '/api/v1/extra-networks'),
  refreshLoras: () => call<null>('POST', '/sdapi/v1/refresh-loras'),
  saveStyle: (style: { name: string; prompt: string; negative_prompt: string }) =>
    call<PromptStyle[]>('POST', '/api/v1/prompt-styles', style),
};

/** URL of a card's preview image (same origin, under the page's base path). */
export function previewUrl(card: Pick<NetworkCard, 'kind' | 'name'>): string {
  const q = new URLSearchParams({ kind: card.kind, name: card.name });
  return new URL(`api/v1/extra-networks/preview?${q}`, base()).href;
}

/** `data:` URL of a base64 image from the API (PNG unless the bytes say otherwise). */
export function imageUrl(b64: string): string {
  if (b64.startsWith('data:')) return b64;
  const mime = b64.startsWith('/9j/') ? 'image/jpeg' : b64.startsWith('UklGR') ? 'image/webp' : 'image/png';
  return `data:${mime};base64,${b64}`;
}

/** A File as base64 without the `data:` prefix (what the API takes). */
export function fileToBase64(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(reader.error ?? new Error('could not read the file'));
    reader.readAsDataURL(file);
  });
}

/** The `info` string of a generation response, parsed; null if the server sent none. */
export function parseInfo(info: string): GenerationInfo | null {
  try {
    const v = JSON.parse(info) as GenerationInfo;
    return v && typeof v === 'object' ? v : null;
  } catch {
    return null;
  }
}
