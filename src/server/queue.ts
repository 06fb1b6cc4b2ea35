/**
 * The embedded queue: jobs persisted in SQLite (store.ts), one worker in this process running one
 * job at a time in submission order. Model loads asked for between jobs (POST /options) take the
 * same lock, so they never run beside a generation.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { UserError } from '../util/errors.js';
import {
  isToolRequest,
  type AnyJobRequest,
  type HistoryQuery,
  type JobEvent,
  type JobExecutor,
  type JobProgress,
  type JobQueue,
  type JobRecord,
  type JobRequest,
  type JobResultInfo,
  type ListOptions,
  type ToolExecutor,
  type ToolJobRequest,
} from './jobs.js';
import type { JobStore } from './store.js';

/** Runs async functions one after another, in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.tail.then(fn, fn);
    this.tail = r.catch(() => undefined);
    return r;
  }
}

export interface LocalQueueOptions {
  /** outputs/ (A1111 layout) for saved jobs. */
  outputsDir: string;
  /** jobs/: images of jobs that are not saved to outputs/, one folder per job. */
  jobsDir: string;
  /** Runs tool jobs (merge, convert, …); without it they fail with a clear error. */
  tools?: ToolExecutor;
  log?: (message: string) => void;
}

const CANCELLED = 'cancelled by a client';
const CLIENT_GONE = 'the server stopped before it ran and the A1111 request waiting for it is gone';

export class LocalJobQueue implements JobQueue {
  private readonly lock = new Mutex();
  private readonly waiters = new Map<string, Set<(r: JobRecord) => void>>();
  private readonly listeners = new Map<string, Set<(e: JobEvent) => void>>();
  private running: {
    id: string;
    progress: JobProgress;
    stop: { interrupted: boolean; skipped: boolean };
    cancel: boolean;
    /** A tool job: A1111's /interrupt and /skip are for generations and leave it alone. */
    tool: boolean;
  } | null = null;
  private pumping = false;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: JobStore,
    private readonly executor: JobExecutor,
    private readonly opts: LocalQueueOptions,
  ) {}

  /** Recovers from the last run (running → failed, orphaned A1111 jobs → cancelled) and starts the worker. */
  start(): void {
    const failed = this.store.failInterrupted();
    for (const id of failed) {
      this.opts.log?.(`job ${id} was running when the server stopped: marked failed`);
      const r = this.store.get(id)?.request;
      // A tool killed mid-write left its temporary output behind.
      if (r && isToolRequest(r)) void this.opts.tools?.recover?.(r.task).catch(() => undefined);
    }
    for (const id of this.store.queuedIds()) {
      const job = this.store.get(id)!;
      // Unsaved A1111 jobs exist only to answer an HTTP request that died with the last process.
      const r = job.request;
      if (!isToolRequest(r) && r.source === 'a1111' && !r.save) this.store.cancelQueued(id, CLIENT_GONE);
    }
    this.pump();
  }

  async submit(request: AnyJobRequest): Promise<JobRecord> {
    if (this.closed) throw new UserError('the server is shutting down', 2, 503);
    const rec = this.store.insert(randomUUID(), request);
    this.emit(rec.id, { type: 'state', job: rec });
    this.pump();
    return rec;
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.store.get(id);
  }

  async list(opts: ListOptions): Promise<{ jobs: JobRecord[]; total: number }> {
    return this.store.list(opts);
  }

  async history(q: HistoryQuery): Promise<{ jobs: JobRecord[]; more: boolean }> {
    return this.store.history(q);
  }

  wait(id: string): Promise<JobRecord> {
    const rec = this.store.get(id);
    if (!rec) return Promise.reject(new UserError(`job ${id} not found`, 2, 404));
    if (isFinished(rec)) return Promise.resolve(rec);
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      set.add(resolve);
    });
  }

  async cancel(id: string): Promise<JobRecord | undefined> {
    const rec = this.store.get(id);
    if (!rec) return undefined;
    if (rec.state === 'queued') {
      if (this.store.cancelQueued(id, CANCELLED)) this.finished(id);
    } else if (rec.state === 'running' && this.running?.id === id) {
      this.running.cancel = true;
      this.running.stop.interrupted = true;
    }
    return this.store.get(id);
  }

  async remove(id: string): Promise<boolean> {
    const rec = this.store.get(id);
    if (!rec) return false;
    if (rec.state === 'running') throw new UserError(`job ${id} is running; cancel it first`, 2, 409);
    if (rec.state === 'queued') await this.cancel(id);
    this.store.delete(id);
    await rm(join(this.opts.jobsDir, id), { recursive: true, force: true });
    return true;
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  current(): JobProgress | null {
    return this.running?.progress ?? null;
  }

  queuedCount(): number {
    return this.store.queuedIds().length;
  }

  interrupt(): void {
    if (!this.running || this.running.tool) return;
    this.running.stop.interrupted = true;
    this.running.progress.interrupted = true;
  }

  skip(): void {
    if (!this.running || this.running.tool) return;
    this.running.stop.skipped = true;
    this.running.progress.skipped = true;
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(fn);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.interrupt();
    // A tool job stops too (its writer removes the partial file) rather than holding up the exit.
    if (this.running?.tool) this.running.stop.interrupted = true;
    await this.idle;
    await this.lock.run(async () => undefined);
  }

  private emit(id: string, e: JobEvent): void {
    for (const l of this.listeners.get(id) ?? []) {
      try {
        l(e);
      } catch {
        // A listener's failure (a closed stream) never stops the worker.
      }
    }
  }

  private finished(id: string): void {
    const rec = this.store.get(id);
    if (!rec) return;
    this.emit(id, { type: 'state', job: rec });
    for (const w of this.waiters.get(id) ?? []) w(rec);
    this.waiters.delete(id);
  }

  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    this.idle = (async () => {
      try {
        for (let next = this.store.nextQueued(); next && !this.closed; next = this.store.nextQueued()) {
          const job = next;
          await this.lock.run(() => this.runJob(job));
        }
      } finally {
        this.pumping = false;
      }
    })();
  }

  /** Marks `job` running with a fresh progress record, makes it the running job and says so. */
  private beginRun(
    job: JobRecord,
    first: { phase: string; steps: number; jobCount: number; tool: boolean },
  ): {
    progress: JobProgress;
    stop: { interrupted: boolean; skipped: boolean };
    run: { cancel: boolean };
  } {
    const startedAt = Date.now();
    this.store.markRunning(job.id, startedAt);
    const stop = { interrupted: false, skipped: false };
    const progress: JobProgress = {
      jobId: job.id,
      phase: first.phase,
      step: 0,
      steps: first.steps,
      jobNo: 0,
      jobCount: first.jobCount,
      startedAt,
      fraction: 0,
      etaSeconds: 0,
      preview: null,
      interrupted: false,
      skipped: false,
    };
    const run = { id: job.id, progress, stop, cancel: false, tool: first.tool };
    this.running = run;
    this.emit(job.id, { type: 'state', job: this.store.get(job.id)! });
    return { progress, stop, run };
  }

  private async runJob(job: JobRecord): Promise<void> {
    // Cancelled while waiting for the lock.
    if (this.store.get(job.id)?.state !== 'queued') return;
    const request = job.request;
    if (isToolRequest(request)) return this.runTool(job, request);
    const p = request.params;
    const { progress, stop, run } = this.beginRun(job, {
      phase: 'queued',
      steps: p.steps,
      jobCount: p.n_iter * (request.mode === 'txt2img' && p.enable_hr ? 2 : 1),
      tool: false,
    });
    // Each finished image is recorded at once, so a crash later keeps it in the store.
    const partial: JobResultInfo = { images: [], grid: null, interrupted: false, info: null };
    let writes: Promise<void> = Promise.resolve();
    let seen = 0;
    const dir = join(this.opts.jobsDir, job.id);
    const keep = (png: Buffer | null, path: string | null, name: string): Promise<string> =>
      path
        ? Promise.resolve(path)
        : mkdir(dir, { recursive: true }).then(async () => {
            const file = join(dir, name);
            await writeFileAtomic(file, png ?? Buffer.alloc(0));
            return file;
          });
    try {
      const out = await this.executor.run(request as JobRequest, {
        stop,
        previewEvery: request.previewEvery,
        onImage: (img) => {
          const index = seen++;
          writes = writes.then(async () => {
            const path = await keep(img.png, img.path, `${String(index).padStart(5, '0')}-${img.seed}.png`);
            const { png: _png, path: _path, ...info } = img;
            partial.images.push({ ...info, path });
            this.store.updateResult(job.id, partial);
          });
        },
        onProgress: (pr) => {
          progress.phase = pr.phase;
          progress.jobNo = pr.job;
          progress.jobCount = pr.jobCount;
          // Decoding keeps the sampling steps on show (A1111's progress counts sampling only).
          const decoding = pr.phase === 'vae decode';
          if (!decoding) {
            progress.step = pr.step;
            progress.steps = pr.steps;
          }
          const within = decoding ? 1 : pr.steps ? pr.step / pr.steps : 0;
          progress.fraction = Math.min(1, (pr.job + within) / Math.max(1, pr.jobCount));
          const elapsed = (Date.now() - progress.startedAt) / 1000;
          progress.etaSeconds = progress.fraction > 0 ? elapsed / progress.fraction - elapsed : 0;
          progress.skipped = stop.skipped;
          this.emit(job.id, { type: 'progress', progress });
        },
        onPreview: (pv) => {
          const images = progress.preview?.step === pv.step ? [...progress.preview.images] : [];
          images[pv.index] = pv.image;
          progress.preview = { images, step: pv.step };
          this.emit(job.id, { type: 'preview', progress });
        },
      });
      await writes;
      if (out.grid) {
        partial.grid = {
          path: await keep(out.grid.png, out.grid.path, 'grid.png'),
          infotext: out.grid.infotext,
        };
      }
      partial.interrupted = out.interrupted;
      partial.info = out.info;
      const cancelled = run.cancel;
      this.store.finish(job.id, cancelled ? 'cancelled' : 'succeeded', partial, cancelled ? CANCELLED : null);
    } catch (e) {
      await writes.catch(() => undefined);
      const message = e instanceof Error ? e.message : String(e);
      if (!(e instanceof UserError)) {
        this.opts.log?.(`job ${job.id} failed: ${e instanceof Error ? (e.stack ?? message) : message}`);
      }
      const status = e instanceof UserError ? (e.httpStatus === 400 ? 422 : e.httpStatus) : 500;
      this.store.finish(job.id, 'failed', partial.images.length ? partial : null, message, status);
    } finally {
      this.running = null;
      this.finished(job.id);
    }
  }

  /**
   * A tool job: same states, events and progress as a generation (phase, done/total as step/steps);
   * cancelling throws from its progress callback, and the tool's writer removes its partial file.
   */
  private async runTool(job: JobRecord, request: ToolJobRequest): Promise<void> {
    const { progress, stop, run } = this.beginRun(job, {
      phase: request.task.tool,
      steps: 0,
      jobCount: 1,
      tool: true,
    });
    const empty: JobResultInfo = { images: [], grid: null, interrupted: false, info: null };
    try {
      if (!this.opts.tools) throw new UserError('this server runs no tool jobs', 2, 501);
      const tool = await this.opts.tools.run(request.task, {
        onProgress: ({ phase, done, total }) => {
          if (stop.interrupted) throw new ToolCancelled();
          progress.phase = phase;
          progress.step = done;
          progress.steps = total;
          progress.fraction = total > 0 ? Math.min(1, done / total) : 0;
          const elapsed = (Date.now() - progress.startedAt) / 1000;
          progress.etaSeconds = progress.fraction > 0 ? elapsed / progress.fraction - elapsed : 0;
          this.emit(job.id, { type: 'progress', progress });
        },
      });
      this.store.finish(job.id, 'succeeded', { ...empty, tool }, null);
    } catch (e) {
      if (e instanceof ToolCancelled || run.cancel) {
        this.store.finish(job.id, 'cancelled', null, CANCELLED);
      } else {
        const message = e instanceof Error ? e.message : String(e);
        if (!(e instanceof UserError)) {
          this.opts.log?.(`job ${job.id} failed: ${e instanceof Error ? (e.stack ?? message) : message}`);
        }
        const status = e instanceof UserError ? (e.httpStatus === 400 ? 422 : e.httpStatus) : 500;
        this.store.finish(job.id, 'failed', null, message, status);
      }
    } finally {
      this.running = null;
      this.finished(job.id);
    }
  }
}

class ToolCancelled extends Error {
  constructor() {
    super(CANCELLED);
  }
}

export function isFinished(rec: JobRecord): boolean {
  return rec.state === 'succeeded' || rec.state === 'failed' || rec.state === 'cancelled';
}
