/**
 * Downloading a model file: resume of a partial download (HTTP Range on `<name>.part`), sha256
 * checked over the whole file, atomic rename into place, and errors that say what to do when the
 * network is not there. Used by `sdstudio download` (and by the server once it offers downloads).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { UserError } from '../util/errors.js';

/** The checkpoint A1111 downloads on its first start, and its published sha256. */
export const DEFAULT_MODEL = {
  url: 'https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors',
  sha256: '6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa',
};

/** A URL, or a Hugging Face "owner/repo/path/file" (resolved on the main branch). */
export function resolveSource(source: string): string {
  if (/^https?:\/\//i.test(source)) return source;
  const parts = source.split('/').filter(Boolean);
  if (parts.length < 3 || parts.some((p) => p === '..' || p === '.')) {
    throw new UserError(`"${source}" is neither a URL nor a Hugging Face "owner/repo/file" name`);
  }
  const [owner, repo, ...file] = parts;
  return `https://huggingface.co/${owner}/${repo}/resolve/main/${file.map(encodeURIComponent).join('/')}`;
}

/** The file name a URL names (its last path segment), refused when it could leave the folder. */
export function fileNameOf(url: string): string {
  let name: string;
  try {
    name = decodeURIComponent(basename(new URL(url).pathname));
  } catch {
    throw new UserError(`cannot tell a file name from ${url}; give --name`);
  }
  checkName(name);
  return name;
}

export function checkName(name: string): void {
  if (!name || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw new UserError(`"${name}" is not a plain file name; give --name NAME.safetensors`);
  }
}

export interface DownloadOptions {
  url: string;
  /** Folder to put the file in. */
  dir: string;
  /** File name (default: from the URL). */
  name?: string;
  /** Expected sha256 (hex); the file is refused when it differs. */
  sha256?: string;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  bytes: number;
  /** Bytes that were already there from an earlier, interrupted download. */
  resumedFrom: number;
  /** The file was already complete (same sha256): nothing was downloaded. */
  alreadyThere: boolean;
}

async function hashFileInto(path: string, hash: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

function offline(url: string, e: unknown): UserError {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (e as Error).message;
  const host = (() => {
    try {
      return new URL(url).host;
    } catch {
      return url;
    }
  })();
  return new UserError(
    `cannot reach ${host} (${code}): check the network connection (or a proxy), then run the same command ` +
      'again to resume; offline, download the file on another machine and copy it into the models folder',
    5,
  );
}

export async function downloadFile(opts: DownloadOptions): Promise<DownloadResult> {
  const name = opts.name ?? fileNameOf(opts.url);
  checkName(name);
  const want = opts.sha256?.toLowerCase();
  if (want !== undefined && !/^[0-9a-f]{64}$/.test(want))
    throw new UserError('--sha256 must be 64 hex digits');
  const dest = join(opts.dir, name);
  const part = `${dest}.part`;
  if (existsSync(dest)) {
    const h = createHash('sha256');
    await hashFileInto(dest, h);
    const got = h.digest('hex');
    if (want && got !== want) {
      throw new UserError(
        `${dest} exists and its sha256 is ${got}, not ${want}; move it away to download it again`,
      );
    }
    return { path: dest, sha256: got, bytes: (await stat(dest)).size, resumedFrom: 0, alreadyThere: true };
  }
  const have = existsSync(part) ? (await stat(part)).size : 0;
  let res: Response;
  try {
    res = await fetch(opts.url, {
      headers: have > 0 ? { range: `bytes=${have}-` } : {},
      redirect: 'follow',
      signal: opts.signal,
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw offline(opts.url, e);
  }
  const hash = createHash('sha256');
  let start = 0;
  if (res.status === 206 && have > 0) {
    const range = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
    if (!range || Number(range[1]) !== have) {
      await res.body?.cancel();
      throw new UserError(`${opts.url} answered another range than asked; delete ${part} and try again`);
    }
    start = have;
    await hashFileInto(part, hash);
  } else if (res.status === 416 && have > 0) {
    // The part file is already whole: check it below.
    await res.body?.cancel();
    start = have;
    await hashFileInto(part, hash);
  } else if (!res.ok) {
    await res.body?.cancel();
    throw new UserError(
      `${opts.url} answered HTTP ${res.status}${res.status === 401 || res.status === 403 ? ' (the file may need a login or a token)' : ''}`,
    );
  }
  const length = Number(res.headers.get('content-length') ?? NaN);
  const total = res.status === 416 ? start : Number.isFinite(length) ? start + length : 0;
  let done = start;
  if (res.status !== 416 && res.body) {
    // Each chunk reaches the file before the next is read, so a dropped connection keeps it all.
    const fh = await open(part, start > 0 ? 'a' : 'w');
    try {
      for await (const chunk of Readable.fromWeb(
        res.body as import('node:stream/web').ReadableStream<Uint8Array>,
      )) {
        const buf = chunk as Buffer;
        await fh.write(buf);
        hash.update(buf);
        done += buf.length;
        opts.onProgress?.(done, Math.max(total, done));
      }
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      throw new UserError(
        `the download of ${name} stopped after ${done} bytes (${(e as Error).message}); run the same command again to resume`,
        5,
      );
    } finally {
      await fh.close();
    }
  }
  if (total && done < total) {
    throw new UserError(
      `the download of ${name} ended after ${done} of ${total} bytes; run the same command again to resume`,
      5,
    );
  }
  const got = hash.digest('hex');
  if (want && got !== want) {
    await rm(part, { force: true });
    throw new UserError(
      `${name}: sha256 ${got} does not match the expected ${want}; the partial file was removed, download it again`,
      5,
    );
  }
  await rename(part, dest);
  return { path: dest, sha256: got, bytes: done, resumedFrom: start, alreadyThere: false };
}
