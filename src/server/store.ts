/**
 * The job store: every job (its request, state, result file paths, error) in one SQLite file in the
 * data dir (better-sqlite3, synchronous and crash-safe with WAL). The queue (queue.ts) is the only
 * writer; routes read through it.
 */
import Database from 'better-sqlite3';
import type { AnyJobRequest, HistoryQuery, JobRecord, JobResultInfo, JobState } from './jobs.js';

interface Row {
  id: string;
  seq: number;
  mode: string;
  request: string;
  state: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  result: string | null;
  error: string | null;
  error_status: number | null;
}

/** The reason recorded for a job that was running when the process stopped. */
export const DIED_WHILE_RUNNING = 'the server stopped while this job was running (crash, kill or power loss)';

export class JobStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS jobs (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL UNIQUE,
      mode TEXT NOT NULL,
      request TEXT NOT NULL,
      state TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      started_at INTEGER,
      finished_at INTEGER,
      result TEXT,
      error TEXT,
      error_status INTEGER
    );
    CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);`);
    // The History search reads the prompt from its own column: json_extract over every request
    // would parse each img2img job's base64 images. Stores made before it are filled in once.
    const columns = this.db.prepare(`PRAGMA table_info(jobs)`).all() as { name: string }[];
    if (!columns.some((c) => c.name === 'prompt')) {
      this.db.exec(`ALTER TABLE jobs ADD COLUMN prompt TEXT;
        UPDATE jobs SET prompt = json_extract(request, '$.params.prompt') WHERE mode != 'tool';`);
    }
  }

  /** After a restart: jobs left "running" are failed with a reason; returns their ids. */
  failInterrupted(now = Date.now()): string[] {
    const rows = this.db.prepare(`SELECT id FROM jobs WHERE state = 'running'`).all() as { id: string }[];
    this.db
      .prepare(
        `UPDATE jobs SET state = 'failed', error = ?, error_status = 500, finished_at = ? WHERE state = 'running'`,
      )
      .run(DIED_WHILE_RUNNING, now);
    return rows.map((r) => r.id);
  }

  insert(id: string, request: AnyJobRequest, now = Date.now()): JobRecord {
    this.db
      .prepare(
        `INSERT INTO jobs (id, mode, request, state, created_at, prompt) VALUES (?, ?, ?, 'queued', ?, ?)`,
      )
      .run(
        id,
        request.mode,
        JSON.stringify(request),
        now,
        request.mode === 'tool' ? null : request.params.prompt,
      );
    return this.get(id)!;
  }

  get(id: string): JobRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM jobs WHERE id = ?`).get(id) as Row | undefined;
    return row && toRecord(row);
  }

  /** The oldest queued job. */
  nextQueued(): JobRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1`).get() as
      Row | undefined;
    return row && toRecord(row);
  }

  queuedIds(): string[] {
    return (
      this.db.prepare(`SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq`).all() as { id: string }[]
    ).map((r) => r.id);
  }

  list(opts: { state?: JobState; limit: number; offset: number }): { jobs: JobRecord[]; total: number } {
    const where = opts.state ? `WHERE state = ?` : '';
    const args = opts.state ? [opts.state] : [];
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM jobs ${where}`).get(...args) as { n: number })
      .n;
    const rows = this.db
      .prepare(`SELECT * FROM jobs ${where} ORDER BY seq DESC LIMIT ? OFFSET ?`)
      .all(...args, opts.limit, opts.offset) as Row[];
    return { jobs: rows.map(toRecord), total };
  }

  /**
   * Generation jobs newest first (the History screen): those whose prompt contains `q` (literally;
   * case-blind for ASCII, as SQLite's lower()), older than seq `before` — a cursor, so paging stays stable while
   * new jobs arrive.
   */
  history(q: HistoryQuery): { jobs: JobRecord[]; more: boolean } {
    const where = [`mode IN ('txt2img', 'img2img')`];
    const args: (string | number)[] = [];
    if (q.before !== undefined) {
      where.push('seq < ?');
      args.push(q.before);
    }
    if (q.q) {
      where.push(`instr(lower(prompt), lower(?)) > 0`);
      args.push(q.q);
    }
    const rows = this.db
      .prepare(`SELECT * FROM jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?`)
      .all(...args, q.limit + 1) as Row[];
    return { jobs: rows.slice(0, q.limit).map(toRecord), more: rows.length > q.limit };
  }

  markRunning(id: string, now = Date.now()): void {
    this.db.prepare(`UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?`).run(now, id);
  }

  finish(
    id: string,
    state: Exclude<JobState, 'queued' | 'running'>,
    result: JobResultInfo | null,
    error: string | null,
    errorStatus: number | null = null,
    now = Date.now(),
  ): void {
    this.db
      .prepare(
        `UPDATE jobs SET state = ?, result = ?, error = ?, error_status = ?, finished_at = ? WHERE id = ?`,
      )
      .run(state, result ? JSON.stringify(result) : null, error, errorStatus, now, id);
  }

  /** The images a running job has finished so far. */
  updateResult(id: string, result: JobResultInfo): void {
    this.db.prepare(`UPDATE jobs SET result = ? WHERE id = ?`).run(JSON.stringify(result), id);
  }

  /** Cancels a job only while it is still queued; returns whether it did. */
  cancelQueued(id: string, reason: string, now = Date.now()): boolean {
    const r = this.db
      .prepare(
        `UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ? WHERE id = ? AND state = 'queued'`,
      )
      .run(reason, now, id);
    return r.changes > 0;
  }

  delete(id: string): boolean {
    return this.db.prepare(`DELETE FROM jobs WHERE id = ?`).run(id).changes > 0;
  }

  close(): void {
    this.db.close();
  }
}

function toRecord(row: Row): JobRecord {
  return {
    id: row.id,
    seq: row.seq,
    mode: row.mode as JobRecord['mode'],
    request: JSON.parse(row.request) as AnyJobRequest,
    state: row.state as JobState,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    result: row.result ? (JSON.parse(row.result) as JobResultInfo) : null,
    error: row.error,
    errorStatus: row.error_status,
  };
}
