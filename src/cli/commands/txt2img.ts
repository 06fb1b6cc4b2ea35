import type { CliCommand } from '../command.js';
import { runGenerateCommand } from '../generate-command.js';
import { COMMON_USAGE, HIRES_USAGE } from '../generate-flags.js';

const usage = `Usage: sdstudio txt2img "PROMPT" [options]

Generates images from a prompt (A1111 prompt syntax: (emphasis:1.2), [from:to:when], AND, BREAK)
with a Stable Diffusion 1.x checkpoint, and saves them as
<data-dir>/outputs/txt2img-images/<date>/<NNNNN>-<seed>.png with the parameters inside (PNG info).
Prints the path of every file written.

${COMMON_USAGE}
${HIRES_USAGE}`;

const command: CliCommand = {
  name: 'txt2img',
  summary: 'generate images from a prompt (A1111 txt2img, hires fix, batches)',
  usage,
  run: (argv) => runGenerateCommand('txt2img', argv),
};

export default command;
