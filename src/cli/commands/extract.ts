import type { CliCommand } from '../command.js';
import { parseCliArgs } from '../args.js';
import { extractPart, PARTS, type Part } from '../../tools/extract.js';
import { countProgress } from '../progress.js';
import { UserError } from '../../util/errors.js';
import { removeTempOnSignal } from '../../tools/output.js';

const usage = `Usage: sdstudio extract IN --part unet|vae|text-encoder|text-encoder-2 OUT.safetensors

Write one component of a checkpoint as a standalone file, with the names such files use:
  vae             first_stage_model.* without the prefix (loads as a VAE in A1111 and ComfyUI)
  unet            model.diffusion_model.* without the prefix, ldm names (ComfyUI's UNet loader)
  text-encoder    Hugging Face CLIPTextModel names (text_model.*); OpenCLIP towers are converted
  text-encoder-2  SDXL's second (bigG) text encoder, converted the same way
`;

const command: CliCommand = {
  name: 'extract',
  summary: 'write one component (unet, vae, text encoder) of a checkpoint as its own file',
  usage,
  async run(argv) {
    const { values, positionals } = parseCliArgs(argv, { part: { type: 'string' } }, 'extract');
    if (positionals.length !== 2)
      throw new UserError('give IN and OUT.safetensors (see `sdstudio extract --help`)');
    if (!values.part) throw new UserError(`--part is required: one of ${PARTS.join(', ')}`);
    if (!PARTS.includes(values.part as Part)) {
      throw new UserError(`--part must be one of ${PARTS.join(', ')}, not "${values.part}"`);
    }
    const [input, output] = positionals as [string, string];
    const stopCleanup = removeTempOnSignal(output);
    const r = await extractPart(input, values.part as Part, output, {
      onProgress: countProgress(`extracting ${values.part}`, 'tensors'),
    }).finally(stopCleanup);
    process.stdout.write(`wrote ${r.out}: ${r.tensors} tensors\n`);
    return 0;
  },
};

export default command;
