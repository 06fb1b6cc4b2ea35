/**
 * `sdstudio serve`: the HTTP server (AUTOMATIC1111's /sdapi/v1 API and our job API) with A1111's
 * flags and defaults.
 */
import { join, resolve } from 'node:path';
import { parseCliArgs, parseDecimal } from '../args.js';
import type { CliCommand } from '../command.js';
import { UserError } from '../../util/errors.js';
// Types only: `sdstudio --help` loads every command module, and the server's imports are heavy.
import type { ServerConfig } from '../../server/context.js';

const usage = `Usage: sdstudio serve [options]

Serve AUTOMATIC1111's HTTP API (/sdapi/v1/…) and SD Studio's job API (/api/v1/jobs) with a
persistent queue (SQLite in the data dir). OpenAPI at /openapi.json, interactive docs at /docs.

  --port N                      port (default 7860; 7861 with --nowebui, as A1111)
  --listen                      listen on all interfaces (0.0.0.0) instead of 127.0.0.1
  --server-name HOST            listen on this address
  --data-dir DIR                data folder (default .): models/, outputs/, config.json, jobs.sqlite
  --ckpt-dir DIR                checkpoints (default DATA/models/Stable-diffusion)
  --vae-dir DIR                 VAEs (default DATA/models/VAE)
  --lora-dir DIR                LoRA files (default DATA/models/Lora)
  --hypernetwork-dir DIR        hypernetworks (default DATA/models/hypernetworks)
  --embeddings-dir DIR          textual-inversion embeddings (default DATA/embeddings)
  --cache-dir DIR               converted-weights and hash cache (default $SDSTUDIO_CACHE or ~/.cache/sdstudio)
  --api-auth USER:PASS[,U:P]    HTTP Basic auth on every route
  --cors-allow-origins A,B      allow these browser origins (exact match)
  --cors-allow-origins-regex RE allow origins matching RE
  --api-log                     one line per API request on stderr
  --nowebui                     API only, without the web UI (changes the default port to 7861)
  --subpath PATH                serve everything under PATH (e.g. /sd)
  --body-limit MB               largest request body (default 64)
`;

/** Everything `sdstudio serve` was asked for, checked (no I/O). */
export function serveConfig(argv: string[]): { config: ServerConfig; warnings: string[] } {
  const { values, positionals } = parseCliArgs(
    argv,
    {
      port: { type: 'string' },
      listen: { type: 'boolean' },
      'server-name': { type: 'string' },
      'data-dir': { type: 'string' },
      'ckpt-dir': { type: 'string' },
      'vae-dir': { type: 'string' },
      'lora-dir': { type: 'string' },
      'hypernetwork-dir': { type: 'string' },
      'embeddings-dir': { type: 'string' },
      'cache-dir': { type: 'string' },
      'api-auth': { type: 'string' },
      'cors-allow-origins': { type: 'string' },
      'cors-allow-origins-regex': { type: 'string' },
      'api-log': { type: 'boolean' },
      nowebui: { type: 'boolean' },
      api: { type: 'boolean' },
      subpath: { type: 'string' },
      'body-limit': { type: 'string' },
    },
    'serve',
  );
  if (positionals.length)
    throw new UserError(`unexpected argument "${positionals[0]}"; see \`sdstudio serve --help\``);
  const port = values.port !== undefined ? parseDecimal(values.port, '--port') : values.nowebui ? 7861 : 7860;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UserError(`--port must be 0 to 65535 (got ${values.port})`);
  const bodyMb = values['body-limit'] !== undefined ? parseDecimal(values['body-limit'], '--body-limit') : 64;
  if (!Number.isFinite(bodyMb) || bodyMb <= 0 || bodyMb > 4096)
    throw new UserError('--body-limit must be a size in MB from 1 to 4096');
  let apiAuth: { user: string; password: string }[] | null = null;
  if (values['api-auth'] !== undefined) {
    apiAuth = values['api-auth'].split(',').map((pair) => {
      const i = pair.indexOf(':');
      if (i <= 0) throw new UserError('--api-auth takes USER:PASSWORD pairs separated by commas');
      return { user: pair.slice(0, i), password: pair.slice(i + 1) };
    });
  }
  let subpath = values.subpath ?? '';
  if (subpath && !subpath.startsWith('/')) subpath = '/' + subpath;
  subpath = subpath.replace(/\/+$/, '');
  if (values['cors-allow-origins-regex']) {
    try {
      new RegExp(values['cors-allow-origins-regex']);
    } catch {
      throw new UserError('--cors-allow-origins-regex is not a valid regular expression');
    }
  }
  const dataDir = resolve(values['data-dir'] ?? '.');
  const host = values['server-name'] ?? (values.listen ? '0.0.0.0' : '127.0.0.1');
  const dir = (flag: string, ...def: string[]) =>
    resolve((values as Record<string, string | undefined>)[flag] ?? join(dataDir, ...def));
  const warnings: string[] = [];
  if (values.listen && !apiAuth) {
    warnings.push('warning: --listen without --api-auth: anyone who can reach this machine can use the API');
  }
  const flags: Record<string, unknown> = {
    port: values.port !== undefined ? port : null,
    listen: !!values.listen,
    server_name: values['server-name'] ?? null,
    data_dir: dataDir,
    ckpt_dir: values['ckpt-dir'] ?? null,
    vae_dir: values['vae-dir'] ?? null,
    lora_dir: dir('lora-dir', 'models', 'Lora'),
    hypernetwork_dir: dir('hypernetwork-dir', 'models', 'hypernetworks'),
    embeddings_dir: dir('embeddings-dir', 'embeddings'),
    api: true,
    api_auth: apiAuth ? '<hidden>' : null,
    api_log: !!values['api-log'],
    nowebui: !!values.nowebui,
    cors_allow_origins: values['cors-allow-origins'] ?? null,
    cors_allow_origins_regex: values['cors-allow-origins-regex'] ?? null,
    subpath: subpath || null,
    api_server_stop: false,
  };
  const config: ServerConfig = {
    host,
    port,
    dataDir,
    dirs: {
      checkpoints: dir('ckpt-dir', 'models', 'Stable-diffusion'),
      vae: dir('vae-dir', 'models', 'VAE'),
      lora: dir('lora-dir', 'models', 'Lora'),
      hypernetworks: dir('hypernetwork-dir', 'models', 'hypernetworks'),
      embeddings: dir('embeddings-dir', 'embeddings'),
      esrgan: join(dataDir, 'models', 'ESRGAN'),
    },
    apiAuth,
    corsOrigins: values['cors-allow-origins']
      ? values['cors-allow-origins'].split(',').map((s) => s.trim())
      : null,
    corsOriginRegex: values['cors-allow-origins-regex'] ?? null,
    apiLog: !!values['api-log'],
    bodyLimit: values['body-limit'] !== undefined ? Math.round(bodyMb * 1024 * 1024) : 64 * 1024 * 1024,
    subpath,
    cacheDir: values['cache-dir'] ? resolve(values['cache-dir']) : undefined,
    flags,
    webUi: !values.nowebui,
  };
  return { config, warnings };
}

const command: CliCommand = {
  name: 'serve',
  summary: "HTTP server: AUTOMATIC1111's API, SD Studio's job API, persistent queue",
  usage,
  async run(argv) {
    const { config, warnings } = serveConfig(argv);
    const log = (m: string) => process.stderr.write(`${m}\n`);
    for (const w of warnings) log(w);
    const { buildServer } = await import('../../server/app.js');
    const server = await buildServer({ ...config, log });
    const { host, port, subpath } = config;
    const address = await server.app.listen({ host, port });
    const url = new URL(address);
    if (host === '0.0.0.0') url.hostname = '127.0.0.1';
    const models = server.ctx.catalog.checkpoints.length;
    if (!models) {
      log(
        `no checkpoint in ${server.ctx.catalog.dirs.checkpoints} yet: run \`sdstudio download\` or put one there`,
      );
    }
    process.stdout.write(`Running on local URL:  ${url.origin}${subpath}/\n`);
    await new Promise<void>((done) => {
      let stopping = false;
      const stop = () => {
        if (stopping) process.exit(130);
        stopping = true;
        log('stopping: interrupting the running job');
        server.close().then(done, done);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return 0;
  },
};

export default command;
