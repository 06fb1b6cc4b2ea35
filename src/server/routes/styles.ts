/**
 * POST /api/v1/prompt-styles: save the prompt and negative prompt as a style in styles.csv (A1111's
 * file and columns; a style of the same name is replaced, as A1111's "save style" does). Written
 * atomically by prompt/styles.ts; GET /sdapi/v1/prompt-styles lists the result.
 */
import { existsSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import { loadStyles, saveStyles } from '../../prompt/styles.js';
import type { ServerContext } from '../context.js';
import { ValidationError } from '../requests.js';

const Body = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200, description: 'the style name' }),
  prompt: Type.String({ maxLength: 100_000 }),
  negative_prompt: Type.String({ maxLength: 100_000 }),
});

const plugin: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  // One save at a time: two concurrent read-modify-writes would lose one style.
  let saving: Promise<unknown> = Promise.resolve();
  app.post(
    '/api/v1/prompt-styles',
    {
      schema: {
        tags: ['prompt'],
        summary: 'Save a style to styles.csv (replaces one of the same name)',
        body: Body,
      },
    },
    async (req) => {
      const b = req.body as { name: string; prompt: string; negative_prompt: string };
      const name = b.name.trim();
      if (!name) throw new ValidationError('name', 'name: a style needs a name');
      const run = saving.then(async () => {
        const styles = existsSync(ctx.stylesFile) ? await loadStyles(ctx.stylesFile) : [];
        const style = { name, prompt: b.prompt, negativePrompt: b.negative_prompt };
        const at = styles.findIndex((s) => s.name === name);
        if (at >= 0) styles[at] = style;
        else styles.push(style);
        await saveStyles(ctx.stylesFile, styles);
        return styles;
      });
      saving = run.catch(() => undefined);
      const styles = await run;
      return styles.map((s) => ({ name: s.name, prompt: s.prompt, negative_prompt: s.negativePrompt }));
    },
  );
};

export default plugin;
