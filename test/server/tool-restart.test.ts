/**
 * kill -9 during a merge job, then a restart on the same data dir: the job is failed with a reason
 * and the writer's temporary file is gone, so the checkpoint folder holds no half-written model.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clipVocabPath, repoRoot } from '../helpers/golden.js';
import { call, makeDataDir, tinyCheckpoint } from './helpers.js';

const children: ChildProcess[] = [];

function serve(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'bin', 'sdstudio.js'), 'serve', '--data-dir', dataDir, '--port', '0'],
    { env: { ...process.env, SDSTUDIO_CLIP_VOCAB: clipVocabPath() }, stdio: ['ignore', 'pipe', 'pipe'] },
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

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
});

describe('tool job restart recovery', () => {
  it('kill -9 mid-merge, restart: the job failed with a reason, no partial file left', async () => {
    const dataDir = makeDataDir(false);
    const ckpts = join(dataDir, 'models', 'Stable-diffusion');
    copyFileSync(tinyCheckpoint(), join(ckpts, 'copy-a.safetensors'));
    copyFileSync(tinyCheckpoint(), join(ckpts, 'copy-b.safetensors'));
    const first = await serve(dataDir);
    const r = await call(first.url, '/api/v1/tools', {
      body: {
        tool: 'merge',
        primary_model_name: 'copy-a',
        secondary_model_name: 'copy-b',
        custom_name: 'killed',
      },
    });
    expect(r.status).toBe(202);
    // Killed as soon as the first tensor is merged: the writer's temporary file exists then.
    const res = await fetch(`${first.url}/api/v1/jobs/${r.body.id}/events`);
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('"phase":"merging"')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the event stream ended before the merge began:\n${text}`);
      text += Buffer.from(value).toString();
    }
    first.child.kill('SIGKILL');
    await new Promise((res) => first.child.once('exit', res));
    await reader.cancel().catch(() => undefined);
    expect(readdirSync(ckpts).filter((f) => f.startsWith('killed.safetensors.tmp-'))).toHaveLength(1);

    const second = await serve(dataDir);
    const job = (await call(second.url, `/api/v1/jobs/${r.body.id}`)).body;
    expect(job.state).toBe('failed');
    expect(job.error).toMatch(/server stopped while this job was running/);
    const t0 = Date.now();
    while (readdirSync(ckpts).some((f) => f.startsWith('killed')) && Date.now() - t0 < 10_000) {
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(readdirSync(ckpts).filter((f) => f.startsWith('killed'))).toEqual([]);
    second.child.kill('SIGTERM');
    await new Promise((res) => second.child.once('exit', res));
    rmSync(dataDir, { recursive: true, force: true });
  });
});
