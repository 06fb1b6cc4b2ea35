/**
 * Finding and loading what a generation needs: the checkpoint (by name in models/Stable-diffusion
 * or by path), an optional VAE swapped in (models/VAE, or "Automatic": a .vae.* file beside the
 * checkpoint), the CLIP tokenizer, the noise schedule from the checkpoint's own alphas_cumprod.
 */
import { basename, extname, join } from 'node:path';
import { openModel } from '../formats/open.js';
import { OverlaySource, type OverlayRoute } from '../formats/overlay.js';
import type { TensorSource } from '../formats/tensor.js';
import type { LowRankBranches } from '../runtime/tensors.js';
import { ClipTokenizer } from '../prompt/tokenizer.js';
import { readClipVocab, resolveClipVocab } from '../prompt/vocab.js';
import { sidecarPathFor } from '../models/detect-sidecar.js';
import { loadSd1, type Sd1Model } from '../runtime/sd1.js';
import type { Provider } from '../runtime/session.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../sampling/schedules.js';
import { hashFile } from '../tools/hash.js';
import type { LoraSpec } from '../adapters/lora-library.js';
import type { Embedding } from '../prompt/embeddings.js';
import { UserError } from '../util/errors.js';
import {
  checkPrecisionProvider,
  defaultPrecision,
  unetPrecisionOf,
  type UnetPrecisionChoice,
} from '../params/unet-precision.js';

const VAE_PREFIX = 'first_stage_model.';

export interface LoadedModel {
  engine: Sd1Model;
  /** Checkpoint file stem (A1111 "Model"). */
  name: string;
  path: string;
  /** First 10 hex of sha256 (A1111 "Model hash"); null when hashing was skipped. */
  hash: string | null;
  vae: { name: string; path: string; hash: string | null } | null;
  schedule: DiscreteSchedule;
  /** Latent scale of the family (0.18215 SD 1.x/2.x, 0.13025 SDXL; a sidecar's scale_factor wins). */
  scaleFactor: number;
  /** What the UNet predicts (SD2 768-v: 'v'); absent = 'eps'. The denoiser wraps it accordingly. */
  prediction?: 'eps' | 'v';
  /** 9-channel inpainting UNet. */
  inpainting: boolean;
  latentChannels: number;
  /** UNet arithmetic; 'int8' is recorded in the infotext ("UNet precision: int8"). */
  precision: UnetPrecisionChoice;
  tokenizer: ClipTokenizer;
  /** "Lora hashes" infotext value of the networks patched in (`loras`), if any. */
  loraHashes?: string | null;
  /** What applying them reported (unmatched keys, layers that failed): warned at every job. */
  loraWarnings?: readonly string[];
  /** Textual inversions bundled in those LoRA files (`bundle_emb.*`), registered for each job. */
  loraEmbeddings?: readonly Embedding[];
  release(): Promise<void>;
}

/** Where checkpoints go under a data dir (A1111 layout). */
export function checkpointDir(dataDir: string): string {
  return join(dataDir, 'models', 'Stable-diffusion');
}

const VAE_PART = /^first_stage_model\.(encoder|decoder|quant_conv|post_quant_conv)\./;

function isVaeKey(name: string): boolean {
  return VAE_PART.test(name);
}

/** The checkpoint with its first_stage_model.* tensors taken from a separate VAE file. */
class VaeOverlaySource extends OverlaySource {
  private readonly vaeKey = new Map<string, string>();

  constructor(
    base: TensorSource,
    private readonly vae: TensorSource,
  ) {
    super(base, {
      path: `${base.path}+${vae.path}`,
      format: base.format === 'safetensors' && vae.format === 'safetensors' ? 'safetensors' : 'memory',
      owns: [vae, base],
    });
    for (const k of vae.keys()) {
      const full = k.startsWith(VAE_PREFIX) ? k : VAE_PREFIX + k;
      if (isVaeKey(full)) this.vaeKey.set(full, k);
    }
    if (!this.vaeKey.has(`${VAE_PREFIX}decoder.mid.block_1.conv1.weight`)) {
      throw new UserError(
        `${vae.path} is not an SD VAE in the ldm layout (no decoder.mid.block_1.conv1.weight); ` +
          'use an A1111-style .safetensors/.pt VAE (diffusers VAEs: convert first)',
      );
    }
  }

  override keys(): string[] {
    const own = this.base.keys().filter((k) => !isVaeKey(k));
    return [...own, ...this.vaeKey.keys()];
  }
  /** Every VAE tensor comes from the VAE file: one it lacks is missing, never the checkpoint's own. */
  protected route(name: string): OverlayRoute {
    if (!isVaeKey(name)) return { source: this.base, key: name };
    return { source: this.vae, key: this.vaeKey.get(name) ?? `(not in ${this.vae.path}) ${name}` };
  }
}

export interface LoadModelOptions {
  /** `--prediction v|eps`: overrides the file, its sidecar and the SD2 probe (runtime/sd1.ts loadSd1). */
  prediction?: 'eps' | 'v';
  checkpoint: string;
  /** Tensors to use instead of opening `checkpoint` (merged or patched models); the model is then not hashed. */
  source?: TensorSource;
  vaePath?: string | null;
  provider?: Provider;
  cacheDir?: string;
  clipVocab?: string;
  /** Compute the A1111 model hash for the infotext (cached by path+size+mtime). Default true. */
  hash?: boolean;
  /**
   * UNet arithmetic (default: 'fp32' on the CPU provider, 'fp16' on GPU providers); 'int8' needs
   * the CPU provider, 'fp16' a GPU one.
   */
  unetPrecision?: UnetPrecisionChoice;
  /** Told about slow one-time work as it starts (optimising a new checkpoint's UNet). */
  onNotice?: (message: string) => void;
  /** LoRA / LyCORIS networks patched into the weights (adapters/: an overlay source over the checkpoint). */
  loras?: readonly LoraSpec[];
}

/**
 * The noise schedule's alphas_cumprod. A1111 uses the checkpoint's own buffer (so fp16 files get
 * their rounded one), which we follow where the buffer can hold it: float32/float64/float16, and
 * a usable schedule (non-increasing inside (0, 1)). A bf16 buffer rounds the first values to
 * 1.0 (sigma min 0), so then — and without a buffer — the schedule comes from SD's configuration
 * (scaled linear betas 0.00085…0.012 over 1000 steps), as other UIs compute it.
 */
export async function modelAlphasCumprod(source: TensorSource): Promise<Float32Array> {
  const info = source.info('alphas_cumprod');
  if (info && ['F32', 'F64', 'F16'].includes(info.dtype) && info.shape.length === 1 && info.shape[0]! > 1) {
    const stored = await source.readFloat32('alphas_cumprod');
    let usable = stored[0]! < 1 && stored[stored.length - 1]! > 0;
    for (let i = 1; usable && i < stored.length; i++) usable = stored[i]! <= stored[i - 1]!;
    if (usable) return stored;
  }
  return sdAlphasCumprod();
}

export async function loadModel(opts: LoadModelOptions): Promise<LoadedModel> {
  // Checked at run time too: API callers may pass any string.
  const precision = unetPrecisionOf(opts.unetPrecision ?? defaultPrecision(opts.provider), 'unetPrecision');
  checkPrecisionProvider(precision, opts.provider);
  const vocabSource = await resolveClipVocab({ explicitPath: opts.clipVocab, modelPath: opts.checkpoint });
  const tokenizer = new ClipTokenizer(readClipVocab(vocabSource));
  const base = opts.source ?? (await openModel(opts.checkpoint));
  let source: TensorSource = base;
  let vaeSource: TensorSource | null = null;
  try {
    if (opts.vaePath) {
      vaeSource = await openModel(opts.vaePath);
      source = new VaeOverlaySource(base, vaeSource);
    }
    const unpatched = source;
    let loraHashes: string | null = null;
    const loraWarnings: string[] = [];
    let loraEmbeddings: Embedding[] = [];
    let lowRankBranches: LowRankBranches | undefined;
    if (opts.loras?.length) {
      const { activateLoras } = await import('../adapters/lora-library.js');
      const { BRANCH_PREFIXES } = await import('../adapters/lora-branches.js');
      const act = await activateLoras(source, opts.loras, {
        warn: (m) => loraWarnings.push(m),
        // Plain LoRA layers become graph branches (adapters/lora-branches.ts). With the int8 UNet
        // everything stays patched (the UNet quantizes the patched weights), so its image equals
        // the merged checkpoint's bit for bit.
        branchPrefixes: precision === 'int8' ? [] : [BRANCH_PREFIXES.unet, BRANCH_PREFIXES.text],
      });
      source = act.source;
      if (act.branches.size > 0) lowRankBranches = act.branches;
      loraHashes = act.loraHashes ?? null;
      loraEmbeddings = act.embeddings;
    }
    const alphas = await modelAlphasCumprod(source);
    const engine = await loadSd1(source, {
      provider: opts.provider,
      cacheDir: opts.cacheDir,
      unetPrecision: precision,
      lowRankBranches,
      prediction: opts.prediction,
      // The sidecar of the checkpoint itself (the source may be a VAE overlay or merged tensors).
      yamlPath: opts.checkpoint ? sidecarPathFor(opts.checkpoint) : undefined,
      onNotice: opts.onNotice,
    });
    const wantHash = opts.hash !== false;
    const hash = wantHash && !opts.source ? (await hashFile(opts.checkpoint)).autov2 : null;
    const vaeHash = opts.vaePath && wantHash ? (await hashFile(opts.vaePath)).autov2 : null;
    const name = basename(opts.checkpoint, extname(opts.checkpoint));
    const inChannels = engine.config.unet.inChannels;
    return {
      engine,
      name,
      path: opts.checkpoint,
      hash,
      vae: opts.vaePath ? { name: basename(opts.vaePath), path: opts.vaePath, hash: vaeHash } : null,
      schedule: new DiscreteSchedule(alphas),
      scaleFactor: engine.scaleFactor,
      prediction: engine.prediction,
      inpainting: inChannels === 9,
      latentChannels: engine.config.unet.outChannels,
      precision,
      tokenizer,
      loraHashes,
      loraWarnings,
      loraEmbeddings,
      async release() {
        await engine.release();
        if (source !== unpatched) await source.close();
        await unpatched.close();
      },
    };
  } catch (e) {
    await base.close().catch(() => undefined);
    await vaeSource?.close().catch(() => undefined);
    throw e;
  }
}
