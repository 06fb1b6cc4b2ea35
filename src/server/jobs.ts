/**
 * What the server queues: a job is a generation request (GenerationParams plus where its images go),
 * run by a `JobExecutor` (the pipeline's job runner behind a small seam) one at a time by a
 * `JobQueue`. Both are interfaces so a BullMQ/Redis queue and remote workers can replace the
 * in-process ones (queue.ts, executor.ts) without touching the routes.
 */
import type { GenerationParams } from '../params/generation.js';
import type { RgbImage } from '../image/images.js';
import type { A1111Info } from '../pipeline/job.js';

export type JobMode = 'txt2img' | 'img2img';
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export interface JobRequest {
  mode: JobMode;
  /** Validated, defaults filled; override_settings already holds the settings in force for the job. */
  params: GenerationParams;
  /** Checkpoint file (absolute, from the model catalog) and VAE ("Automatic", "None" or a catalog file). */
  checkpoint: string;
  vae: string;
  /** true: images go to outputs/ in A1111's layout; false: to jobs/<id>/ (removed with the job). */
  save: boolean;
  /** Make a grid when the job has two images or more. */
  grid: boolean;
  /** Live preview every N steps (0 = none). */
  previewEvery: number;
  /** Who sent it: an A1111 route waits on it over HTTP, our own API polls or streams. */
  source: 'a1111' | 'api';
}

/** A model tool job (tool-jobs.ts): the task with its inputs already resolved to catalog files. */
export interface ToolJobRequest {
  mode: 'tool';
  task: ToolTask;
  source: 'api';
}

export type ToolTask =
  | {
      tool: 'merge';
      a: string;
      b?: string;
      c?: string;
      method: 'weighted-sum' | 'add-difference' | 'no-interp';
      multiplier: number;
      fp16: boolean;
      bakeVae?: string;
      discard?: string;
      out: string;
    }
  | {
      tool: 'convert';
      model: string;
      dtype?: 'fp16' | 'bf16' | 'fp32';
      prune: boolean;
      noVae: boolean;
      out: string;
    }
  | { tool: 'extract'; model: string; part: 'unet' | 'vae' | 'text-encoder' | 'text-encoder-2'; out: string }
  | { tool: 'inspect'; model: string }
  | { tool: 'hash'; model: string };

export type AnyJobRequest = JobRequest | ToolJobRequest;

export function isToolRequest(r: AnyJobRequest): r is ToolJobRequest {
  return r.mode === 'tool';
}

export interface JobImageInfo {
  path: string;
  seed: number;
  subseed: number;
  infotext: string;
  prompt: string;
  negativePrompt: string;
}

export interface JobResultInfo {
  /** The images finished so far (all of them once the job has succeeded). */
  images: JobImageInfo[];
  grid: { path: string; infotext: string } | null;
  interrupted: boolean;
  /** A1111's `info` fields (seeds, prompts, model, job_timestamp, …); null until the job ends. */
  info: A1111Info | null;
  /** A tool job's answer (the file written, the inspect report, the hashes). */
  tool?: Record<string, unknown>;
}

export interface JobRecord {
  id: string;
  seq: number;
  /** A generation mode, or 'tool': a model tool (merge, convert, …) run through the same queue. */
  mode: JobMode | 'tool';
  request: AnyJobRequest;
  state: JobState;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  result: JobResultInfo | null;
  error: string | null;
  /** HTTP status the error maps to: 4xx for what the request asked, 500 for a failure of ours. */
  errorStatus: number | null;
}

/** Progress of the running job (A1111 /progress and our SSE stream read it). */
export interface JobProgress {
  jobId: string;
  /** The pipeline's phase: 'txt2img', 'first pass', 'hires fix', 'img2img' or 'vae decode'. */
  phase: string;
  /** Sampling step within the current batch/pass, and its step count. */
  step: number;
  steps: number;
  /** Batch (pass) index and count; the hires pass counts as its own, as in A1111. */
  jobNo: number;
  jobCount: number;
  startedAt: number;
  /** Fraction of the whole job done, 0..1. */
  fraction: number;
  /** Seconds left, estimated from the time so far. */
  etaSeconds: number;
  /** Latest live preview (one per image of the batch) and the step it was made at. */
  preview: { images: RgbImage[]; step: number } | null;
  interrupted: boolean;
  skipped: boolean;
}

export type JobEvent =
  | { type: 'state'; job: JobRecord }
  | { type: 'progress'; progress: JobProgress }
  | { type: 'preview'; progress: JobProgress };

export interface ListOptions {
  state?: JobState;
  limit: number;
  offset: number;
}

/** The history's query: generation jobs whose prompt contains `q`, older than `before` (a seq). */
export interface HistoryQuery {
  q?: string;
  before?: number;
  limit: number;
}

export interface JobQueue {
  /** Records the job and queues it behind the others; resolves at once with its record. */
  submit(request: AnyJobRequest): Promise<JobRecord>;
  get(id: string): Promise<JobRecord | undefined>;
  list(opts: ListOptions): Promise<{ jobs: JobRecord[]; total: number }>;
  /** Generation jobs, newest first, searched by prompt; `more` says whether older ones match. */
  history(q: HistoryQuery): Promise<{ jobs: JobRecord[]; more: boolean }>;
  /** Resolves when the job has finished (succeeded, failed or cancelled). */
  wait(id: string): Promise<JobRecord>;
  /** Queued: cancelled at once. Running: interrupted (it keeps what it finished). */
  cancel(id: string): Promise<JobRecord | undefined>;
  /** Removes a finished or queued job and its files in jobs/<id>/ (saved outputs stay). */
  remove(id: string): Promise<boolean>;
  /** Events of one job; returns the unsubscribe function. */
  subscribe(id: string, listener: (e: JobEvent) => void): () => void;
  /** The running job's progress, or null when idle. */
  current(): JobProgress | null;
  queuedCount(): number;
  /** A1111 /interrupt and /skip: act on the running job. */
  interrupt(): void;
  skip(): void;
  /** Runs `fn` between jobs (model loads from POST /options), in queue order. */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface ExecutorHooks {
  stop: { interrupted: boolean; skipped: boolean };
  /** Each image as soon as it is decoded (and saved, when the job saves). */
  onImage(image: ExecutedImage): void;
  onProgress(p: { phase: string; job: number; jobCount: number; step: number; steps: number }): void;
  onPreview(p: { image: RgbImage; index: number; step: number }): void;
  previewEvery: number;
}

export interface ExecutedImage {
  /** Already written (saved jobs), or the PNG bytes to keep (unsaved jobs). */
  path: string | null;
  png: Buffer | null;
  seed: number;
  subseed: number;
  infotext: string;
  prompt: string;
  negativePrompt: string;
}

export interface ExecutorOutput {
  images: ExecutedImage[];
  grid: { path: string | null; png: Buffer | null; infotext: string } | null;
  interrupted: boolean;
  info: A1111Info;
}

/** Runs one generation job; the seam where the pipeline's job runner plugs in. */
export interface JobExecutor {
  run(request: JobRequest, hooks: ExecutorHooks): Promise<ExecutorOutput>;
}

export interface ToolHooks {
  /** Throwing from it stops the tool (its partial output is removed by the writer). */
  onProgress(p: { phase: string; done: number; total: number }): void;
}

/** Runs one tool job (tool-jobs.ts calls the src/tools functions). */
export interface ToolExecutor {
  run(task: ToolTask, hooks: ToolHooks): Promise<Record<string, unknown>>;
  /** After a restart, for a task that was running when the process died: remove what it left. */
  recover?(task: ToolTask): Promise<void>;
}
