/**
 * The checkpoint merger, with A1111's semantics (modules/extras.py `run_modelmerger`):
 * - weighted sum: A·(1−M) + B·M; add difference: A + (B − C)·M; no interpolation: A alone
 *   (for --fp16 / --bake-vae / --discard);
 * - only keys containing "model" are merged, and only when B has them; CLIP's position_ids are
 *   never merged; keys only in B are not added; for add difference, a B key missing from C gets
 *   a zero difference;
 * - an inpainting (9-channel) or instruct-pix2pix (8-channel) A merged with a normal B mixes the
 *   first 4 input channels and keeps A's others; the other way round is refused, as A1111 does;
 * - --fp16 halves float32 merged tensors (and, with no interpolation, every float32 tensor; like
 *   A1111's `to_half`, BF16 and F64 are left as they are); --bake-vae
 *   replaces `first_stage_model.*` with a VAE file's tensors; --discard drops keys matching a regex;
 * - the output's metadata is the inputs' metadata (A, B, C in that order) plus the recipe as
 *   `sd_merge_recipe` / `sd_merge_models` JSON, as A1111 writes with its default options.
 * Arithmetic follows torch's dtype rules step by step (see `mergeValues`), so results match A1111
 * bit for bit for F32/F16/BF16 inputs, mixed ones included.
 * Streams: one tensor of each input in memory at a time.
 */
import { basename, extname } from 'node:path';
import {
  bf16BitsToFloat32,
  castFloats,
  float16BitsToFloat32,
  float32ArrayToTensor,
  float32ToBF16Bits,
  float32ToFloat16Bits,
  isFloatDType,
} from '../formats/dtype.js';
import { openModel } from '../formats/open.js';
import { writeSafetensors } from '../formats/safetensors.js';
import type { DType, Tensor, TensorInfo, TensorSource } from '../formats/tensor.js';
import { detectModel } from '../models/detect.js';
import { UserError } from '../util/errors.js';
import { hashFile } from './hash.js';
import { checkOutputPath } from './output.js';
import { pythonJson } from './python-json.js';

export type MergeMode = 'weighted-sum' | 'add-difference' | 'no-interp';
export const MERGE_MODES: readonly MergeMode[] = ['weighted-sum', 'add-difference', 'no-interp'];
const A1111_METHOD: Record<MergeMode, string> = {
  'weighted-sum': 'Weighted sum',
  'add-difference': 'Add difference',
  'no-interp': 'No interpolation',
};

/** A1111 `sd_models.checkpoint_dict_skip_on_merge`. */
const SKIP_ON_MERGE = new Set(['cond_stage_model.transformer.text_model.embeddings.position_ids']);

export interface MergeInputs {
  a: string;
  b?: string;
  c?: string;
}

export interface MergeOptions {
  mode: MergeMode;
  /** M, the multiplier. */
  alpha: number;
  fp16?: boolean;
  /** A VAE file whose tensors replace `first_stage_model.*`. */
  bakeVae?: string;
  /** Drop every output key this regex matches (searched, not anchored, like Python's re.search). */
  discard?: string;
  /** Hash cache folder (hashes go into the recipe). */
  cacheDir?: string;
  onProgress?: (done: number, total: number) => void;
  /** Hashing an input for the recipe (a full read of a multi-GB file when not cached). */
  onHashProgress?: (file: string, doneBytes: number, totalBytes: number) => void;
}

export interface MergeResult {
  out: string;
  tensors: number;
  isInpainting: boolean;
  isInstructPix2Pix: boolean;
  metadata: Record<string, string>;
}

/** How one output tensor is made. */
interface Step {
  info: TensorInfo;
  /** 'copy' A as is (maybe halved), 'merge' with B (and C), 'vae' from the baked VAE. */
  how: 'copy' | 'merge' | 'vae';
  /** For an inpainting/pix2pix A: merge only input channels 0..3. */
  partial?: boolean;
  vaeKey?: string;
}

const RANK: Partial<Record<DType, number>> = { F16: 1, BF16: 1, F32: 2, F64: 3 };

/** torch.promote_types over float dtypes (F16 with BF16 gives F32). */
function promote(...ds: DType[]): DType {
  let out = ds[0]!;
  for (const d of ds.slice(1)) {
    if (d === out) continue;
    const r = Math.max(RANK[out] ?? 2, RANK[d] ?? 2);
    out = r === 3 ? 'F64' : 'F32';
  }
  return out;
}

/** A1111's `to_half`: only float32 tensors become fp16 (F64 and BF16 are left as they are). */
const half = (d: DType): DType => (d === 'F32' ? 'F16' : d);

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function compileDiscard(re: string | undefined): RegExp | undefined {
  if (!re) return undefined;
  try {
    return new RegExp(re);
  } catch (e) {
    throw new UserError(`--discard: not a valid regular expression: ${(e as Error).message}`);
  }
}

/** "a lora file", "an embedding file", "an unrecognised file" (kind unknown). */
function kindPhrase(kind: string): string {
  if (kind === 'unknown') return 'an unrecognised file';
  return `${/^[aeiou]/.test(kind) ? 'an' : 'a'} ${kind} file`;
}

async function openCheckpoint(path: string, role: string): Promise<TensorSource> {
  const src = await openModel(path);
  const info = detectModel(src);
  if (info.kind !== 'checkpoint') {
    await src.close();
    throw new UserError(
      `model ${role} (${path}) is ${kindPhrase(info.kind)}, not a checkpoint; only checkpoints can be merged`,
    );
  }
  return src;
}

function mergePlan(
  a: TensorSource,
  b: TensorSource | undefined,
  c: TensorSource | undefined,
  vae: TensorSource | undefined,
  opts: MergeOptions,
): { steps: Step[]; inpainting: boolean; pix2pix: boolean } {
  const discard = compileDiscard(opts.discard);
  const steps: Step[] = [];
  let inpainting = false;
  let pix2pix = false;
  const vaeKeys = new Map<string, string>();
  if (vae) {
    for (const k of vae.keys()) vaeKeys.set('first_stage_model.' + k.replace(/^first_stage_model\./, ''), k);
  }
  for (const key of a.keys()) {
    if (discard?.test(key)) continue;
    const ai = a.info(key)!;
    const vaeKey = vaeKeys.get(key);
    if (vaeKey !== undefined) {
      const vi = vae!.info(vaeKey)!;
      steps.push({
        info: { name: key, dtype: opts.fp16 ? half(vi.dtype) : vi.dtype, shape: vi.shape },
        how: 'vae',
        vaeKey,
      });
      continue;
    }
    const bi = b?.info(key);
    const mergeable = opts.mode !== 'no-interp' && bi && key.includes('model') && !SKIP_ON_MERGE.has(key);
    if (!mergeable || !isFloatDType(ai.dtype) || !isFloatDType(bi.dtype)) {
      const dtype = opts.fp16 && opts.mode === 'no-interp' ? half(ai.dtype) : ai.dtype;
      steps.push({ info: { name: key, dtype, shape: ai.shape }, how: 'copy' });
      continue;
    }
    let partial = false;
    if (!sameShape(ai.shape, bi.shape)) {
      const rest = (s: number[]) => [s[0], ...s.slice(2)];
      if (
        ai.shape.length === 4 &&
        bi.shape.length === 4 &&
        sameShape(rest(ai.shape) as number[], rest(bi.shape) as number[])
      ) {
        if (ai.shape[1] === 4 && bi.shape[1] === 9) {
          throw new UserError(
            'when merging an inpainting model with a normal one, A must be the inpainting model',
          );
        }
        if (ai.shape[1] === 4 && bi.shape[1] === 8) {
          throw new UserError(
            'when merging an instruct-pix2pix model with a normal one, A must be the instruct-pix2pix model',
          );
        }
        if (ai.shape[1] === 8 && bi.shape[1] === 4) pix2pix = partial = true;
        else if (ai.shape[1] === 9 && bi.shape[1] === 4) inpainting = partial = true;
      }
      if (!partial) {
        throw new UserError(
          `cannot merge ${key}: A is ${JSON.stringify(ai.shape)} but B is ${JSON.stringify(bi.shape)} (different model sizes)`,
        );
      }
    }
    const dtypes = [ai.dtype, bi.dtype];
    if (opts.mode === 'add-difference') {
      const ci = c!.info(key);
      if (ci && !sameShape(ci.shape, bi.shape)) {
        throw new UserError(
          `cannot merge ${key}: B is ${JSON.stringify(bi.shape)} but C is ${JSON.stringify(ci.shape)}`,
        );
      }
      if (ci && isFloatDType(ci.dtype)) dtypes.push(ci.dtype);
    }
    // The channel-subset merge is written into A's tensor (`a[:, 0:4] = …`): it keeps A's dtype.
    const promoted = partial ? ai.dtype : promote(...dtypes);
    const dtype = opts.fp16 ? half(promoted) : promoted;
    steps.push({ info: { name: key, dtype, shape: ai.shape }, how: 'merge', partial });
  }
  return { steps, inpainting, pix2pix };
}

/** Round a value to a float dtype, as storing it in a tensor of that dtype does. */
export function rounder(d: DType): (x: number) => number {
  if (d === 'F16') return (x) => float16BitsToFloat32(float32ToFloat16Bits(x));
  if (d === 'BF16') return (x) => bf16BitsToFloat32(float32ToBF16Bits(x));
  if (d === 'F64') return (x) => x;
  return Math.fround;
}

/** Input dtypes of one merged tensor: they decide where torch rounds. */
export interface MergeDTypes {
  a: DType;
  b: DType;
  c?: DType;
}

/**
 * The merge arithmetic as torch evaluates A1111's expressions: `scalar * tensor` keeps the tensor's
 * dtype (computed in float32, then rounded to it), `tensor ± tensor` gives the promoted dtype.
 * Weighted sum: (1−M)·A + M·B; add difference: A + M·(B − C). Values come in as float32 (F64
 * inputs lose their extra precision first).
 */
export function mergeValues(
  mode: Exclude<MergeMode, 'no-interp'>,
  alpha: number,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array | undefined,
  dt: MergeDTypes = { a: 'F32', b: 'F32', c: 'F32' },
): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(a.length);
  const m = f(alpha);
  const ra = rounder(dt.a);
  const rb = rounder(dt.b);
  if (mode === 'weighted-sum') {
    const w0 = f(1 - alpha);
    const rsum = rounder(promote(dt.a, dt.b));
    for (let i = 0; i < a.length; i++) out[i] = rsum(f(ra(f(w0 * a[i]!)) + rb(f(m * b[i]!))));
  } else {
    // A1111 replaces a B key missing from C by torch.zeros_like(B): a zero difference in B's
    // dtype, so A comes out unchanged (only rounded to the promoted dtype).
    const dDiff = c && dt.c ? promote(dt.b, dt.c) : dt.b;
    const rdiff = rounder(dDiff);
    const rsum = rounder(promote(dt.a, dDiff));
    for (let i = 0; i < a.length; i++) {
      const d = c ? rdiff(f(b[i]! - c[i]!)) : 0;
      out[i] = rsum(f(a[i]! + rdiff(f(m * d))));
    }
  }
  return out;
}

/** Apply `mergeValues` to input channels 0..3 of a [O, Cin, kh, kw] A against a [O, 4, kh, kw] B. */
function mergeFirstChannels(
  mode: Exclude<MergeMode, 'no-interp'>,
  alpha: number,
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  c: Float32Array | undefined,
  dt: MergeDTypes,
): Float32Array {
  const [o, cin, kh, kw] = aShape as [number, number, number, number];
  const k = kh * kw;
  const out = Float32Array.from(a);
  for (let i = 0; i < o; i++) {
    const aOff = i * cin * k;
    const bOff = i * 4 * k;
    const merged = mergeValues(
      mode,
      alpha,
      a.subarray(aOff, aOff + 4 * k),
      b.subarray(bOff, bOff + 4 * k),
      c?.subarray(bOff, bOff + 4 * k),
      dt,
    );
    out.set(merged, aOff);
  }
  return out;
}

async function recipeMetadata(
  inputs: MergeInputs,
  sources: { a: TensorSource; b?: TensorSource; c?: TensorSource },
  opts: MergeOptions,
  outPath: string,
  flags: { inpainting: boolean; pix2pix: boolean },
): Promise<Record<string, string>> {
  const recipe: Record<string, unknown> = { type: 'webui' };
  const models: Record<string, unknown> = {};
  const roles: [string, string | undefined, TensorSource | undefined][] = [
    ['primary_model_hash', inputs.a, sources.a],
    ['secondary_model_hash', opts.mode === 'no-interp' ? undefined : inputs.b, sources.b],
    ['tertiary_model_hash', opts.mode === 'add-difference' ? inputs.c : undefined, sources.c],
  ];
  for (const [field, path, src] of roles) {
    if (!path || !src) {
      recipe[field] = null;
      continue;
    }
    const onProgress = opts.onHashProgress && ((d: number, t: number) => opts.onHashProgress!(path, d, t));
    const h = await hashFile(path, { cacheDir: opts.cacheDir, onProgress });
    recipe[field] = h.sha256;
    models[h.sha256] = {
      name: basename(path),
      legacy_hash: h.legacy,
      sd_merge_recipe: parseJsonField(src.metadata.sd_merge_recipe),
    };
    const parents = parseJsonField(src.metadata.sd_merge_models);
    if (parents && typeof parents === 'object' && !Array.isArray(parents)) Object.assign(models, parents);
  }
  Object.assign(recipe, {
    interp_method: A1111_METHOD[opts.mode],
    multiplier: { pyFloat: opts.alpha },
    save_as_half: opts.fp16 ?? false,
    custom_name: basename(outPath, extname(outPath)),
    config_source: 0,
    bake_in_vae: opts.bakeVae ? basename(opts.bakeVae) : 'None',
    discard_weights: opts.discard ?? '',
    is_inpainting: flags.inpainting,
    is_instruct_pix2pix: flags.pix2pix,
  });
  // A1111's defaults ("copy metadata fields", "add merge recipe"): the inputs' metadata (A, then B,
  // then C overriding), format "pt", then the recipe.
  return {
    ...sources.a.metadata,
    ...(opts.mode !== 'no-interp' ? sources.b?.metadata : undefined),
    ...(opts.mode === 'add-difference' ? sources.c?.metadata : undefined),
    format: 'pt',
    sd_merge_recipe: pythonJson(recipe),
    sd_merge_models: pythonJson(models),
  };
}

/** A metadata value A1111 would have parsed as JSON (it parses strings that look like objects). */
function parseJsonField(v: string | undefined): unknown {
  if (v === undefined) return null;
  if (v.startsWith('{')) {
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  }
  return v;
}

export async function mergeModels(
  inputs: MergeInputs,
  outPath: string,
  opts: MergeOptions,
): Promise<MergeResult> {
  if (!MERGE_MODES.includes(opts.mode)) {
    throw new UserError(`--mode must be one of ${MERGE_MODES.join(', ')}, not "${String(opts.mode)}"`);
  }
  if (!Number.isFinite(opts.alpha))
    throw new UserError('--alpha must be a number (the multiplier M, e.g. 0.3)');
  if (opts.mode !== 'no-interp' && !inputs.b)
    throw new UserError(`--mode ${opts.mode} needs a second model B`);
  if (opts.mode === 'add-difference' && !inputs.c)
    throw new UserError('--mode add-difference needs a third model C');
  compileDiscard(opts.discard);
  const used = [inputs.a, inputs.b, inputs.c, opts.bakeVae].filter((p): p is string => !!p);
  const out = checkOutputPath(outPath, used);

  const open: TensorSource[] = [];
  try {
    const a = await openCheckpoint(inputs.a, 'A');
    open.push(a);
    const b = opts.mode !== 'no-interp' ? await openCheckpoint(inputs.b!, 'B') : undefined;
    if (b) open.push(b);
    const c = opts.mode === 'add-difference' ? await openCheckpoint(inputs.c!, 'C') : undefined;
    if (c) open.push(c);
    checkCompatible([
      ['A', a],
      ['B', b],
      ['C', c],
    ]);
    let vae: TensorSource | undefined;
    if (opts.bakeVae) {
      vae = await openModel(opts.bakeVae);
      open.push(vae);
      const kind = detectModel(vae).kind;
      if (kind !== 'vae') throw new UserError(`--bake-vae ${opts.bakeVae} is ${kindPhrase(kind)}, not a VAE`);
    }

    const { steps, inpainting, pix2pix } = mergePlan(a, b, c, vae, opts);
    const metadata = await recipeMetadata(inputs, { a, b, c }, opts, out, { inpainting, pix2pix });
    const mode = opts.mode;
    async function* tensors(): AsyncGenerator<[string, Tensor]> {
      let done = 0;
      for (const s of steps) {
        yield [s.info.name, await makeTensor(s)];
        opts.onProgress?.(++done, steps.length);
      }
    }
    async function makeTensor(s: Step): Promise<Tensor> {
      if (s.how === 'vae') return castFloats(await vae!.read(s.vaeKey!), s.info.dtype);
      if (s.how === 'copy' || mode === 'no-interp')
        return castFloats(await a.read(s.info.name), s.info.dtype);
      const key = s.info.name;
      const av = await a.readFloat32(key);
      const bv = await b!.readFloat32(key);
      const cv = mode === 'add-difference' && c!.has(key) ? await c!.readFloat32(key) : undefined;
      const dt: MergeDTypes = {
        a: a.info(key)!.dtype,
        b: b!.info(key)!.dtype,
        c: cv ? c!.info(key)!.dtype : undefined,
      };
      const values = s.partial
        ? mergeFirstChannels(mode, opts.alpha, av, s.info.shape, bv, cv, dt)
        : mergeValues(mode, opts.alpha, av, bv, cv, dt);
      return float32ArrayToTensor(values, s.info.shape, s.info.dtype);
    }
    await writeSafetensors(out, tensors(), metadata, { infos: steps.map((s) => s.info) });
    return { out, tensors: steps.length, isInpainting: inpainting, isInstructPix2Pix: pix2pix, metadata };
  } finally {
    for (const s of open) await s.close();
  }
}

/** SD1 weights cannot be mixed with SDXL's (or SD2's): refuse before doing any work. */
function checkCompatible(models: [string, TensorSource | undefined][]): void {
  const archs = models
    .filter((m): m is [string, TensorSource] => !!m[1])
    .map(([role, src]) => [role, detectModel(src).architecture] as const);
  const [firstRole, firstArch] = archs[0]!;
  for (const [role, arch] of archs.slice(1)) {
    if (arch && firstArch && arch !== firstArch) {
      throw new UserError(
        `cannot merge model ${firstRole} (${firstArch}) with model ${role} (${arch}): different architectures`,
      );
    }
  }
}
