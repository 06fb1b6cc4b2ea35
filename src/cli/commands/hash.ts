import type { CliCommand } from '../command.js';
import { parseCliArgs } from '../args.js';
import { hashFile } from '../../tools/hash.js';
import { byteProgress } from '../progress.js';
import { UserError } from '../../util/errors.js';

const usage = `Usage: sdstudio hash FILE... [--json] [--no-cache]

Print each file's sha256, A1111 "Model hash" (first 10 hex chars) and legacy 8-char hash, plus the
addnet hash (sha256 of the data after the header) for .safetensors — the hash A1111 writes for
LoRAs in infotext. Results are cached by path + size + mtime in $SDSTUDIO_CACHE (default
~/.cache/sdstudio), so hashing the same file again is instant.

  --json       one JSON object per file, one per line
  --no-cache   neither read nor write the hash cache
`;

const command: CliCommand = {
  name: 'hash',
  summary: 'sha256, A1111 model hash, legacy hash and addnet hash of model files (cached)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCliArgs(
      argv,
      { json: { type: 'boolean' }, 'no-cache': { type: 'boolean' } },
      'hash',
    );
    if (positionals.length === 0)
      throw new UserError('give at least one FILE to hash (see `sdstudio hash --help`)');
    for (const file of positionals) {
      const h = await hashFile(file, {
        noCache: values['no-cache'],
        onProgress: byteProgress('hashing'),
      });
      if (values.json) {
        process.stdout.write(
          JSON.stringify({
            file,
            sha256: h.sha256,
            autov2: h.autov2,
            legacy: h.legacy,
            addnet: h.addnet ?? null,
          }) + '\n',
        );
      } else {
        const lines = [file, `  sha256: ${h.sha256}`, `  autov2: ${h.autov2}`, `  legacy: ${h.legacy}`];
        if (h.addnet) lines.push(`  addnet: ${h.addnet}`);
        process.stdout.write(lines.join('\n') + '\n');
      }
    }
    return 0;
  },
};

export default command;
