import type { CliCommand } from '../command.js';
import { parseCliArgs } from '../args.js';
import { convertModel, type TargetDType } from '../../tools/convert.js';
import { countProgress } from '../progress.js';
import { UserError } from '../../util/errors.js';
import { removeTempOnSignal } from '../../tools/output.js';

const usage = `Usage: sdstudio convert IN OUT.safetensors [--fp16|--bf16|--fp32] [--prune] [--no-vae]

The model converter: reads a .safetensors, .ckpt/.pt/.bin (state_dict unwrapped as A1111 does) or
diffusers folder and writes .safetensors, streaming tensor by tensor (memory stays at one tensor).
Values are kept exactly, or rounded to the target dtype; integer tensors are never changed.

  --fp16 | --bf16 | --fp32   round every float tensor to this dtype
  --prune                    drop EMA weights (model_ema.*), training state and known junk keys
  --no-vae                   drop the VAE (first_stage_model.*)
`;

const command: CliCommand = {
  name: 'convert',
  summary: 'convert a model to .safetensors (fp16/bf16/fp32, prune EMA and junk, drop VAE)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCliArgs(
      argv,
      {
        fp16: { type: 'boolean' },
        bf16: { type: 'boolean' },
        fp32: { type: 'boolean' },
        prune: { type: 'boolean' },
        'no-vae': { type: 'boolean' },
      },
      'convert',
    );
    if (positionals.length !== 2)
      throw new UserError('give IN and OUT.safetensors (see `sdstudio convert --help`)');
    const picked = (['fp16', 'bf16', 'fp32'] as const).filter((d) => values[d]);
    if (picked.length > 1)
      throw new UserError(
        `choose one of --fp16, --bf16, --fp32 (got ${picked.map((d) => '--' + d).join(' ')})`,
      );
    const [input, output] = positionals as [string, string];
    const stopCleanup = removeTempOnSignal(output);
    const r = await convertModel(input, output, {
      dtype: picked[0] as TargetDType | undefined,
      prune: values.prune,
      noVae: values['no-vae'],
      onProgress: countProgress('converting', 'tensors'),
    }).finally(stopCleanup);
    process.stdout.write(
      `wrote ${r.out}: ${r.tensors} tensors${r.dropped ? `, ${r.dropped} dropped` : ''}\n`,
    );
    return 0;
  },
};

export default command;
