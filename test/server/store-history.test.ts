/**
 * The job store's History query on a real SQLite file: prompt search (literal, case-blind), the seq
 * cursor, tool jobs left out, and a store written before the prompt column existed filled in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { JobStore } from '../../src/server/store.js';
import type { AnyJobRequest } from '../../src/server/jobs.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const generation = (prompt: string) =>
  ({
    mode: 'txt2img',
    params: { prompt },
    checkpoint: '/m.safetensors',
    vae: 'Automatic',
    save: true,
    grid: false,
    previewEvery: 0,
    source: 'api',
  }) as unknown as AnyJobRequest;

describe('JobStore.history', () => {
  it('searches prompts literally, pages by seq, and leaves tool jobs out', () => {
    const store = new JobStore(join(dir, 'new.sqlite'));
    const prompts = ['a red fox', 'A FOX at night', '100% cotton', 'blue sky'];
    prompts.forEach((p, i) => store.insert(`g${i}`, generation(p)));
    store.insert('t0', { mode: 'tool', task: { tool: 'hash', model: '/fox.safetensors' }, source: 'api' });

    const ids = (r: { jobs: { id: string }[] }) => r.jobs.map((j) => j.id);
    expect(ids(store.history({ limit: 10 }))).toEqual(['g3', 'g2', 'g1', 'g0']);
    expect(ids(store.history({ q: 'fox', limit: 10 }))).toEqual(['g1', 'g0']);
    expect(ids(store.history({ q: '%', limit: 10 }))).toEqual(['g2']);
    expect(ids(store.history({ q: '_', limit: 10 }))).toEqual([]);

    const first = store.history({ limit: 3 });
    expect(first.more).toBe(true);
    const rest = store.history({ limit: 3, before: first.jobs.at(-1)!.seq });
    expect(ids(rest)).toEqual(['g0']);
    expect(rest.more).toBe(false);
    store.close();
  });

  it('fills in the prompt column of a store made before it existed', () => {
    const path = join(dir, 'old.sqlite');
    const db = new Database(path);
    db.exec(`CREATE TABLE jobs (
      seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, mode TEXT NOT NULL,
      request TEXT NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL, started_at INTEGER,
      finished_at INTEGER, result TEXT, error TEXT, error_status INTEGER)`);
    const insert = db.prepare(
      `INSERT INTO jobs (id, mode, request, state, created_at) VALUES (?, ?, ?, ?, 0)`,
    );
    insert.run('old-1', 'txt2img', JSON.stringify(generation('an old castle')), 'succeeded');
    insert.run(
      'old-2',
      'img2img',
      JSON.stringify({ ...generation('old harbour'), mode: 'img2img' }),
      'failed',
    );
    db.close();

    const store = new JobStore(path);
    expect(store.history({ q: 'castle', limit: 10 }).jobs.map((j) => j.id)).toEqual(['old-1']);
    expect(store.history({ q: 'OLD', limit: 10 }).jobs.map((j) => j.id)).toEqual(['old-2', 'old-1']);
    store.close();
    // Opening it again changes nothing.
    const again = new JobStore(path);
    expect(again.history({ q: 'harbour', limit: 10 }).jobs.map((j) => j.id)).toEqual(['old-2']);
    again.close();
  });
});
