/**
 * Shared by the server tests: a temporary data dir holding the golden tiny checkpoint (named by the
 * golden folder's cases.json), a real server on 127.0.0.1 port 0, and small HTTP helpers.
 */
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import {
  buildServer,
  DEFAULT_BODY_LIMIT,
  type BuiltServer,
  type ServerConfig,
} from '../../src/server/app.js';
import { clipVocabPath, goldenPath } from '../helpers/golden.js';

/** The tiny SD 1.x checkpoint the tiny-sd goldens were made with (as cases.json names it). */
export function tinyCheckpoint(): string {
  const cases = JSON.parse(readFileSync(goldenPath('tiny-sd', 'cases.json'), 'utf8')) as {
    cases: { checkpoint?: string }[];
  };
  const name = cases.cases.find((c) => typeof c.checkpoint === 'string')?.checkpoint;
  if (!name) throw new Error('tiny-sd/cases.json names no checkpoint');
  return goldenPath('tiny-sd', name);
}

/** A fresh data dir; with `model`, the tiny checkpoint linked into models/Stable-diffusion. */
export function makeDataDir(model = true): string {
  const dir = mkdtempSync(join(tmpdir(), 'sdstudio-server-'));
  const ckpt = join(dir, 'models', 'Stable-diffusion');
  mkdirSync(ckpt, { recursive: true });
  if (model) symlinkSync(tinyCheckpoint(), join(ckpt, basename(tinyCheckpoint())));
  return dir;
}

export function serverConfig(dataDir: string, over: Partial<ServerConfig> = {}): ServerConfig {
  process.env.SDSTUDIO_CLIP_VOCAB ??= clipVocabPath();
  return {
    host: '127.0.0.1',
    port: 0,
    dataDir,
    dirs: {
      checkpoints: join(dataDir, 'models', 'Stable-diffusion'),
      vae: join(dataDir, 'models', 'VAE'),
      lora: join(dataDir, 'models', 'Lora'),
      hypernetworks: join(dataDir, 'models', 'hypernetworks'),
      embeddings: join(dataDir, 'embeddings'),
      esrgan: join(dataDir, 'models', 'ESRGAN'),
    },
    apiAuth: null,
    corsOrigins: null,
    corsOriginRegex: null,
    apiLog: false,
    bodyLimit: DEFAULT_BODY_LIMIT,
    subpath: '',
    flags: { port: 0, listen: false },
    ...over,
  };
}

export interface TestServer extends BuiltServer {
  url: string;
}

export async function startServer(dataDir: string, over: Partial<ServerConfig> = {}): Promise<TestServer> {
  const built = await buildServer(serverConfig(dataDir, over));
  const address = await built.app.listen({ host: '127.0.0.1', port: 0 });
  return { ...built, url: address };
}

export interface Json {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

export async function call(
  url: string,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string>; raw?: string } = {},
): Promise<Json> {
  const hasBody = init.body !== undefined || init.raw !== undefined;
  const res = await fetch(url + path, {
    method: init.method ?? (hasBody ? 'POST' : 'GET'),
    headers: { ...(hasBody && { 'content-type': 'application/json' }), ...init.headers },
    body: init.raw ?? (init.body !== undefined ? JSON.stringify(init.body) : undefined),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, body, headers: res.headers };
}

/** A small RGB PNG as base64 (a gradient, so resizes and encodes are not trivial). */
export async function pngBase64(width: number, height: number, alphaHole = false): Promise<string> {
  const ch = alphaHole ? 4 : 3;
  const data = Buffer.alloc(width * height * ch);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * ch;
      data[i] = (x * 255) / width;
      data[i + 1] = (y * 255) / height;
      data[i + 2] = 128;
      if (alphaHole)
        data[i + 3] =
          x > width / 4 && x < (3 * width) / 4 && y > height / 4 && y < (3 * height) / 4 ? 0 : 255;
    }
  const png = await sharp(data, { raw: { width, height, channels: ch } })
    .png()
    .toBuffer();
  return png.toString('base64');
}

/** Width, height and the `parameters` text chunk of a base64 PNG. */
export async function pngInfo(
  b64: string,
): Promise<{ width: number; height: number; parameters: string | null }> {
  const buf = Buffer.from(b64, 'base64');
  const meta = await sharp(buf).metadata();
  const { readGenerationInfo } = await import('../../src/infotext/image-metadata.js');
  const { geninfo } = await readGenerationInfo(buf);
  return { width: meta.width!, height: meta.height!, parameters: geninfo };
}
