import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webUi } from '../../src/server/web-ui.js';
import { makeDataDir, startServer as startTestServer } from '../server/helpers.js';

let dir: string;
let app: FastifyInstance;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sdstudio-webui-'));
  mkdirSync(join(dir, 'dist', 'assets'), { recursive: true });
  writeFileSync(join(dir, 'dist', 'index.html'), '<!doctype html><title>UI</title>');
  writeFileSync(join(dir, 'dist', 'assets', 'index-abc123.js'), 'console.log(1)');
  app = Fastify();
  app.get('/sdapi/v1/progress', async () => ({ progress: 0 }));
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ detail: 'Not Found' }));
  await app.register(webUi, { root: join(dir, 'dist') });
  await app.ready();
});

afterAll(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('webUi plugin', () => {
  it('serves index.html at / without caching it', async () => {
    const res = await app.inject({ url: '/', headers: { accept: 'text/html' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.body).toContain('<title>UI</title>');
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('serves hashed assets with a long cache', async () => {
    const res = await app.inject({ url: '/assets/index-abc123.js' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/javascript/);
    expect(res.headers['cache-control']).toContain('immutable');
  });

  it('falls back to index.html for page paths a browser asks for', async () => {
    const res = await app.inject({ url: '/img2img?x=1', headers: { accept: 'text/html,*/*' } });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('<title>UI</title>');
  });

  it('leaves API routes and their 404s to the server', async () => {
    expect((await app.inject({ url: '/sdapi/v1/progress' })).json()).toEqual({ progress: 0 });
    const miss = await app.inject({ url: '/sdapi/v1/nope', headers: { accept: 'text/html' } });
    expect(miss.statusCode).toBe(404);
    expect(miss.json()).toEqual({ detail: 'Not Found' });
    const asset = await app.inject({ url: '/assets/missing.js', headers: { accept: '*/*' } });
    expect(asset.statusCode).toBe(404);
  });

  it('never serves a file outside its folder', async () => {
    writeFileSync(join(dir, 'secret.txt'), 'secret');
    for (const url of ['/../secret.txt', '/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt']) {
      const res = await app.inject({ url, headers: { accept: 'text/html' } });
      expect(res.body, url).not.toContain('secret');
    }
  });

  it('works under a --subpath prefix', async () => {
    const sub = Fastify();
    sub.get('/sd/sdapi/v1/progress', async () => ({ progress: 0 }));
    sub.setNotFoundHandler((_req, reply) => reply.code(404).send({ detail: 'Not Found' }));
    await sub.register(webUi, { root: join(dir, 'dist'), prefix: '/sd' });
    expect((await sub.inject({ url: '/sd/', headers: { accept: 'text/html' } })).body).toContain(
      '<title>UI</title>',
    );
    expect((await sub.inject({ url: '/sd/assets/index-abc123.js' })).statusCode).toBe(200);
    const bare = await sub.inject({ url: '/sd', headers: { accept: 'text/html' } });
    expect(bare.statusCode).toBe(302);
    expect(bare.headers.location).toBe('/sd/');
    expect((await sub.inject({ url: '/sd/txt2img', headers: { accept: 'text/html' } })).statusCode).toBe(200);
    const api = await sub.inject({ url: '/sd/sdapi/v1/nope', headers: { accept: 'text/html' } });
    expect(api.statusCode).toBe(404);
    expect(api.json()).toEqual({ detail: 'Not Found' });
    await sub.close();
  });

  it('says how to build the UI when web/dist is missing', async () => {
    const bare = Fastify();
    await bare.register(webUi, { root: join(dir, 'nothing-here') });
    const res = await bare.inject({ url: '/' });
    expect(res.statusCode).toBe(503);
    expect(res.body).toContain('npm run build:web');
    await bare.close();
  });
});

describe('sdstudio serve wiring', () => {
  it('the UI answers / unless --nowebui; API misses stay JSON 404s', async () => {
    const dataDir = makeDataDir(false);
    try {
      for (const webUi of [true, false]) {
        const server = await startTestServer(dataDir, { webUi });
        try {
          const page = await fetch(server.url + '/', { headers: { accept: 'text/html' } });
          if (webUi) {
            // The built page, or (no build in this checkout) the page saying how to build it.
            expect([200, 503]).toContain(page.status);
            expect(page.headers.get('content-type')).toMatch(/text\/html/);
          } else {
            expect(page.status).toBe(404);
            expect(await page.json()).toEqual({ detail: 'Not Found' });
          }
          const miss = await fetch(server.url + '/sdapi/v1/nope', { headers: { accept: 'text/html' } });
          expect(miss.status).toBe(404);
          expect(await miss.json()).toEqual({ detail: 'Not Found' });
        } finally {
          await server.close();
        }
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
