/**
 * The model converter: any model file in, `.safetensors` out, tensor by tensor. The output header
 * is computed from the input's names, dtypes and shapes first; then each tensor is read, cast and
 * written at its offset, so memory holds one tensor at a time whatever the file size.
 */
import { castFloats, convertTensor, isFloatDType } from '../formats/dtype.js';
import { openModel } from '../formats/open.js';
import { writeSafetensors } from '../formats/safetensors.js';
import type { DType, Tensor, TensorInfo, TensorSource } from '../formats/tensor.js';
import { isPrunedKey } from './keys.js';
import { checkOutputPath } from './output.js';

export type TargetDType = 'fp16' | 'bf16' | 'fp32';

export const TARGET_DTYPES: Record<TargetDType, DType> = { fp16: 'F16', bf16: 'BF16', fp32: 'F32' };

export interface ConvertOptions {
  /**
   * Round every float tensor to this dtype; integer tensors are never changed. Default: keep.
   * bf16 keeps the DDPM schedule buffers float32 (see SCHEDULE_BUFFERS).
   */
  dtype?: TargetDType;
  /** Drop EMA weights, training state and known junk keys. */
  prune?: boolean;
  /** Drop the VAE (`first_stage_model.*`). */
  noVae?: boolean;
  onProgress?: (done: number, total: number, name: string) => void;
}

export interface ConvertResult {
  tensors: number;
  dropped: number;
  out: string;
}

/** CLIP's position ids are integers; some merged files store them as floats. Keep them exact. */
function isPositionIds(name: string): boolean {
  return name.endsWith('embeddings.position_ids');
}

/**
 * ldm's DDPM schedule buffers (top level of an SD checkpoint). In bf16 (8 significant bits) the
 * early `alphas_cumprod` round to 1.0, which makes sigma min 0: a converted file could not generate
 * with its own schedule. They are a few KB, so a bf16 conversion keeps them float32.
 */
export const SCHEDULE_BUFFER_NAMES = [
  'betas',
  'alphas_cumprod',
  'alphas_cumprod_prev',
  'sqrt_alphas_cumprod',
  'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod',
  'sqrt_recip_alphas_cumprod',
  'sqrt_recipm1_alphas_cumprod',
  'posterior_variance',
  'posterior_log_variance_clipped',
  'posterior_mean_coef1',
  'posterior_mean_coef2',
] as const;
const SCHEDULE_BUFFERS: ReadonlySet<string> = new Set(SCHEDULE_BUFFER_NAMES);

export function isScheduleBuffer(name: string): boolean {
  return SCHEDULE_BUFFERS.has(name);
}

export function outputDType(name: string, dtype: DType, target: DType | undefined): DType {
  if (isPositionIds(name) && isFloatDType(dtype)) return 'I64';
  if (target === 'BF16' && isScheduleBuffer(name) && (dtype === 'F32' || dtype === 'F64')) return 'F32';
  if (target && isFloatDType(dtype)) return target;
  return dtype;
}

/** The tensors to write, in output form, given the options. */
export function convertPlan(
  source: TensorSource,
  opts: ConvertOptions,
): { infos: TensorInfo[]; dropped: number } {
  const target = opts.dtype ? TARGET_DTYPES[opts.dtype] : undefined;
  const infos: TensorInfo[] = [];
  let dropped = 0;
  for (const name of source.keys()) {
    if ((opts.prune && isPrunedKey(name)) || (opts.noVae && name.startsWith('first_stage_model.'))) {
      dropped++;
      continue;
    }
    const info = source.info(name)!;
    infos.push({ name, dtype: outputDType(name, info.dtype, target), shape: info.shape });
  }
  return { infos, dropped };
}

export function castTo(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  if (isFloatDType(t.dtype) && !isFloatDType(dtype)) {
    // position_ids stored as floats: round (not truncate) back to the integers they were.
    const values = convertTensor(t, 'F64');
    const f = new Float64Array(values.data.buffer, values.data.byteOffset, values.data.byteLength / 8);
    for (let i = 0; i < f.length; i++) f[i] = Math.round(f[i]!);
    return convertTensor(values, dtype);
  }
  return castFloats(t, dtype);
}

export async function convertModel(
  inPath: string,
  outPath: string,
  opts: ConvertOptions = {},
): Promise<ConvertResult> {
  const out = checkOutputPath(outPath, [inPath]);
  const source = await openModel(inPath);
  try {
    const { infos, dropped } = convertPlan(source, opts);
    const metadata = { ...source.metadata, format: 'pt' };
    async function* tensors(): AsyncGenerator<[string, Tensor]> {
      let done = 0;
      for (const info of infos) {
        const t = await source.read(info.name);
        yield [info.name, castTo(t, info.dtype)];
        opts.onProgress?.(++done, infos.length, info.name);
      }
    }
    await writeSafetensors(out, tensors(), metadata, { infos });
    return { tensors: infos.length, dropped, out };
  } finally {
    await source.close();
  }
}
