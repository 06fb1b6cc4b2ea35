/**
 * The web UI's extra-networks panel: GET /api/v1/extra-networks (cards with metadata) and
 * GET /api/v1/extra-networks/preview?kind=&name= (the preview image beside a file; a name is only
 * looked up in the listing, never joined into a path).
 */
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import { UserError } from '../../util/errors.js';
import type { ServerContext } from '../context.js';
import { imageType, listNetworks, NETWORK_KINDS } from '../extra-networks.js';

const MAX_PREVIEW_BYTES = 32 * 1024 * 1024;

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const tags = ['extra networks'];
  let previews = new Map<string, string>();

  app.get(
    '/api/v1/extra-networks',
    {
      schema: {
        tags,
        summary: 'Checkpoints, LoRAs, embeddings and hypernetworks as cards (metadata, preview or not)',
      },
    },
    async () => {
      const listed = await listNetworks(ctx);
      previews = listed.previews;
      return { items: listed.cards };
    },
  );

  app.get(
    '/api/v1/extra-networks/preview',
    {
      schema: {
        tags,
        summary: 'The preview image beside a model file (name.png, name.preview.png, …)',
        querystring: Type.Object({
          kind: Type.Union(NETWORK_KINDS.map((k) => Type.Literal(k))),
          name: Type.String({ minLength: 1, maxLength: 1000 }),
        }),
      },
    },
    async (req, reply) => {
      const { kind, name } = req.query as { kind: string; name: string };
      const key = `${kind}\n${name}`;
      // A file added since the last listing: list again once.
      if (!previews.has(key)) previews = (await listNetworks(ctx)).previews;
      const path = previews.get(key);
      if (!path) throw new UserError(`no preview image for ${kind} "${name.slice(0, 200)}"`, 2, 404);
      const bytes = await readFile(path);
      if (bytes.length > MAX_PREVIEW_BYTES)
        throw new UserError(`the preview of "${name}" is too large`, 2, 422);
      return reply.type(imageType(path)).header('cache-control', 'no-cache').send(bytes);
    },
  );
};

export default plugin;
