import type { CliCommand } from '../command.js';
import { runGenerateCommand } from '../generate-command.js';
import { COMMON_USAGE, IMG2IMG_USAGE } from '../generate-flags.js';

const usage = `Usage: sdstudio img2img INIT.png --prompt "PROMPT" [options]

Redraws an image guided by a prompt, or inpaints the part a mask marks, as A1111's img2img and
inpaint tabs do; saves to <data-dir>/outputs/img2img-images/<date>/<NNNNN>-<seed>.png with the
parameters inside. Prints the path of every file written.

  --prompt TEXT            the prompt
${IMG2IMG_USAGE}
${COMMON_USAGE}`;

const command: CliCommand = {
  name: 'img2img',
  summary: 'redraw or inpaint an image guided by a prompt (A1111 img2img / inpaint)',
  usage,
  run: (argv) => runGenerateCommand('img2img', argv),
};

export default command;
