/**
 * POST /api/v1/downloads: `sdstudio download` as an API call — a checkpoint fetched into the
 * checkpoint folder in the background (resumable, sha256-checked, atomic), with its progress at
 * GET /api/v1/downloads/:id; the checkpoint list is refreshed when it completes.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import { UserError } from '../../util/errors.js';
import type { ServerContext } from '../context.js';

interface Download {
  id: string;
  url: string;
  name: string;
  state: 'running' | 'succeeded' | 'failed';
  bytes: number;
  total: number;
  path: string | null;
  sha256: string | null;
  error: string | null;
}

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const downloads = new Map<string, Download>();
  const tags = ['downloads'];
  app.post(
    '/api/v1/downloads',
    {
      schema: {
        tags,
        summary: "Download a checkpoint into the checkpoint folder (default: A1111's SD 1.5)",
        body: Type.Optional(
          Type.Object(
            {
              source: Type.Optional(
                Type.String({ maxLength: 2048, description: 'URL or Hugging Face OWNER/REPO/FILE' }),
              ),
              sha256: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$' })),
              name: Type.Optional(Type.String({ maxLength: 255 })),
            },
            { additionalProperties: false },
          ),
        ),
      },
    },
    async (req, reply) => {
      const body = (req.body ?? {}) as { source?: string; sha256?: string; name?: string };
      const { DEFAULT_MODEL, downloadFile, fileNameOf, resolveSource, checkName } =
        await import('../../tools/download.js');
      const url = body.source ? resolveSource(body.source) : DEFAULT_MODEL.url;
      const name = body.name ?? fileNameOf(url);
      checkName(name);
      if (!/\.(safetensors|ckpt)$/i.test(name)) {
        throw new UserError(`name: "${name}" must end in .safetensors or .ckpt`, 2, 422);
      }
      if ([...downloads.values()].some((d) => d.state === 'running' && d.name === name)) {
        throw new UserError(`${name} is being downloaded already`, 2, 409);
      }
      const d: Download = {
        id: randomUUID(),
        url,
        name,
        state: 'running',
        bytes: 0,
        total: 0,
        path: null,
        sha256: null,
        error: null,
      };
      downloads.set(d.id, d);
      const sha256 = body.sha256 ?? (body.source ? undefined : DEFAULT_MODEL.sha256);
      void downloadFile({
        url,
        dir: ctx.catalog.dirs.checkpoints,
        name,
        sha256,
        onProgress: (done, total) => {
          d.bytes = done;
          d.total = total;
        },
      }).then(
        async (r) => {
          // The list first: a client that sees "succeeded" must find the checkpoint listed.
          await ctx.queue.exclusive(() => ctx.catalog.refreshCheckpoints()).catch(() => undefined);
          Object.assign(d, { state: 'succeeded', path: r.path, sha256: r.sha256, bytes: r.bytes });
        },
        (e: unknown) =>
          Object.assign(d, { state: 'failed', error: e instanceof Error ? e.message : String(e) }),
      );
      return reply.code(202).send(d);
    },
  );
  app.get('/api/v1/downloads', { schema: { tags, summary: 'Downloads of this run' } }, async () => [
    ...downloads.values(),
  ]);
  app.get(
    '/api/v1/downloads/:id',
    {
      schema: {
        tags,
        summary: 'One download and its progress',
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
      },
    },
    async (req) => {
      const d = downloads.get((req.params as { id: string }).id);
      if (!d) throw new UserError('download not found', 2, 404);
      return d;
    },
  );
};

export default plugin;
