import type { CliCommand } from '../command.js';
import { parseCliArgs } from '../args.js';
import { readImageMetadata } from '../../infotext/image-metadata.js';
import { parseInfotext } from '../../infotext/infotext.js';
import { loadStyles } from '../../prompt/styles.js';
import { paramsFromInfotext } from '../../infotext/infotext-fields.js';
import { UserError } from '../../util/errors.js';

const usage = `Usage: sdstudio pnginfo FILE [--json] [--styles styles.csv]

Show the generation parameters stored in an image, as A1111's PNG Info tab does: the "parameters"
text of A1111/Forge PNGs, the EXIF UserComment of their JPEG/WebP files, NovelAI's data turned into
parameters, and the JSON that ComfyUI (prompt, workflow) and InvokeAI (invokeai_metadata) store.

  --json            print one JSON object: {file, format, infotext, parameters, generationParams,
                    raw, comfyui, invokeai, novelai, problems}. "parameters" is A1111's parsed dict
                    ("Steps", "Size-1", …), "generationParams" the same as our API's fields,
                    "format" one of a1111, comfyui, invokeai, novelai, none.
  --styles FILE     take the styles of this styles.csv out of the prompt, as A1111 does when it
                    reads an infotext ("Styles array")

Exit code 0 when the image has generation metadata, 1 when it has none, 2 for a bad file.
`;

const command: CliCommand = {
  name: 'pnginfo',
  summary: 'show the generation parameters stored in a PNG/JPEG/WebP (A1111, ComfyUI, InvokeAI, NovelAI)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCliArgs(
      argv,
      { json: { type: 'boolean' }, styles: { type: 'string' } },
      'pnginfo',
    );
    if (positionals.length !== 1) throw new UserError('give one image FILE (see `sdstudio pnginfo --help`)');
    const file = positionals[0];
    const meta = await readImageMetadata(file);
    const styles = values.styles ? await loadStyles(values.styles) : [];
    const parameters = meta.parameters !== undefined ? parseInfotext(meta.parameters, { styles }) : null;

    if (values.json) {
      const out = {
        file,
        format: meta.source,
        infotext: meta.parameters ?? null,
        parameters,
        generationParams: parameters ? paramsFromInfotext(parameters) : null,
        raw: meta.raw,
        comfyui: meta.comfyui ?? null,
        invokeai: meta.invokeai ?? null,
        novelai: meta.novelai ?? null,
        problems: meta.problems,
      };
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    } else if (meta.parameters !== undefined) {
      process.stdout.write(meta.parameters + '\n');
    } else {
      // Another tool's metadata: show what it stored, as stored.
      for (const [k, v] of Object.entries(meta.raw)) process.stdout.write(`${k}: ${v}\n`);
    }
    for (const p of meta.problems) process.stderr.write(`sdstudio pnginfo: warning: ${file}: ${p}\n`);
    if (meta.source === 'none') {
      process.stderr.write(`sdstudio pnginfo: ${file} holds no generation parameters\n`);
      return 1;
    }
    return 0;
  },
};

export default command;
