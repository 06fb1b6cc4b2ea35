/** `sdstudio download` against a local HTTP server on 127.0.0.1 (never the internet). */
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadFile, resolveSource } from '../../src/tools/download.js';
import { UserError } from '../../src/util/errors.js';
import { repoRoot } from '../helpers/golden.js';

const data = randomBytes(300_000);
const sha = createHash('sha256').update(data).digest('hex');
let server: Server;
let base: string;
let cutNext = false;
const ranges: (string | undefined)[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url !== '/models/tiny.safetensors') {
      res.writeHead(404).end('not here');
      return;
    }
    ranges.push(req.headers.range);
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    if (start >= data.length) {
      res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
      return;
    }
    const body = data.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': String(body.length),
      ...(m && { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` }),
    });
    if (cutNext) {
      // Half the bytes, then the connection drops.
      cutNext = false;
      res.write(body.subarray(0, 100_000), () => res.destroy());
      return;
    }
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const dir = () => mkdtempSync(join(tmpdir(), 'sdstudio-dl-'));

describe('download', () => {
  it('downloads, checks the sha256 and renames into place; a second run finds it there', async () => {
    const d = dir();
    const seen: number[] = [];
    const r = await downloadFile({
      url: `${base}/models/tiny.safetensors`,
      dir: d,
      sha256: sha,
      onProgress: (n) => seen.push(n),
    });
    expect(r).toMatchObject({
      path: join(d, 'tiny.safetensors'),
      sha256: sha,
      bytes: data.length,
      resumedFrom: 0,
      alreadyThere: false,
    });
    expect(readFileSync(r.path).equals(data)).toBe(true);
    expect(existsSync(r.path + '.part')).toBe(false);
    expect(seen.at(-1)).toBe(data.length);
    const again = await downloadFile({ url: `${base}/models/tiny.safetensors`, dir: d, sha256: sha });
    expect(again.alreadyThere).toBe(true);
  });

  it('resumes an interrupted download with an HTTP Range request', async () => {
    const d = dir();
    cutNext = true;
    ranges.length = 0;
    await expect(
      downloadFile({ url: `${base}/models/tiny.safetensors`, dir: d, sha256: sha }),
    ).rejects.toThrow(/resume/);
    const partial = statSync(join(d, 'tiny.safetensors.part')).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(data.length);
    expect(existsSync(join(d, 'tiny.safetensors'))).toBe(false);
    const r = await downloadFile({ url: `${base}/models/tiny.safetensors`, dir: d, sha256: sha });
    expect(ranges).toEqual([undefined, `bytes=${partial}-`]);
    expect(r.resumedFrom).toBe(partial);
    expect(readFileSync(r.path).equals(data)).toBe(true);
  });

  it('refuses a file whose sha256 differs and removes the partial file', async () => {
    const d = dir();
    const wrong = '0'.repeat(64);
    await expect(
      downloadFile({ url: `${base}/models/tiny.safetensors`, dir: d, sha256: wrong }),
    ).rejects.toThrow(/does not match/);
    expect(existsSync(join(d, 'tiny.safetensors'))).toBe(false);
    expect(existsSync(join(d, 'tiny.safetensors.part'))).toBe(false);
  });

  it('says clearly when the host cannot be reached, and names HTTP errors', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const e = await downloadFile({ url: `http://127.0.0.1:${port}/x.safetensors`, dir: dir() }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(UserError);
    expect((e as Error).message).toMatch(/cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\).*network/);
    await expect(downloadFile({ url: `${base}/nope.safetensors`, dir: dir() })).rejects.toThrow(/HTTP 404/);
  });

  it('takes Hugging Face names and refuses names that leave the folder', () => {
    expect(resolveSource('stable-diffusion-v1-5/stable-diffusion-v1-5/v1-5-pruned-emaonly.safetensors')).toBe(
      'https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors',
    );
    expect(() => resolveSource('a/../b')).toThrow(UserError);
    expect(() => resolveSource('just-a-name')).toThrow(UserError);
    return expect(
      downloadFile({ url: `${base}/models/tiny.safetensors`, dir: dir(), name: '../escape.safetensors' }),
    ).rejects.toThrow(/plain file name/);
  });

  it('sdstudio download URL puts the file in the data dir and prints its path', async () => {
    const d = dir();
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [
          join(repoRoot, 'bin', 'sdstudio.js'),
          'download',
          `${base}/models/tiny.safetensors`,
          '--data-dir',
          d,
          '--sha256',
          sha,
        ],
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    expect(out.code, out.stderr).toBe(0);
    const path = join(d, 'models', 'Stable-diffusion', 'tiny.safetensors');
    expect(out.stdout.trim()).toBe(path);
    expect(readFileSync(path).equals(data)).toBe(true);
  });
});
