/**
 * TAESD live previews: finding `taesd_decoder.safetensors` / `.pth` in the data folder, a session
 * over its graph (models/taesd.ts), and latents → preview images. A1111 keeps the file in
 * `models/VAE-taesd`; `models/VAE-approx` (where its "Approx NN" model lives) is also searched.
 * Without the file the pipeline falls back to the cheap linear preview.
 */
import { existsSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type ort from 'onnxruntime-node';
import { openModel } from '../formats/open.js';
import type { TensorSource } from '../formats/tensor.js';
import { buildTaesdDecoderGraph, TAESD_IO, taesdDecoderLayout } from '../models/taesd.js';
import { createSession, f32, runSession, type SessionOptions } from '../runtime/session.js';
import { prepareModel, removeEntry, type WeightsCacheOptions } from '../runtime/weights.js';
import { UserError } from '../util/errors.js';
import type { RgbImage } from '../image/images.js';
import type { PreviewMode } from './preview-mode.js';

export { previewModeOf, type PreviewMode } from './preview-mode.js';

/** Part of the weights-cache key: bump when the graph's meaning changes. */
const GRAPH_VERSION = 'taesd-1';

/** Folders under `<data-dir>/models` searched, in order. */
export const TAESD_DIRS = ['VAE-taesd', 'VAE-approx'] as const;
const EXTENSIONS = ['.safetensors', '.pth'] as const;
/** A TAESD decoder is ~5 MB in fp32; anything far larger is not one. */
const MAX_FILE_BYTES = 64 * 1024 ** 2;

/**
 * The TAESD decoder file under `<dataDir>/models` (`taesd_decoder` for SD 1.x/2.x; SDXL's is
 * `taesdxl_decoder`), or null when there is none. Symlinks are resolved (onnxruntime maps the
 * real file).
 */
export function findTaesdDecoder(dataDir: string, stem = 'taesd_decoder'): string | null {
  for (const dir of TAESD_DIRS) {
    for (const ext of EXTENSIONS) {
      const p = join(dataDir, 'models', dir, stem + ext);
      if (existsSync(p) && statSync(p).isFile()) return realpathSync(p);
    }
  }
  return null;
}

/** What the generation loop needs of a preview decoder. */
export interface PreviewDecoder {
  readonly latentChannels: number;
  /** Latents [B, C, h, w] as sampled → B preview images of 8w × 8h. */
  decode(latents: Float32Array, dims: readonly number[]): Promise<RgbImage[]>;
}

/** TAESD output (RGB in about [0, 1]) → 8-bit, as A1111: 255·clamp(x), truncated. */
export function taesdToImage(chw: Float32Array, width: number, height: number, offset = 0): RgbImage {
  const n = width * height;
  const data = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const v = chw[offset + c * n + i]!;
      data[i * 3 + c] = Math.trunc(255 * (v > 1 ? 1 : v > 0 ? v : 0)); // NaN → 0
    }
  }
  return { data, width, height };
}

export class TaesdDecoder implements PreviewDecoder {
  private released = false;

  private constructor(
    readonly path: string,
    readonly latentChannels: number,
    private readonly source: TensorSource,
    private readonly session: ort.InferenceSession,
    private readonly ephemeralEntry: string | undefined,
  ) {}

  /** Open a decoder file (any format `openModel` reads) and start its session. */
  static async load(path: string, opts: SessionOptions & WeightsCacheOptions = {}): Promise<TaesdDecoder> {
    const size = statSync(path).size;
    if (size > MAX_FILE_BYTES) {
      throw new UserError(
        `${path} is ${(size / 1024 ** 2).toFixed(0)} MB, too large for a TAESD decoder (about 5 MB); ` +
          'put taesd_decoder.safetensors from github.com/madebyollin/taesd there',
      );
    }
    const source = await openModel(path);
    try {
      const { latentChannels } = taesdDecoderLayout(source);
      const provider = opts.provider ?? 'cpu';
      const g = buildTaesdDecoderGraph(source, { contribOps: provider === 'cpu' || provider === 'cuda' });
      const prepared = await prepareModel(g, GRAPH_VERSION, opts);
      const session = await createSession(prepared, opts);
      const entry = prepared.ephemeral ? prepared.cacheEntry : undefined;
      return new TaesdDecoder(path, latentChannels, source, session, entry);
    } catch (e) {
      await source.close();
      throw e;
    }
  }

  /** The network's output as it is: RGB [B, 3, 8h, 8w] in about [0, 1]. */
  async decodeTensor(
    latents: Float32Array,
    dims: readonly number[],
  ): Promise<{ data: Float32Array; dims: number[] }> {
    if (this.released) throw new Error('this TAESD decoder has been released');
    const [b, c, h, w] = dims;
    if (dims.length !== 4 || c !== this.latentChannels || latents.length !== b! * c * h! * w!) {
      throw new UserError(
        `TAESD preview: latents [${dims.join(', ')}] (${latents.length} values) do not fit a decoder for ` +
          `${this.latentChannels} latent channels`,
      );
    }
    const out = await runSession(this.session, { [TAESD_IO.latent]: f32(latents, [...dims]) }, [
      TAESD_IO.image,
    ]);
    return out[TAESD_IO.image]!;
  }

  async decode(latents: Float32Array, dims: readonly number[]): Promise<RgbImage[]> {
    const img = await this.decodeTensor(latents, dims);
    const [b, , H, W] = img.dims as [number, number, number, number];
    return Array.from({ length: b }, (_, i) => taesdToImage(img.data, W, H, i * 3 * H * W));
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.session.release();
    await this.source.close();
    if (this.ephemeralEntry) await removeEntry(this.ephemeralEntry);
  }
}

/**
 * The preview decoder for a data folder: TAESD when `mode` is 'taesd' and the file is there,
 * otherwise null (the loop then uses the cheap preview). A file that is there but broken is
 * reported through `warn` and also falls back, so a preview never stops a generation.
 */
export async function loadPreviewDecoder(
  mode: PreviewMode,
  dataDir: string,
  opts: SessionOptions & WeightsCacheOptions & { warn?: (m: string) => void } = {},
): Promise<TaesdDecoder | null> {
  if (mode !== 'taesd') return null;
  const path = findTaesdDecoder(dataDir);
  if (!path) {
    opts.warn?.(
      `TAESD previews need taesd_decoder.safetensors in ${join(dataDir, 'models', TAESD_DIRS[0])}; ` +
        'using the cheap preview',
    );
    return null;
  }
  try {
    return await TaesdDecoder.load(path, opts);
  } catch (e) {
    opts.warn?.(`TAESD decoder ${path} could not be used (${(e as Error).message}); using the cheap preview`);
    return null;
  }
}
