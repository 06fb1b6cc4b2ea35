import type { CliCommand } from '../command.js';
import { parseCliArgs } from '../args.js';
import { inspectFile, type InspectReport } from '../../tools/inspect.js';
import { byteProgress } from '../progress.js';
import { UserError } from '../../util/errors.js';

const usage = `Usage: sdstudio inspect FILE [--json] [--v-pred] [--yaml CONFIG.yaml] [--no-hash]

Say what a model file is: kind (checkpoint, lora, embedding, hypernetwork, vae, controlnet,
upscaler), SD family, prediction type, variant, components with parameter counts, dtypes,
hyper-parameters, hashes (sha256, A1111 "Model hash", legacy hash) and safetensors metadata.
FILE may also be an embedding image (.png/.webp with a textual-inversion embedding in it).

  --json       print one JSON object
  --v-pred     treat the model as v-prediction (SD2 768-v files look like eps ones)
  --yaml PATH  ldm config sidecar to use (default: FILE's stem + .yaml, when present)
  --no-hash    skip hashing (instant on huge files; hashes are cached anyway)
`;

function millions(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n);
}

function human(path: string, r: InspectReport): string {
  const lines = [`${path}`, `  kind:         ${r.kind}`];
  if (r.architecture) lines.push(`  architecture: ${r.architecture}`);
  if (r.prediction) lines.push(`  prediction:   ${r.prediction}`);
  if (r.kind === 'checkpoint') lines.push(`  variant:      ${r.variant}`);
  lines.push(
    `  components:   ${Object.entries(r.components)
      .map(([k, v]) => `${k} ${millions(v)}`)
      .join(', ')}`,
  );
  const dtypes = Object.entries(r.dtypes).map(([k, v]) => `${k} ${v}`);
  lines.push(`  tensors:      ${r.tensors}${dtypes.length ? ` (${dtypes.join(', ')})` : ''}`);
  if (r.hash)
    lines.push(`  hash:         ${r.hash.autov2} (sha256 ${r.hash.sha256}, legacy ${r.hash.legacy})`);
  for (const [name, cfg] of Object.entries(r.config)) lines.push(`  ${name}: ${JSON.stringify(cfg)}`);
  const meta = Object.keys(r.metadata);
  if (meta.length > 0)
    lines.push(
      `  metadata:     ${meta.length} keys (${meta.slice(0, 8).join(', ')}${meta.length > 8 ? ', …' : ''})`,
    );
  return lines.join('\n') + '\n';
}

const command: CliCommand = {
  name: 'inspect',
  summary: 'say what a model file is (kind, architecture, components, hashes, metadata)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCliArgs(
      argv,
      {
        json: { type: 'boolean' },
        'v-pred': { type: 'boolean' },
        yaml: { type: 'string' },
        'no-hash': { type: 'boolean' },
      },
      'inspect',
    );
    if (positionals.length !== 1)
      throw new UserError('give exactly one FILE to inspect (see `sdstudio inspect --help`)');
    const file = positionals[0]!;
    const report = await inspectFile(file, {
      vPred: values['v-pred'],
      yamlPath: values.yaml,
      noHash: values['no-hash'],
      onHashProgress: byteProgress('hashing'),
    });
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : human(file, report));
    return 0;
  },
};

export default command;
