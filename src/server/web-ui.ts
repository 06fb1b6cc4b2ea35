/**
 * The web UI as a Fastify plugin: the static build of `web/` (web/dist, made by `npm run build:web`,
 * which `npm ci`/`npm install` run through the `prepare` script) served at the plugin's prefix, with
 * SPA fallback: a GET for an unknown page path that accepts HTML gets index.html, while API paths and
 * non-HTML requests fall through to the server's own 404. Hashed assets are cached for good,
 * index.html never.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';

export interface WebUiOptions {
  /** Folder of the built UI (default: web/dist of this package). */
  root?: string;
}

/** Path prefixes that belong to the API, never to the UI's fallback. */
const API_PREFIXES = ['/sdapi/', '/api/', '/internal/', '/controlnet/', '/docs', '/openapi.json'];

/** web/dist of this package, from src/server/ (tsx) or dist/server/ (compiled). */
export function defaultWebRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'web', 'dist');
    if (existsSync(join(dir, 'package.json'))) return candidate;
    dir = dirname(dir);
  }
  return resolve('web', 'dist');
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>SD Studio</title>
<p>The web UI is not built. Run <code>npm run build:web</code> in the SD Studio folder (<code>npm ci</code> does it too),
then reload this page. The API is available at <a href="docs">/docs</a>.</p>`;

export const webUi: FastifyPluginAsync<WebUiOptions> = async (app, opts) => {
  const root = resolve(opts.root ?? defaultWebRoot());
  if (!existsSync(join(root, 'index.html'))) {
    app.get('/', async (_req, reply) => reply.code(503).type('text/html; charset=utf-8').send(NOT_BUILT));
    return;
  }
  const prefix = app.prefix.replace(/\/+$/, '');
  if (prefix) {
    // "/sub" → "/sub/": the page's relative asset and API URLs need the trailing slash.
    app.addHook('onRequest', async (req, reply) => {
      const [path, query] = req.url.split('?');
      if (path === prefix) return reply.redirect(`${prefix}/${query === undefined ? '' : `?${query}`}`);
    });
  }
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false,
    index: 'index.html',
    setHeaders: (reply, path) => {
      reply.header(
        'cache-control',
        /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache',
      );
    },
  });
  const fallback = (req: FastifyRequest, reply: FastifyReply) => {
    const path = req.url.split('?')[0].slice(prefix.length);
    const html = (req.headers.accept ?? '').includes('text/html');
    if (!html || API_PREFIXES.some((p) => path.startsWith(p))) return reply.callNotFound();
    return reply.header('cache-control', 'no-cache').sendFile('index.html');
  };
  app.get('/*', fallback);
};

export default webUi;
