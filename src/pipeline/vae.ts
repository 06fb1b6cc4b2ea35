/**
 * Between latents and pictures: decode a batch of latents to uint8 images the way A1111 does (one
 * image at a time, latent / scale_factor, truncating conversion), and encode images to init latents
 * (posterior sample with the image's own seeded noise, × scale_factor). Large images go tiled.
 */
import type { Sd1Model, TensorF32 } from '../runtime/sd1.js';
import { createGenerator, type RandomSource } from '../sampling/rng.js';
import { imageToTensor, tensorToImage, type RgbImage } from '../image/images.js';

/** Above this many latent pixels the VAE runs in tiles (512² image = 64² latent). */
const TILE_ABOVE_LATENT_PIXELS = 96 * 96;

type VaeEngine = Pick<Sd1Model, 'vaeDecode' | 'vaeEncode'>;

/** Raw decoder output [3, H, W] (about [-1, 1], not clamped) of each latent of the batch. */
export async function decodeLatentsRaw(
  engine: VaeEngine,
  latents: Float32Array,
  dims: readonly [number, number, number, number],
  scaleFactor: number,
): Promise<TensorF32[]> {
  const [b, c, h, w] = dims;
  const n = c * h * w;
  const out: TensorF32[] = [];
  for (let i = 0; i < b; i++) {
    const z = new Float32Array(n);
    for (let k = 0; k < n; k++) z[k] = latents[i * n + k]! / scaleFactor;
    out.push(await engine.vaeDecode({ data: z, dims: [1, c, h, w] }, h * w > TILE_ABOVE_LATENT_PIXELS));
  }
  return out;
}

export async function decodeLatents(
  engine: VaeEngine,
  latents: Float32Array,
  dims: readonly [number, number, number, number],
  scaleFactor: number,
): Promise<RgbImage[]> {
  const raw = await decodeLatentsRaw(engine, latents, dims, scaleFactor);
  return raw.map((t) => tensorToImage(t.data, t.dims[3]!, t.dims[2]!));
}

/**
 * One image → its scaled latent [C, h, w]. `seed` given: the posterior is sampled with noise from a
 * generator seeded with it (deterministic, the image's own noise); null: the posterior mean.
 */
export async function encodeImage(
  engine: VaeEngine,
  image: RgbImage | { data: Float32Array; width: number; height: number },
  scaleFactor: number,
  latentChannels: number,
  seed: number | null,
  source: RandomSource = 'GPU',
): Promise<Float32Array> {
  const { width, height } = image;
  const data = image.data instanceof Float32Array ? image.data : imageToTensor(image as RgbImage);
  const numel = latentChannels * (height / 8) * (width / 8);
  const noise = seed === null ? new Float32Array(numel) : createGenerator(source, seed).randn(numel);
  const post = await engine.vaeEncode(
    { data, dims: [1, 3, height, width] },
    { data: noise, dims: [1, latentChannels, height / 8, width / 8] },
    (height / 8) * (width / 8) > TILE_ABOVE_LATENT_PIXELS,
  );
  const out = new Float32Array(numel);
  for (let k = 0; k < numel; k++) out[k] = post.sample.data[k]! * scaleFactor;
  return out;
}
