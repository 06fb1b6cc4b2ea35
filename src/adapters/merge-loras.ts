/**
 * `sdstudio merge BASE --lora name:0.8 … --out merged.safetensors`: LoRAs baked into a checkpoint
 * (what kohya's merge_lora.py does; A1111's merger cannot). The weights are exactly those a
 * `<lora:name:te:unet>` tag gives at generation (adapters/lora.ts, A1111's semantics), written in
 * each tensor's own dtype, streaming: one tensor in memory at a time besides the patched ones.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { castFloats, float32ArrayToTensor } from '../formats/dtype.js';
import { openModel } from '../formats/open.js';
import { writeSafetensors } from '../formats/safetensors.js';
import type { Tensor } from '../formats/tensor.js';
import { checkOutputPath } from '../tools/output.js';
import { UserError } from '../util/errors.js';
import { activateLoras, listLoraFiles, resolveLoraTags, type LoraSpec } from './lora-library.js';

/** `name:m` or `name:te:unet` (name = a path, a file name or an alias). */
export function parseLoraArg(arg: string): { name: string; te: number; unet: number } {
  const parts = arg.split(':');
  // A Windows drive letter or a path with ':' is unlikely; numbers are the trailing parts.
  const nums: number[] = [];
  while (
    parts.length > 1 &&
    nums.length < 2 &&
    /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(parts[parts.length - 1]!)
  )
    nums.unshift(Number(parts.pop()));
  const name = parts.join(':');
  if (!name) throw new UserError(`--lora ${arg}: give NAME:MULTIPLIER, e.g. --lora detail_tweaker:0.8`);
  const te = nums[0] ?? 1;
  return { name, te, unet: nums[1] ?? te };
}

export interface MergeLorasOptions {
  /** Folders searched for names that are not paths (adapters/lora-library.ts loraDirs). */
  loraDirs: string[];
  warn?: (message: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export async function mergeLoras(
  basePath: string,
  loraArgs: readonly string[],
  outPath: string,
  opts: MergeLorasOptions,
): Promise<{ out: string; tensors: number; patched: number; loras: LoraSpec[] }> {
  const parsed = loraArgs.map(parseLoraArg);
  const files = await listLoraFiles(opts.loraDirs);
  const specs: LoraSpec[] = [];
  for (const p of parsed) {
    if (existsSync(p.name)) {
      specs.push({ name: p.name, path: resolve(p.name), te: p.te, unet: p.unet, dynDim: null });
      continue;
    }
    const found = resolveLoraTags([{ name: p.name, te: p.te, unet: p.unet, dynDim: null }], files);
    if (!found.length)
      throw new UserError(
        `--lora ${p.name}: no such file, and no LoRA of that name or alias in ${opts.loraDirs.join(', ')}`,
      );
    specs.push(...found);
  }
  const out = checkOutputPath(outPath, [basePath, ...specs.map((s) => s.path)]);
  const base = await openModel(basePath);
  try {
    const act = await activateLoras(base, specs, { warn: opts.warn });
    const src = act.source;
    const keys = base.keys();
    const infos = keys.map((k) => ({ ...base.info(k)!, name: k }));
    let done = 0;
    async function* tensors(): AsyncGenerator<[string, Tensor]> {
      for (const k of keys) {
        const dtype = base.info(k)!.dtype;
        const t =
          src.info(k)?.dtype === 'F32' && dtype !== 'F32'
            ? castFloats(float32ArrayToTensor(await src.readFloat32(k), [...base.info(k)!.shape]), dtype)
            : await src.read(k);
        yield [k, t];
        opts.onProgress?.(++done, keys.length);
      }
    }
    const metadata = {
      ...base.metadata,
      sdstudio_merged_loras: JSON.stringify(
        specs.map((s) => ({
          name: s.name,
          te: s.te,
          unet: s.unet,
          hash: act.applied.find((a) => a.spec === s)?.hash ?? '',
        })),
      ),
    };
    await writeSafetensors(out, tensors(), metadata, { infos });
    return { out, tensors: keys.length, patched: act.patchedTensors, loras: specs };
  } finally {
    await base.close();
  }
}
