import { parseArgs } from 'node:util';
import type { CliCommand } from '../command.js';
import { countProgress } from '../progress.js';
import { UserError } from '../../util/errors.js';
import { removeTempOnSignal, checkOutputPath } from '../../tools/output.js';

const usage = `Usage: sdstudio extract-lora TUNED BASE --out LORA.safetensors [--rank 32] [--conv-rank N]
                            [--clamp 0.99] [--min-diff 0.01] [--fp16] [--json]

A LoRA as the difference TUNED − BASE, as kohya's extract_lora_from_models.py makes it: per layer
a rank-r SVD of the difference, both factors clamped to the --clamp quantile, kohya's key layout
and metadata (loads in SD Studio, A1111 and kohya's tools). The UNet's transformer layers always;
with --conv-rank also its ResNet blocks and 3×3 convolutions; the text encoder when one of its
layers changed by more than --min-diff. Each layer's relative reconstruction error is reported.

  --rank N        rank of Linear and 1×1 conv layers (kohya --dim; default 32)
  --conv-rank N   rank of 3×3 convs (kohya --conv_dim; default: not extracted)
  --clamp Q       clamp quantile (default 0.99)
  --min-diff X    smallest text-encoder change that counts (default 0.01)
  --fp16          save the factors as fp16 (default fp32)
  --json          the per-layer report as JSON lines on stdout
`;

function positiveInt(v: string | undefined, flag: string, def?: number): number | undefined {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new UserError(`${flag} must be a positive whole number, not "${v}"`);
  return n;
}

function number01(v: string | undefined, flag: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
    throw new UserError(`${flag} must be a number in [0, 1], not "${v}"`);
  return n;
}

const command: CliCommand = {
  name: 'extract-lora',
  summary: "a LoRA as the difference of two checkpoints (kohya's SVD extraction)",
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        rank: { type: 'string' },
        'conv-rank': { type: 'string' },
        clamp: { type: 'string' },
        'min-diff': { type: 'string' },
        fp16: { type: 'boolean' },
        json: { type: 'boolean' },
      },
    });
    if (positionals.length !== 2)
      throw new UserError('give TUNED and BASE (see `sdstudio extract-lora --help`)');
    if (!values.out) throw new UserError('--out LORA.safetensors is required');
    const [tunedPath, basePath] = positionals as [string, string];
    const out = checkOutputPath(values.out, [tunedPath, basePath]);
    const dim = positiveInt(values.rank, '--rank', 32)!;
    const convDim = positiveInt(values['conv-rank'], '--conv-rank');
    const clampQuantile = number01(values.clamp, '--clamp', 0.99);
    const minDiff = Number(values['min-diff'] ?? 0.01);
    if (!Number.isFinite(minDiff) || minDiff < 0) throw new UserError(`--min-diff must be a number ≥ 0`);
    const { openModel } = await import('../../formats/open.js');
    const { extractLora, writeExtractedLora } = await import('../../adapters/extract-lora.js');
    const tuned = await openModel(tunedPath);
    const base = await openModel(basePath);
    const stop = removeTempOnSignal(out);
    try {
      const r = await extractLora(tuned, base, {
        dim,
        convDim,
        clampQuantile,
        minDiff,
        saveDtype: values.fp16 ? 'F16' : 'F32',
        onProgress: countProgress('extracting', 'layers'),
      });
      await writeExtractedLora(out, r.tensors, r.metadata);
      const changed = r.layers.filter((l) => l.relError > 0);
      for (const l of r.layers) {
        if (values.json) process.stdout.write(JSON.stringify(l) + '\n');
      }
      if (!values.json) {
        for (const l of changed)
          process.stdout.write(`${l.module}  rank ${l.rank}  relative error ${l.relError.toFixed(4)}\n`);
        process.stdout.write(
          `wrote ${out}: ${r.layers.length} layers (${changed.length} changed, ${r.layers.length - changed.length} unchanged)\n`,
        );
      }
      return 0;
    } finally {
      stop();
      await tuned.close();
      await base.close();
    }
  },
};

export default command;
