/**
 * POST /api/v1/tokenize: the prompt box's token counter ("N/75"), counted by the server's own
 * tokenizer and prompt parser exactly as generation chunks the prompt (server/token-counter.ts).
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import { LIMITS } from '../../params/catalog.js';
import type { ServerContext } from '../context.js';
import { TokenCounter, type TokenizeRequest } from '../token-counter.js';

const Body = Type.Object(
  {
    prompt: Type.String({ maxLength: 100_000, description: 'the prompt as typed' }),
    negative: Type.Optional(Type.Boolean({ description: 'a negative prompt (not split on AND)' })),
    steps: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: LIMITS.maxSteps,
        description: 'where [a:b:n] switches (default 20)',
      }),
    ),
    styles: Type.Optional(
      Type.Array(Type.String({ maxLength: 1000 }), { maxItems: 100, description: 'styles applied first' }),
    ),
    checkpoint: Type.Optional(
      Type.String({ maxLength: 1000, description: 'a checkpoint name (default: the selected one)' }),
    ),
  },
  // Unknown keys are ignored, as A1111's pydantic models do.
);

const Reply = Type.Object({
  token_count: Type.Integer({ description: "A1111's count: 75 per full chunk plus the last chunk's tokens" }),
  max_length: Type.Integer({
    description: 'the chunks it takes × 75 (the counter shows token_count/max_length)',
  }),
  chunks: Type.Array(Type.Integer(), { description: 'real tokens in each 75-token chunk' }),
});

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const counter = new TokenCounter(ctx);
  app.post(
    '/api/v1/tokenize',
    {
      schema: {
        tags: ['prompt'],
        summary: 'Count the tokens of a prompt per 75-token chunk, as generation chunks it',
        body: Body,
        response: { 200: Reply },
      },
    },
    async (req) => {
      const r = await counter.count(req.body as TokenizeRequest);
      return { token_count: r.tokenCount, max_length: r.maxLength, chunks: r.chunks };
    },
  );
};

export default plugin;
