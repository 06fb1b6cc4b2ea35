/**
 * The HTTP server: Fastify with A1111's error shapes, HTTP Basic auth on every route, optional CORS,
 * OpenAPI at /openapi.json and /docs, and one plugin per route group (routes/). It owns the job
 * store, the queue, the executor, the model catalog and the settings for one data dir.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { UserError } from '../util/errors.js';
import { ModelCatalog } from './catalog.js';
import { PipelineExecutor, STYLES_FILE } from './executor.js';
import { OptionsStore } from './options.js';
import { LocalJobQueue } from './queue.js';
import { JobStore } from './store.js';
import { ValidationError } from './requests.js';
import generationRoutes from './routes/generation.js';
import infoRoutes from './routes/info.js';
import optionsRoutes from './routes/options.js';
import progressRoutes from './routes/progress.js';
import imageRoutes from './routes/images.js';
import jobRoutes from './routes/jobs.js';
import downloadRoutes from './routes/downloads.js';
import tokenizeRoutes from './routes/tokenize.js';
import extraNetworkRoutes from './routes/extra-networks.js';
import styleRoutes from './routes/styles.js';
import historyRoutes from './routes/history.js';
import toolRoutes from './routes/tools.js';
import { ModelToolExecutor } from './tool-jobs.js';
import { webUi } from './web-ui.js';
import type { ServerConfig, ServerContext } from './context.js';

export type { ServerConfig, ServerContext } from './context.js';

export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;

/** A1111's error body (modules/api/api.py api_error_handler). */
export function errorBody(error: string, detail: string, errors = ''): Record<string, string> {
  return { error, detail, body: '', errors };
}

interface AjvError {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** FastAPI's 422 shape for a failed body validation: loc names the field. */
function validationDetail(errors: AjvError[], context: string): unknown[] {
  return errors.map((e) => {
    const path = (e.instancePath ?? '')
      .split('/')
      .filter(Boolean)
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
    if (e.keyword === 'required' && typeof e.params?.missingProperty === 'string')
      path.push(e.params.missingProperty);
    const field = path.join('.') || context;
    const type =
      e.keyword === 'type'
        ? `type_error.${String(e.params?.type ?? 'value').split(',')[0]}`
        : `value_error.${e.keyword}`;
    return { loc: [context, ...path], msg: `${field}: ${e.message ?? 'invalid'}`, type };
  });
}

function credentialsMatch(
  header: string | undefined,
  allowed: { user: string; password: string }[],
): boolean {
  if (!header?.startsWith('Basic ')) return false;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  const user = digest(decoded.slice(0, colon));
  const pass = digest(decoded.slice(colon + 1));
  let ok = false;
  // Every pair is compared, in constant time, whatever matched before.
  for (const c of allowed) {
    const u = timingSafeEqual(user, digest(c.user));
    const p = timingSafeEqual(pass, digest(c.password));
    ok = (u && p) || ok;
  }
  return ok;
}

export interface BuiltServer {
  app: FastifyInstance;
  ctx: ServerContext;
  close(): Promise<void>;
}

export async function buildServer(config: ServerConfig): Promise<BuiltServer> {
  const log = config.log ?? (() => undefined);
  for (const d of [config.dataDir, config.dirs.checkpoints]) mkdirSync(d, { recursive: true });
  const catalog = new ModelCatalog(config.dirs, config.cacheDir);
  await catalog.refreshAll();
  const options = new OptionsStore(join(config.dataDir, 'config.json'));
  const stylesFile = STYLES_FILE(config.dataDir);
  const executor = new PipelineExecutor({
    dataDir: config.dataDir,
    dirs: config.dirs,
    outputsDir: join(config.dataDir, 'outputs'),
    stylesFile,
    cacheDir: config.cacheDir,
    log,
    onLoaded: (m) => {
      const entry = catalog.byRealpath(m.path);
      if (m.hash && entry && !entry.sha256) {
        void hashOf(m.path).then((sha) => sha && catalog.setHash(entry.filename, sha, m.hash!));
      }
    },
  });
  const hashOf = async (path: string) => {
    const { hashFile } = await import('../tools/hash.js');
    return (await hashFile(path, { cacheDir: config.cacheDir }).catch(() => null))?.sha256 ?? null;
  };
  const store = new JobStore(join(config.dataDir, 'jobs.sqlite'));
  const queue = new LocalJobQueue(store, executor, {
    outputsDir: join(config.dataDir, 'outputs'),
    jobsDir: join(config.dataDir, 'jobs'),
    tools: new ModelToolExecutor(catalog, { cacheDir: config.cacheDir }),
    log,
  });
  const ctx: ServerContext = { config, queue, executor, catalog, options, stylesFile, log };

  const app = Fastify({
    bodyLimit: config.bodyLimit,
    logger: false,
    forceCloseConnections: true,
    // pydantic v1 semantics: "5" → 5, unknown keys kept (and ignored), defaults echoed, not injected.
    ajv: {
      customOptions: {
        allowUnionTypes: true,
        useDefaults: false,
        coerceTypes: 'array',
        removeAdditional: false,
      },
    },
  });
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  // An empty JSON body (POST /interrupt from fetch with a JSON header) is no body, as in FastAPI.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '' || (typeof body === 'string' && body.trim() === '')) return done(null, undefined);
    defaultJson(req, body as string, done);
  });

  app.addHook('onRequest', async (req, reply) => {
    (req as unknown as { t0: bigint }).t0 = process.hrtime.bigint();
    if (!config.apiAuth || req.method === 'OPTIONS') return;
    if (credentialsMatch(req.headers.authorization, config.apiAuth)) return;
    const missing = !req.headers.authorization;
    return reply
      .code(401)
      .header('WWW-Authenticate', 'Basic realm="sdstudio", charset="UTF-8"')
      .send(errorBody('HTTPException', missing ? 'Not authenticated' : 'Incorrect username or password'));
  });
  app.addHook('onSend', async (req, reply, payload) => {
    const t0 = (req as unknown as { t0?: bigint }).t0;
    if (t0 !== undefined) reply.header('X-Process-Time', String(Number(process.hrtime.bigint() - t0) / 1e9));
    return payload;
  });
  if (config.apiLog) {
    app.addHook('onResponse', async (req, reply) => {
      if (req.url.includes('/sdapi/') || req.url.includes('/api/v1/'))
        log(`API ${new Date().toISOString()} ${req.method} ${req.url} ${reply.statusCode} ${req.ip}`);
    });
  }

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      return reply
        .code(422)
        .send({ detail: validationDetail(err.validation as AjvError[], err.validationContext ?? 'body') });
    }
    if (err.code?.startsWith('FST_ERR_CTP_INVALID_JSON') || err instanceof SyntaxError) {
      return reply.code(422).send({
        detail: [
          {
            loc: ['body', 0],
            msg: `body: not valid JSON (${err.message})`,
            type: 'value_error.jsondecode',
          },
        ],
      });
    }
    if (err instanceof ValidationError) return reply.code(422).send({ detail: err.detail() });
    if (err instanceof UserError) {
      const status = err.httpStatus === 400 ? 422 : err.httpStatus;
      return reply.code(status).send(errorBody('HTTPException', err.message));
    }
    if (typeof err.statusCode === 'number' && err.statusCode < 500) {
      return reply.code(err.statusCode).send(errorBody(err.name || 'HTTPException', err.message));
    }
    log(`internal error on ${req.method} ${req.url}: ${err.stack ?? err.message}`);
    return reply.code(500).send(errorBody(err.name || 'Error', '', err.message));
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ detail: 'Not Found' }));

  if (config.corsOrigins || config.corsOriginRegex) {
    const origins: (string | RegExp)[] = [...(config.corsOrigins ?? [])];
    if (config.corsOriginRegex) origins.push(new RegExp(`^(?:${config.corsOriginRegex})$`));
    await app.register(cors, {
      origin: origins,
      credentials: true,
      methods: ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'],
    });
  }
  const prefix = config.subpath.replace(/\/+$/, '');
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'SD Studio',
        description: "AUTOMATIC1111's /sdapi/v1 API and SD Studio's own job API",
        version: '0.1.0',
      },
      components: { securitySchemes: { basic: { type: 'http', scheme: 'basic' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: `${prefix}/docs` });
  app.get(`${prefix}/openapi.json`, { schema: { hide: true } }, async () => app.swagger());

  await app.register(
    async (scoped) => {
      await scoped.register(generationRoutes, ctx);
      await scoped.register(optionsRoutes, ctx);
      await scoped.register(progressRoutes, ctx);
      await scoped.register(infoRoutes, ctx);
      await scoped.register(imageRoutes, ctx);
      await scoped.register(jobRoutes, ctx);
      await scoped.register(downloadRoutes, ctx);
      await scoped.register(tokenizeRoutes, ctx);
      await scoped.register(extraNetworkRoutes, ctx);
      await scoped.register(styleRoutes, ctx);
      await scoped.register(historyRoutes, ctx);
      await scoped.register(toolRoutes, ctx);
    },
    { prefix },
  );
  if (config.webUi) await app.register(webUi, { prefix });
  await app.ready();
  queue.start();

  return {
    app,
    ctx,
    async close() {
      await app.close();
      await queue.close();
      await executor.close();
      store.close();
    },
  };
}
