/**
 * A LoRA as the difference of two models, as kohya's `extract_lora_from_models.py` `svd()` makes
 * it: for every Linear / 1×1 conv of the UNet's transformers and ResNet blocks, the 3×3 convs of
 * ResNet blocks and down/upsamplers (with a conv rank), and the CLIP attention/MLP layers (only
 * when some text-encoder layer changed by more than `minDiff`): diff = B − A, top-r SVD,
 * up = U·diag(S), down = Vh, both clamped to the `clampQuantile` quantile of their signed values;
 * alpha = rank (scale 1); kohya key layout and `ss_*` metadata. Layer by layer: memory holds one
 * layer of each model plus the (small) factors.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { float32ArrayToTensor } from '../formats/dtype.js';
import { writeSafetensors } from '../formats/safetensors.js';
import type { Tensor, TensorSource } from '../formats/tensor.js';
import { hashFile } from '../tools/hash.js';
import { UserError } from '../util/errors.js';
import { topSvd } from './svd.js';

export interface ExtractOptions {
  /** Rank of Linear and 1×1 conv layers (kohya --dim). */
  dim: number;
  /** Rank of 3×3 convs (kohya --conv_dim); without it they are not extracted. */
  convDim?: number;
  clampQuantile?: number;
  minDiff?: number;
  saveDtype?: 'F32' | 'F16';
  /**
   * Per module, the down rows of a reference extraction: each component's sign is aligned to it
   * before clamping (SVD signs are arbitrary; tests compare with LAPACK's through this).
   */
  signReference?: (module: string) => Promise<Float32Array | undefined>;
  onProgress?: (done: number, total: number) => void;
}

export interface ExtractedLayer {
  module: string;
  weightKey: string;
  rank: number;
  /** ‖up·down − (B − A)‖ / ‖B − A‖ (0 when the layer did not change). */
  relError: number;
}

/** The kohya (diffusers-named) module of an ldm weight key, and what kind of layer it is. */
export function kohyaModuleOf(
  key: string,
): { module: string; kind: 'transformer' | 'resnet' | 'sampler' | 'te' } | undefined {
  let m =
    /^cond_stage_model\.transformer\.text_model\.encoder\.layers\.(\d+)\.(self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12])\.weight$/.exec(
      key,
    );
  if (m)
    return { module: `lora_te_text_model_encoder_layers_${m[1]}_${m[2]!.replace(/\./g, '_')}`, kind: 'te' };
  m = /^model\.diffusion_model\.(.+)\.weight$/.exec(key);
  if (!m) return undefined;
  const path = m[1]!;
  const attn =
    /^(?:input_blocks|middle_block|output_blocks)(?:\.(\d+))?\.1\.(proj_in|proj_out|transformer_blocks\.\d+\.(?:attn[12]\.(?:to_[qkv]|to_out\.0)|ff\.net\.(?:0\.proj|2)))$/;
  const res = /\.(in_layers\.2|out_layers\.3|emb_layers\.1|skip_connection)$/;
  const resName: Record<string, string> = {
    'in_layers.2': 'conv1',
    'out_layers.3': 'conv2',
    'emb_layers.1': 'time_emb_proj',
    skip_connection: 'conv_shortcut',
  };
  const name = (s: string) => 'lora_unet_' + s.replace(/\./g, '_');
  let x: RegExpExecArray | null;
  if ((x = /^input_blocks\.(\d+)\.1\.(.+)$/.exec(path)) && attn.test(path)) {
    const n = Number(x[1]) - 1;
    return {
      module: name(`down_blocks.${Math.floor(n / 3)}.attentions.${n % 3}.${x[2]}`),
      kind: 'transformer',
    };
  }
  if ((x = /^middle_block\.1\.(.+)$/.exec(path)) && attn.test(path))
    return { module: name(`mid_block.attentions.0.${x[1]}`), kind: 'transformer' };
  if ((x = /^output_blocks\.(\d+)\.1\.(.+)$/.exec(path)) && attn.test(path)) {
    const n = Number(x[1]);
    return {
      module: name(`up_blocks.${Math.floor(n / 3)}.attentions.${n % 3}.${x[2]}`),
      kind: 'transformer',
    };
  }
  if ((x = /^input_blocks\.(\d+)\.0\.(.+)$/.exec(path)) && res.test(path) && Number(x[1]) > 0) {
    const n = Number(x[1]) - 1;
    return {
      module: name(`down_blocks.${Math.floor(n / 3)}.resnets.${n % 3}.${resName[x[2]!]}`),
      kind: 'resnet',
    };
  }
  if ((x = /^middle_block\.([02])\.(.+)$/.exec(path)) && res.test(path))
    return { module: name(`mid_block.resnets.${Number(x[1]) / 2}.${resName[x[2]!]}`), kind: 'resnet' };
  if ((x = /^output_blocks\.(\d+)\.0\.(.+)$/.exec(path)) && res.test(path)) {
    const n = Number(x[1]);
    return {
      module: name(`up_blocks.${Math.floor(n / 3)}.resnets.${n % 3}.${resName[x[2]!]}`),
      kind: 'resnet',
    };
  }
  if ((x = /^input_blocks\.(\d+)\.0\.op$/.exec(path)))
    return { module: name(`down_blocks.${Number(x[1]) / 3 - 1}.downsamplers.0.conv`), kind: 'sampler' };
  if ((x = /^output_blocks\.(\d+)\.[12]\.conv$/.exec(path)))
    return { module: name(`up_blocks.${(Number(x[1]) - 2) / 3}.upsamplers.0.conv`), kind: 'sampler' };
  return undefined;
}

/** torch.quantile (linear interpolation) of the values. */
function quantile(values: Float32Array, q: number): number {
  const s = Float32Array.from(values).sort();
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, s.length - 1);
  return Math.fround(s[lo]! + (s[hi]! - s[lo]!) * (pos - lo));
}

interface Target {
  key: string;
  module: string;
  shape: number[];
  rank: number;
  te: boolean;
}

async function readLayer(src: TensorSource, key: string, what: string): Promise<Float32Array> {
  if (!src.has(key)) throw new UserError(`${what} has no ${key}: the two models must share one architecture`);
  return src.readFloat32(key);
}

/** Extract; returns the tensors in kohya's layout and a report per layer. */
export async function extractLora(
  tuned: TensorSource,
  base: TensorSource,
  opts: ExtractOptions,
): Promise<{ tensors: Map<string, Tensor>; metadata: Record<string, string>; layers: ExtractedLayer[] }> {
  const clampQ = opts.clampQuantile ?? 0.99;
  const minDiff = opts.minDiff ?? 0.01;
  const targets: Target[] = [];
  for (const key of base.keys()) {
    const k = kohyaModuleOf(key);
    if (!k) continue;
    const shape = base.info(key)!.shape;
    const is3x3 = shape.length === 4 && (shape[2] !== 1 || shape[3] !== 1);
    if (k.kind === 'sampler' && !is3x3) continue;
    // kohya adds ResnetBlock2D / Downsample2D / Upsample2D to its targets only with a conv rank.
    if ((k.kind === 'resnet' || k.kind === 'sampler') && !opts.convDim) continue;
    if (is3x3 && k.kind === 'transformer') continue;
    const rank = Math.min(is3x3 ? opts.convDim! : opts.dim, shape[0]!, shape[1]!);
    targets.push({ key, module: k.module, shape: [...shape], rank, te: k.kind === 'te' });
  }
  if (targets.length === 0)
    throw new UserError(`${base.path}: no layer of an SD 1.x UNet or text encoder found`);
  // The text encoder is left out when no layer of it changed by more than minDiff.
  let teDifferent = false;
  for (const t of targets.filter((x) => x.te)) {
    const a = await readLayer(base, t.key, 'the base model');
    const b = await readLayer(tuned, t.key, 'the tuned model');
    for (let i = 0; i < a.length; i++) if (Math.abs(Math.fround(b[i]! - a[i]!)) > minDiff) teDifferent = true;
    if (teDifferent) break;
  }
  const chosen = targets.filter((t) => !t.te || teDifferent);
  const tensors = new Map<string, Tensor>();
  const layers: ExtractedLayer[] = [];
  const dtype = opts.saveDtype ?? 'F32';
  let done = 0;
  for (const t of chosen) {
    const a = await readLayer(base, t.key, 'the base model');
    const b = await readLayer(tuned, t.key, 'the tuned model');
    const out = t.shape[0]!;
    const cols = a.length / out;
    const diff = new Float64Array(a.length);
    let diffNorm = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.fround(b[i]! - a[i]!);
      diff[i] = d;
      diffNorm += d * d;
    }
    const r = t.rank;
    const { U, S, Vh } = topSvd(diff, out, cols, r);
    const ref = opts.signReference ? await opts.signReference(t.module) : undefined;
    if (ref && ref.length === r * cols) {
      for (let j = 0; j < r; j++) {
        let dot = 0;
        for (let c = 0; c < cols; c++) dot += Vh[j * cols + c]! * ref[j * cols + c]!;
        if (dot < 0) {
          for (let c = 0; c < cols; c++) Vh[j * cols + c] = -Vh[j * cols + c]!;
          for (let i = 0; i < out; i++) U[i * r + j] = -U[i * r + j]!;
        }
      }
    }
    const up = new Float32Array(out * r);
    for (let i = 0; i < out; i++) for (let j = 0; j < r; j++) up[i * r + j] = U[i * r + j]! * S[j]!;
    const down = Float32Array.from(Vh);
    const all = new Float32Array(up.length + down.length);
    all.set(up);
    all.set(down, up.length);
    const hi = quantile(all, clampQ);
    const clamp = (x: number) => Math.min(Math.max(x, -hi), hi);
    for (let i = 0; i < up.length; i++) up[i] = clamp(up[i]!);
    for (let i = 0; i < down.length; i++) down[i] = clamp(down[i]!);
    let err = 0;
    for (let i = 0; i < out; i++)
      for (let c = 0; c < cols; c++) {
        let s = 0;
        for (let j = 0; j < r; j++) s += up[i * r + j]! * down[j * cols + c]!;
        err += (s - diff[i * cols + c]!) ** 2;
      }
    layers.push({
      module: t.module,
      weightKey: t.key,
      rank: r,
      relError: diffNorm > 0 ? Math.sqrt(err / diffNorm) : 0,
    });
    const conv = t.shape.length === 4;
    const upShape = conv ? [out, r, 1, 1] : [out, r];
    const downShape = conv ? [r, t.shape[1]!, t.shape[2]!, t.shape[3]!] : [r, t.shape[1]!];
    tensors.set(`${t.module}.lora_up.weight`, float32ArrayToTensor(up, upShape, dtype));
    tensors.set(`${t.module}.lora_down.weight`, float32ArrayToTensor(down, downShape, dtype));
    tensors.set(`${t.module}.alpha`, float32ArrayToTensor(new Float32Array([r]), [], dtype));
    opts.onProgress?.(++done, chosen.length);
  }
  const metadata: Record<string, string> = {
    ss_v2: 'False',
    ss_base_model_version: 'sd_v1',
    ss_network_module: 'networks.lora',
    ss_network_dim: String(opts.dim),
    ss_network_alpha: pyFloat(opts.dim),
  };
  if (opts.convDim)
    metadata.ss_network_args = pyDumps({
      conv_dim: String(opts.convDim),
      conv_alpha: pyFloat(opts.convDim),
    });
  return { tensors, metadata, layers };
}

/** Python's json.dumps of a flat string dict (", " and ": " separators, as kohya writes it). */
function pyDumps(o: Record<string, string>): string {
  return (
    '{' +
    Object.entries(o)
      .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
      .join(', ') +
    '}'
  );
}

function pyFloat(n: number): string {
  return Number.isInteger(n) ? `${n}.0` : String(n);
}

/** Write an extraction as kohya does: `ss_*` metadata plus the addnet and legacy hashes of that file. */
export async function writeExtractedLora(
  out: string,
  tensors: Map<string, Tensor>,
  metadata: Record<string, string>,
): Promise<void> {
  const tmp = `${out}.hashing-${process.pid}.safetensors`;
  try {
    await writeSafetensors(tmp, tensors, metadata);
    const h = await hashFile(tmp, { noCache: true });
    await writeSafetensors(out, tensors, {
      ...metadata,
      sshs_model_hash: h.addnet ?? createHash('sha256').digest('hex'),
      sshs_legacy_hash: h.legacy,
    });
  } finally {
    await rm(tmp, { force: true });
  }
}
