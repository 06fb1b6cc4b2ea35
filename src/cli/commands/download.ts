/** `sdstudio download`: a checkpoint into models/Stable-diffusion (resumable, sha256-checked). */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { CliCommand } from '../command.js';
import { byteProgress } from '../progress.js';
import { UserError } from '../../util/errors.js';

const usage = `Usage: sdstudio download [URL | OWNER/REPO/FILE] [options]

Download a checkpoint into <data-dir>/models/Stable-diffusion. Without an argument: the SD 1.5
checkpoint AUTOMATIC1111 downloads on its first start (v1-5-pruned-emaonly.safetensors, 4.3 GB),
checked against its published sha256. A Hugging Face name OWNER/REPO/FILE is fetched from the
repository's main branch. An interrupted download resumes where it stopped (HTTP Range on
NAME.part); the file appears under its name only once complete (and checked).

  --data-dir DIR   data folder (default .)
  --ckpt-dir DIR   put it here instead of DATA/models/Stable-diffusion
  --name FILE      file name (default: the URL's)
  --sha256 HEX     refuse the file unless its sha256 is this
`;

const command: CliCommand = {
  name: 'download',
  summary: 'download a checkpoint (default: SD 1.5 as A1111 does), resumable, sha256-checked',
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'data-dir': { type: 'string' },
        'ckpt-dir': { type: 'string' },
        name: { type: 'string' },
        sha256: { type: 'string' },
      },
    });
    if (positionals.length > 1) throw new UserError('give one URL or OWNER/REPO/FILE');
    const { DEFAULT_MODEL, downloadFile, resolveSource } = await import('../../tools/download.js');
    const url = positionals[0] ? resolveSource(positionals[0]) : DEFAULT_MODEL.url;
    const sha256 = values.sha256 ?? (positionals[0] ? undefined : DEFAULT_MODEL.sha256);
    const dir = resolve(values['ckpt-dir'] ?? join(values['data-dir'] ?? '.', 'models', 'Stable-diffusion'));
    mkdirSync(dir, { recursive: true });
    process.stderr.write(`downloading ${url}\n`);
    const r = await downloadFile({
      url,
      dir,
      name: values.name,
      sha256,
      onProgress: byteProgress('download'),
    });
    if (r.alreadyThere) process.stderr.write(`already there (sha256 ${r.sha256})\n`);
    else if (r.resumedFrom) process.stderr.write(`resumed from byte ${r.resumedFrom}; sha256 ${r.sha256}\n`);
    else process.stderr.write(`sha256 ${r.sha256}\n`);
    process.stdout.write(r.path + '\n');
    return 0;
  },
};

export default command;
