import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import type { CliCommand } from '../command.js';
import { MERGE_MODES, mergeModels, type MergeMode } from '../../tools/merge.js';
import { byteProgress, countProgress } from '../progress.js';
import { UserError } from '../../util/errors.js';
import { removeTempOnSignal } from '../../tools/output.js';

const usage = `Usage: sdstudio merge A [B [C]] --mode weighted-sum|add-difference|no-interp --alpha M --out OUT.safetensors
                      [--fp16] [--bake-vae VAE] [--discard REGEX]

A1111's checkpoint merger:
  weighted-sum     A·(1−M) + B·M
  add-difference   A + (B − C)·M
  no-interp        A alone (to halve it, bake a VAE in, or discard keys)
An inpainting or instruct-pix2pix model must be A; its extra input channels are kept. SD1, SD2
and SDXL models cannot be mixed. The recipe (with the inputs' hashes) goes into the output's
metadata as sd_merge_recipe / sd_merge_models, as A1111 writes it.

  --fp16            save float32 merged tensors as fp16 (all float32 ones with no-interp), as A1111
  --bake-vae VAE    replace the VAE with this VAE file's weights
  --discard REGEX   drop every key the regular expression matches (e.g. '^model_ema\\.')

LoRAs baked into a checkpoint (as kohya's merge script does; the same weights a <lora:…> tag gives):
  sdstudio merge BASE --lora NAME:M [--lora NAME:TE:UNET …] --out OUT.safetensors [--lora-dir DIR]
  NAME is a file, or a file name / ss_output_name in --lora-dir (default models/Lora) and models/LyCORIS
`;

const command: CliCommand = {
  name: 'merge',
  summary: "merge checkpoints as A1111's checkpoint merger does (weighted sum, add difference)",
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        mode: { type: 'string', default: 'weighted-sum' },
        alpha: { type: 'string' },
        out: { type: 'string' },
        fp16: { type: 'boolean' },
        'bake-vae': { type: 'string' },
        discard: { type: 'string' },
        lora: { type: 'string', multiple: true },
        'lora-dir': { type: 'string' },
        'data-dir': { type: 'string' },
      },
    });
    if (values.lora?.length) {
      if (!values.out) throw new UserError('--out OUT.safetensors is required');
      if (positionals.length !== 1)
        throw new UserError(
          `--lora bakes LoRAs into one model: give BASE only, got ${positionals.length} models`,
        );
      const { mergeLoras } = await import('../../adapters/merge-loras.js');
      const { loraDirs } = await import('../../adapters/lora-library.js');
      const stopLoraCleanup = removeTempOnSignal(values.out);
      const r = await mergeLoras(positionals[0]!, values.lora, values.out, {
        loraDirs: loraDirs(values['data-dir'] ?? '.', values['lora-dir']),
        warn: (m) => process.stderr.write(`warning: ${m}\n`),
        onProgress: countProgress('merging', 'tensors'),
      }).finally(stopLoraCleanup);
      process.stdout.write(
        `wrote ${r.out}: ${r.tensors} tensors, ${r.patched} patched by ${r.loras.length} LoRA(s)\n`,
      );
      return 0;
    }
    const mode = values.mode as MergeMode;
    if (!MERGE_MODES.includes(mode))
      throw new UserError(`--mode must be one of ${MERGE_MODES.join(', ')}, not "${values.mode}"`);
    if (!values.out) throw new UserError('--out OUT.safetensors is required');
    const need = mode === 'add-difference' ? 3 : mode === 'weighted-sum' ? 2 : 1;
    // No interpolation uses A only; like A1111 it ignores a B or C given anyway.
    const ok =
      mode === 'no-interp' ? positionals.length >= 1 && positionals.length <= 3 : positionals.length === need;
    if (!ok) {
      throw new UserError(
        `--mode ${mode} takes ${need} model${need > 1 ? 's' : ''} (${['A', 'B', 'C'].slice(0, need).join(' ')}), got ${positionals.length}`,
      );
    }
    let alpha = 0;
    if (mode !== 'no-interp') {
      if (values.alpha === undefined) throw new UserError('--alpha M is required (the multiplier, e.g. 0.3)');
      alpha = Number(values.alpha);
      if (values.alpha.trim() === '' || !Number.isFinite(alpha))
        throw new UserError(`--alpha must be a number, not "${values.alpha}"`);
    }
    const [a, b, c] = positionals;
    let hashing: { file: string; report: (done: number, total: number) => void } | undefined;
    const stopCleanup = removeTempOnSignal(values.out);
    const r = await mergeModels({ a: a!, b, c }, values.out, {
      mode,
      alpha,
      fp16: values.fp16,
      bakeVae: values['bake-vae'],
      discard: values.discard,
      // Inputs are hashed for the recipe first: seconds per GB unless cached.
      onHashProgress: (file, done, total) => {
        if (hashing?.file !== file) hashing = { file, report: byteProgress(`hashing ${basename(file)}`) };
        hashing.report(done, total);
      },
      onProgress: countProgress('merging', 'tensors'),
    }).finally(stopCleanup);
    const tags = [r.isInpainting ? 'inpainting' : '', r.isInstructPix2Pix ? 'instruct-pix2pix' : ''].filter(
      Boolean,
    );
    process.stdout.write(
      `wrote ${r.out}: ${r.tensors} tensors${tags.length ? ` (${tags.join(', ')})` : ''}\n`,
    );
    return 0;
  },
};

export default command;
