/**
 * A full-size SD 1.5 checkpoint with random weights, written as an fp32 single-file
 * `.safetensors` with the ldm key layout of real SD 1.5 files, so the benchmark runs the engine
 * exactly as it runs a user's checkpoint (no download). Written once into a cache folder and
 * reused: the file name carries a version string that changes whenever the layout or the init does.
 *
 *   npx tsx bench/random-sd15.ts [--out PATH]   # write (or find) it and print its path
 */
import { existsSync, mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { writeSafetensors } from '../src/formats/safetensors.js';
import type { Tensor } from '../src/formats/tensor.js';
import { ddpmSchedule, ldmCheckpointLayout, SD15_ARCH, type LdmArch, type ParamSpec } from './ldm-layout.js';

/** Bump when the layout, the init or the generator changes: old cache files are then ignored. */
export const RANDOM_SD15_VERSION = 'v1';

/**
 * xoshiro128** (32-bit state, Math.imul only: fast in V8) seeded by splitmix32, with Box-Muller
 * normals. Each tensor gets its own stream seeded from its name, so the bytes of a tensor do not
 * depend on which others are written or in what order.
 */
export class NormalRng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  /** Uniform uint32. */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return r;
  }

  /** Fill `out` with mean + std * N(0, 1). */
  fillNormal(out: Float32Array, mean: number, std: number): void {
    const n = out.length;
    const twoPi = 2 * Math.PI;
    const inv = 1 / 4294967296;
    for (let i = 0; i < n; i += 2) {
      const u1 = (this.nextU32() + 1) * inv; // (0, 1]: log never sees 0
      const u2 = this.nextU32() * inv;
      const r = std * Math.sqrt(-2 * Math.log(u1));
      const a = twoPi * u2;
      out[i] = mean + r * Math.cos(a);
      if (i + 1 < n) out[i + 1] = mean + r * Math.sin(a);
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** FNV-1a of the tensor name mixed with the global seed. */
function tensorSeed(name: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The bytes of one tensor of the layout. */
export function makeTensor(spec: ParamSpec, seed: number, timesteps = 1000): Tensor {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const { init } = spec;
  if (init.kind === 'arange') {
    const data = new BigInt64Array(n);
    for (let i = 0; i < n; i++) data[i] = BigInt(i);
    return { dtype: spec.dtype, shape: spec.shape, data: new Uint8Array(data.buffer) };
  }
  const values = new Float32Array(n);
  if (init.kind === 'schedule') {
    values.set(ddpmSchedule(timesteps)[init.buffer]);
  } else {
    const rng = new NormalRng(tensorSeed(spec.name, seed));
    if (init.kind === 'weight') rng.fillNormal(values, 0, init.gain / Math.sqrt(init.fanIn));
    else rng.fillNormal(values, init.mean, init.std);
  }
  return { dtype: spec.dtype, shape: spec.shape, data: new Uint8Array(values.buffer) };
}

export interface WriteRandomOptions {
  seed?: number;
  /** Called after each tensor with bytes written so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Write a random checkpoint of `arch` to `path` (atomically: temp file renamed at the end). */
export async function writeRandomCheckpoint(
  path: string,
  arch: LdmArch,
  opts: WriteRandomOptions = {},
): Promise<void> {
  const seed = opts.seed ?? 0;
  const specs = ldmCheckpointLayout(arch);
  const bytesOf = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1) * (s.dtype === 'I64' ? 8 : 4);
  const total = specs.reduce((a, s) => a + bytesOf(s), 0);
  let done = 0;
  async function* tensors(): AsyncGenerator<[string, Tensor]> {
    for (const spec of specs) {
      yield [spec.name, makeTensor(spec, seed)];
      done += bytesOf(spec);
      opts.onProgress?.(done, total);
    }
  }
  await writeSafetensors(
    path,
    tensors(),
    { format: 'pt', generator: `sdstudio bench/random-sd15 ${RANDOM_SD15_VERSION} seed ${seed}` },
    { infos: specs.map((s) => ({ name: s.name, dtype: s.dtype, shape: s.shape })) },
  );
}

/** Where benchmark files are cached: $SDSTUDIO_BENCH_CACHE, else <tmpdir>/sdstudio-bench. */
export function benchCacheDir(): string {
  return process.env.SDSTUDIO_BENCH_CACHE ?? join(tmpdir(), 'sdstudio-bench');
}

/**
 * The path of the cached random SD 1.5 checkpoint, writing it first if it is not there yet
 * (~4.3 GB, about a minute on 2 cores). A half-written file is never picked up: the writer
 * renames its temp file into place only when complete.
 */
export async function ensureRandomSd15(
  opts: { dir?: string; seed?: number; log?: (msg: string) => void } = {},
): Promise<string> {
  const dir = opts.dir ?? benchCacheDir();
  const seed = opts.seed ?? 0;
  const path = join(dir, `random-sd15-${RANDOM_SD15_VERSION}-seed${seed}.safetensors`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const log = opts.log ?? ((m: string) => process.stderr.write(m));
  const t0 = performance.now();
  let lastPct = -1;
  await writeRandomCheckpoint(path, SD15_ARCH, {
    seed,
    onProgress: (done, total) => {
      const pct = Math.floor((100 * done) / total);
      if (pct !== lastPct && pct % 10 === 0) log(`random SD 1.5 checkpoint: ${pct}%\n`);
      lastPct = pct;
    },
  });
  const { size } = await stat(path);
  log(`wrote ${path} (${(size / 1e9).toFixed(2)} GB) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return path;
}

const isMain =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (isMain) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, seed: { type: 'string' } } });
  const seed = Number(values.seed ?? 0);
  if (values.out) {
    await writeRandomCheckpoint(values.out, SD15_ARCH, { seed });
    console.log(values.out);
  } else {
    console.log(await ensureRandomSd15({ seed }));
  }
}
