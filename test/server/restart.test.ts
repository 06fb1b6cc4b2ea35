/**
 * kill -9 during a job, then a restart on the same data dir: finished images are intact (files and
 * store), the job that was running is marked failed with a reason (keeping the images it had
 * finished), and the queued job comes back and runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clipVocabPath, repoRoot } from '../helpers/golden.js';
import { call, makeDataDir, pngInfo } from './helpers.js';

const children: ChildProcess[] = [];

/** `sdstudio serve` as a user starts it; resolves with its URL once it prints it. */
function serve(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'bin', 'sdstudio.js'), 'serve', '--data-dir', dataDir, '--port', '0'],
    {
      env: { ...process.env, SDSTUDIO_CLIP_VOCAB: clipVocabPath() },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Running on local URL:\s+(http:\/\/\S+?)\/?\n/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 100_000): Promise<T> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
});

describe('restart recovery', () => {
  it('kill -9 during a job, restart: images intact, running job failed with a reason, queue back', async () => {
    const dataDir = makeDataDir();
    const first = await serve(dataDir);
    const submit = async (url: string, params: Record<string, unknown>) =>
      (
        await call(url, '/api/v1/jobs', {
          body: { mode: 'txt2img', params: { width: 64, height: 64, ...params } },
        })
      ).body.id as string;
    const get = async (url: string, id: string) => (await call(url, `/api/v1/jobs/${id}`)).body;

    const done = await submit(first.url, { prompt: 'done', seed: 1, steps: 2 });
    const running = await submit(first.url, { prompt: 'running', seed: 2, steps: 150, n_iter: 2 });
    const waiting = await submit(first.url, { prompt: 'waiting', seed: 3, steps: 2 });
    const doneJob = await until('the first job', async () => {
      const j = await get(first.url, done);
      return j.state === 'succeeded' && j;
    });
    // The second job has finished its first image and is sampling the second.
    await until('the first image of the running job', async () => {
      const j = await get(first.url, running);
      return j.state === 'running' && j.result?.images.length === 1 && j.progress?.job_no === 1;
    });
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));

    const second = await serve(dataDir);
    const before = await get(second.url, done);
    expect(before.state).toBe('succeeded');
    expect(before.result.images).toEqual(doneJob.result.images);
    const bytes = await fetch(second.url + before.result.images[0].url);
    expect(bytes.status).toBe(200);
    const png = await pngInfo(Buffer.from(await bytes.arrayBuffer()).toString('base64'));
    expect(png.parameters).toBe(before.result.images[0].infotext);

    const failed = await get(second.url, running);
    expect(failed.state).toBe('failed');
    expect(failed.error).toMatch(/server stopped while this job was running/);
    expect(failed.result.images).toHaveLength(1);
    const partialPng = await fetch(second.url + failed.result.images[0].url);
    expect(partialPng.status).toBe(200);
    expect(
      (await pngInfo(Buffer.from(await partialPng.arrayBuffer()).toString('base64'))).parameters,
    ).toContain('Seed: 2,');

    const back = await until('the waiting job after the restart', async () => {
      const j = await get(second.url, waiting);
      return j.state === 'succeeded' && j;
    });
    expect(back.result.images[0].seed).toBe(3);
    expect(existsSync(join(dataDir, 'jobs.sqlite'))).toBe(true);
    expect(readFileSync(join(dataDir, 'jobs.sqlite')).length).toBeGreaterThan(0);
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));
  });
});
