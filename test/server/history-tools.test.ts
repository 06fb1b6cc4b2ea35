/**
 * The History and Models screens' routes against a real server: generations listed from the store,
 * searched by prompt, paged, thumbnailed, re-run with their seeds and deleted with their files; model
 * tools (merge, convert, extract, inspect, hash) run as queued jobs with progress, bad input refused
 * with a 422 naming the field and nothing written.
 */
import { copyFileSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, makeDataDir, startServer, tinyCheckpoint, type TestServer } from './helpers.js';

let server: TestServer;
let dataDir: string;
const ckptDir = () => join(dataDir, 'models', 'Stable-diffusion');

async function waitJob(id: string, ms = 120_000) {
  const t0 = Date.now();
  for (;;) {
    const r = await call(server.url, `/api/v1/jobs/${id}`);
    if (['succeeded', 'failed', 'cancelled'].includes(r.body.state)) return r.body;
    if (Date.now() - t0 > ms) throw new Error(`job ${id} still ${r.body.state}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function generate(prompt: string) {
  const r = await call(server.url, '/api/v1/jobs', {
    body: { mode: 'txt2img', params: { prompt, width: 64, height: 64, steps: 2, seed: -1 } },
  });
  expect(r.status).toBe(202);
  return waitJob(r.body.id);
}

/** Every event of a job's SSE stream until it ends. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function events(id: string): Promise<{ event: string; data: any }[]> {
  const res = await fetch(`${server.url}/api/v1/jobs/${id}/events`);
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('event:'))
    .map((b) => {
      const [e, d] = b.split('\n');
      return { event: e!.slice(7), data: JSON.parse(d!.slice(6)) };
    });
}

beforeAll(async () => {
  dataDir = makeDataDir();
  // Two real copies of the tiny checkpoint, to merge.
  copyFileSync(tinyCheckpoint(), join(ckptDir(), 'copy-a.safetensors'));
  copyFileSync(tinyCheckpoint(), join(ckptDir(), 'copy-b.safetensors'));
  server = await startServer(dataDir);
});

afterAll(async () => {
  await server?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('history', () => {
  it('lists generations newest first, searches by prompt, pages, thumbnails, re-runs and deletes', async () => {
    const fox = await generate('a red Fox in snow');
    const sky = await generate('blue sky');
    expect([fox.state, sky.state]).toEqual(['succeeded', 'succeeded']);

    const all = await call(server.url, '/api/v1/history');
    expect(all.status).toBe(200);
    expect(all.body.jobs.map((j: { id: string }) => j.id).slice(0, 2)).toEqual([sky.id, fox.id]);
    const entry = all.body.jobs[1];
    expect(entry.params.prompt).toBe('a red Fox in snow');
    expect(entry.result.images[0].infotext).toContain('a red Fox in snow');

    const found = await call(server.url, '/api/v1/history?q=fox');
    expect(found.body.jobs.map((j: { id: string }) => j.id)).toEqual([fox.id]);
    expect((await call(server.url, '/api/v1/history?q=nothing-like-this')).body.jobs).toEqual([]);

    const page1 = await call(server.url, '/api/v1/history?limit=1');
    expect(page1.body.jobs.map((j: { id: string }) => j.id)).toEqual([sky.id]);
    expect(page1.body.next_before).toBe(page1.body.jobs[0].seq);
    const page2 = await call(server.url, `/api/v1/history?limit=1&before=${page1.body.next_before}`);
    expect(page2.body.jobs.map((j: { id: string }) => j.id)).toEqual([fox.id]);
    expect((await call(server.url, '/api/v1/history?limit=0')).status).toBe(422);

    const thumb = await fetch(server.url + entry.thumbs[0]);
    expect(thumb.headers.get('content-type')).toBe('image/webp');
    const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([64, 64]);

    // Re-run: a new job with the seed the first one used, so the same infotext.
    const rerun = await call(server.url, `/api/v1/history/${fox.id}/rerun`, { method: 'POST' });
    expect(rerun.status).toBe(202);
    const again = await waitJob(rerun.body.id);
    expect(again.state).toBe('succeeded');
    expect(again.result.images[0].seed).toBe(fox.result.images[0].seed);
    expect(again.result.images[0].infotext).toBe(fox.result.images[0].infotext);

    // Delete: the job and its image files go.
    const before = await call(server.url, `/api/v1/jobs/${fox.id}`);
    expect(before.status).toBe(200);
    const files = readdirSync(join(dataDir, 'outputs'), { recursive: true }) as string[];
    const png = files.filter((f) => f.endsWith('.png'));
    expect(png.length).toBeGreaterThanOrEqual(3);
    const del = await call(server.url, `/api/v1/history/${fox.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect((await call(server.url, `/api/v1/jobs/${fox.id}`)).status).toBe(404);
    const after = (readdirSync(join(dataDir, 'outputs'), { recursive: true }) as string[]).filter((f) =>
      f.endsWith('.png'),
    );
    expect(after.length).toBe(png.length - 1);
    expect(
      (await call(server.url, '/api/v1/history?q=fox')).body.jobs.map((j: { id: string }) => j.id),
    ).toEqual([again.id]);
    expect((await call(server.url, `/api/v1/history/${fox.id}`, { method: 'DELETE' })).status).toBe(404);
  });
});

describe('model tools as jobs', () => {
  const bad = async (body: Record<string, unknown>, field: string) => {
    const before = readdirSync(ckptDir()).sort();
    const r = await call(server.url, '/api/v1/tools', { body });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(JSON.stringify(r.body.detail)).toContain(field);
    expect(readdirSync(ckptDir()).sort()).toEqual(before);
  };

  it('refuses bad input with a 422 naming the field, writing nothing', async () => {
    const merge = {
      tool: 'merge',
      primary_model_name: 'copy-a',
      secondary_model_name: 'copy-b',
      custom_name: 'never',
    };
    await bad({ ...merge, secondary_model_name: 'no-such-model' }, 'secondary_model_name');
    await bad({ ...merge, primary_model_name: '../../etc/passwd' }, 'primary_model_name');
    await bad({ ...merge, discard_weights: '([unclosed' }, 'discard_weights');
    await bad({ ...merge, custom_name: 'copy-b' }, 'custom_name');
    await bad({ ...merge, custom_name: '../outside' }, 'custom_name');
    await bad({ ...merge, interp_method: 'Average' }, 'interp_method');
    await bad({ ...merge, interp_method: 'Add difference' }, 'tertiary_model_name');
    await bad({ ...merge, bake_in_vae: 'no-such-vae' }, 'bake_in_vae');
    await bad({ tool: 'extract', model: 'copy-a', part: 'head' }, 'part');
    await bad({ tool: 'inspect' }, 'model');
    await bad({ tool: 'melt' }, 'tool');
  });

  it('merges two checkpoints with progress; the result is listed and can be inspected', async () => {
    const r = await call(server.url, '/api/v1/tools', {
      body: {
        tool: 'merge',
        primary_model_name: 'copy-a',
        secondary_model_name: 'copy-b',
        interp_method: 'Weighted sum',
        multiplier: 0.5,
        save_as_half: true,
        discard_weights: '^model_ema\\.',
        custom_name: 'merged-ab',
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.mode).toBe('tool');
    expect(r.body.tool).toMatchObject({
      tool: 'merge',
      a: 'copy-a.safetensors',
      out: 'merged-ab.safetensors',
    });
    const stream = await events(r.body.id);
    const progress = stream.filter((e) => e.event === 'progress').map((e) => e.data);
    expect(progress.length).toBeGreaterThan(0);
    const merging = progress.filter((p) => p.phase === 'merging');
    expect(merging.at(-1)).toMatchObject({ fraction: 1 });
    expect(merging.at(-1).step).toBe(merging.at(-1).steps);
    const done = stream.at(-1)!;
    expect(done.event).toBe('state');
    expect(done.data.state).toBe('succeeded');
    expect(done.data.tool.result).toMatchObject({
      file: 'merged-ab.safetensors',
      folder: 'Stable-diffusion',
    });
    expect(existsSync(join(ckptDir(), 'merged-ab.safetensors'))).toBe(true);
    const models = (await call(server.url, '/sdapi/v1/sd-models')).body as { title: string }[];
    expect(models.map((m) => m.title)).toContainEqual(done.data.tool.result.checkpoint);

    const inspect = await waitJob(
      (await call(server.url, '/api/v1/tools', { body: { tool: 'inspect', model: 'merged-ab' } })).body.id,
    );
    expect(inspect.state).toBe('succeeded');
    expect(inspect.tool.result.report).toMatchObject({ kind: 'checkpoint', dtypes: expect.any(Object) });
    expect(inspect.tool.result.report.metadata.sd_merge_recipe).toMatchObject({ type: 'webui' });
    expect(Object.keys(inspect.tool.result.report.dtypes)).toContain('F16');

    const hash = await waitJob(
      (await call(server.url, '/api/v1/tools', { body: { tool: 'hash', model: 'copy-a' } })).body.id,
    );
    const { hashFile } = await import('../../src/tools/hash.js');
    expect(hash.tool.result.sha256).toBe((await hashFile(tinyCheckpoint(), { noCache: true })).sha256);
    // Tool jobs are not generations: History does not list them.
    const history = (await call(server.url, '/api/v1/history')).body.jobs as { mode: string }[];
    expect(history.every((j) => j.mode !== 'tool')).toBe(true);
  });

  it('cancelling a running merge stops it and leaves no file, partial or whole', async () => {
    const r = await call(server.url, '/api/v1/tools', {
      body: {
        tool: 'merge',
        primary_model_name: 'copy-a',
        secondary_model_name: 'copy-b',
        custom_name: 'stopped',
      },
    });
    expect(r.status).toBe(202);
    // Cancel at the first tensor merged, read from the job's event stream.
    const res = await fetch(`${server.url}/api/v1/jobs/${r.body.id}/events`);
    const reader = res.body!.getReader();
    let text = '';
    let cancelled = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
      if (!cancelled && text.includes('"phase":"merging"')) {
        cancelled = true;
        expect((await call(server.url, `/api/v1/jobs/${r.body.id}/cancel`, { method: 'POST' })).status).toBe(
          200,
        );
      }
    }
    expect(cancelled).toBe(true);
    const job = await waitJob(r.body.id);
    expect(job.state).toBe('cancelled');
    expect(readdirSync(ckptDir()).filter((f) => f.startsWith('stopped'))).toEqual([]);
  });

  it("A1111's /interrupt is for generations: a running merge goes on", async () => {
    const r = await call(server.url, '/api/v1/tools', {
      body: {
        tool: 'merge',
        primary_model_name: 'copy-a',
        secondary_model_name: 'copy-b',
        custom_name: 'kept',
      },
    });
    const res = await fetch(`${server.url}/api/v1/jobs/${r.body.id}/events`);
    const reader = res.body!.getReader();
    let text = '';
    let interrupted = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
      if (!interrupted && text.includes('"phase":"merging"')) {
        interrupted = true;
        await call(server.url, '/sdapi/v1/interrupt', { method: 'POST' });
        await call(server.url, '/sdapi/v1/skip', { method: 'POST' });
      }
    }
    expect(interrupted).toBe(true);
    expect((await waitJob(r.body.id)).state).toBe('succeeded');
    expect(existsSync(join(ckptDir(), 'kept.safetensors'))).toBe(true);
  });

  it('documents the routes in the OpenAPI schema', async () => {
    const paths = Object.keys((await call(server.url, '/openapi.json')).body.paths);
    expect(paths).toEqual(
      expect.arrayContaining(['/api/v1/tools', '/api/v1/history', '/api/v1/history/{id}/rerun']),
    );
  });

  it('extracts the VAE into the VAE folder and converts to fp16 into the checkpoint folder', async () => {
    const ex = await waitJob(
      (await call(server.url, '/api/v1/tools', { body: { tool: 'extract', model: 'copy-a', part: 'vae' } }))
        .body.id,
    );
    expect(ex.state, ex.error).toBe('succeeded');
    expect(ex.tool.result).toMatchObject({ folder: 'VAE', file: 'copy-a-vae.safetensors' });
    const vaes = (await call(server.url, '/sdapi/v1/sd-vae')).body as { model_name: string }[];
    expect(vaes.map((v) => v.model_name)).toContain('copy-a-vae.safetensors');

    const conv = await waitJob(
      (
        await call(server.url, '/api/v1/tools', {
          body: { tool: 'convert', model: 'copy-b', dtype: 'fp16', custom_name: 'b16.safetensors' },
        })
      ).body.id,
    );
    expect(conv.state, conv.error).toBe('succeeded');
    expect(existsSync(join(ckptDir(), 'b16.safetensors'))).toBe(true);
    expect(basename(conv.tool.result.checkpoint.split(' ')[0])).toBe('b16.safetensors');
  });
});
