import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { CliCommand } from '../command.js';
import { UserError } from '../../util/errors.js';

const usage = `Usage: sdstudio list loras|hypernetworks [--data-dir DIR] [--lora-dir DIR] [--hypernetwork-dir DIR] [--json]

What the data dir holds:
  loras           models/Lora (or --lora-dir) and models/LyCORIS: name, alias (ss_output_name, the
                  other name a <lora:…> tag may use), base model (sd1 / sd2 / sdxl, from the
                  kohya metadata or else the keys' widths), rank, most used training tags and
                  the preview image beside the file
  hypernetworks   models/hypernetworks (or --hypernetwork-dir): name (what a <hypernet:…> tag uses)
                  and preview
  --json          one JSON object per file, one per line
`;

const command: CliCommand = {
  name: 'list',
  summary: 'the LoRAs and hypernetworks a data dir holds (name, alias, base model, rank, tags)',
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'data-dir': { type: 'string' },
        'lora-dir': { type: 'string' },
        'hypernetwork-dir': { type: 'string' },
        json: { type: 'boolean' },
      },
    });
    const what = positionals[0];
    if (positionals.length !== 1 || (what !== 'loras' && what !== 'hypernetworks'))
      throw new UserError('give what to list: loras or hypernetworks (see `sdstudio list --help`)');
    const dataDir = resolve(values['data-dir'] ?? '.');
    const out = (line: string) => process.stdout.write(line + '\n');
    if (what === 'loras') {
      const { listLoras } = await import('../../adapters/listing.js');
      const { loraDirs } = await import('../../adapters/lora-library.js');
      const items = await listLoras(loraDirs(dataDir, values['lora-dir']));
      for (const l of items) {
        if (values.json) out(JSON.stringify(l));
        else {
          const tags = l.tags
            .slice(0, 8)
            .map(([t, n]) => `${t} (${n})`)
            .join(', ');
          out(
            `${l.name}${l.alias !== l.name ? `  alias ${l.alias}` : ''}  ${l.family}` +
              `${l.rank ? `  rank ${l.rank}` : ''}${tags ? `  tags: ${tags}` : ''}${l.preview ? `  preview ${l.preview}` : ''}`,
          );
        }
      }
      if (!values.json && items.length === 0)
        out(`no LoRA files in ${loraDirs(dataDir, values['lora-dir']).join(' or ')}`);
    } else {
      const { listHypernetworkFiles } = await import('../../adapters/listing.js');
      const { hypernetworkDir } = await import('../../adapters/run-hypernetworks.js');
      const dir = hypernetworkDir(dataDir, values['hypernetwork-dir']);
      const items = listHypernetworkFiles(dir);
      for (const h of items)
        out(values.json ? JSON.stringify(h) : `${h.name}${h.preview ? `  preview ${h.preview}` : ''}`);
      if (!values.json && items.length === 0) out(`no hypernetwork files in ${dir}`);
    }
    return 0;
  },
};

export default command;
