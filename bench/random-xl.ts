/**
 * Full-size SD 2.x 768-v and SDXL base checkpoints with random weights (bench/xl-layout.ts), written
 * once into the bench cache as people download them: SD 2.1 768-v as an fp32 single file (5.2 GB),
 * SDXL base as an fp16 single file (6.9 GB; every float tensor F16, position ids I64). The file name
 * carries a version that changes with the layout or the init, so an old file is never reused.
 *
 *   npx tsx bench/random-xl.ts sd2|sdxl   # write (or find) it and print its path
 */
import { existsSync, mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { float32ArrayToTensor } from '../src/formats/dtype.js';
import { writeSafetensors } from '../src/formats/safetensors.js';
import type { DType, Tensor } from '../src/formats/tensor.js';
import type { ParamSpec } from './ldm-layout.js';
import { benchCacheDir, makeTensor } from './random-sd15.js';
import { sd2CheckpointLayout, sdxlCheckpointLayout, SD2_768_ARCH, SDXL_BASE_ARCH } from './xl-layout.js';

/** Bump when a layout, the init or the writer changes. */
export const RANDOM_XL_VERSION = 'v1';

export type XlKind = 'sd2' | 'sdxl';

const numelOf = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1);

/** Write `specs` with random values (float tensors stored as `floatType`), atomically. */
export async function writeRandomSpecs(
  path: string,
  specs: ParamSpec[],
  opts: {
    seed?: number;
    floatType?: DType;
    generator?: string;
    onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<void> {
  const seed = opts.seed ?? 0;
  const floatType = opts.floatType ?? 'F32';
  const dtypeOf = (s: ParamSpec): DType => (s.dtype === 'F32' ? floatType : s.dtype);
  const bytesOf = (s: ParamSpec) => numelOf(s) * (dtypeOf(s) === 'I64' ? 8 : dtypeOf(s) === 'F16' ? 2 : 4);
  const total = specs.reduce((a, s) => a + bytesOf(s), 0);
  let done = 0;
  async function* tensors(): AsyncGenerator<[string, Tensor]> {
    for (const spec of specs) {
      let t = makeTensor(spec, seed);
      if (spec.dtype === 'F32' && floatType !== 'F32') {
        const f = new Float32Array(t.data.buffer, t.data.byteOffset, numelOf(spec));
        t = float32ArrayToTensor(f, spec.shape, floatType);
      }
      yield [spec.name, t];
      done += bytesOf(spec);
      opts.onProgress?.(done, total);
    }
  }
  await writeSafetensors(
    path,
    tensors(),
    {
      format: 'pt',
      generator: opts.generator ?? `sdstudio bench/random-xl ${RANDOM_XL_VERSION} seed ${seed}`,
    },
    { infos: specs.map((s) => ({ name: s.name, dtype: dtypeOf(s), shape: s.shape })) },
  );
}

const KINDS: Record<XlKind, { label: string; file: string; floatType: DType; specs: () => ParamSpec[] }> = {
  sd2: {
    label: 'SD 2.x 768-v',
    file: 'sd2-768-v',
    floatType: 'F32',
    specs: () => sd2CheckpointLayout(SD2_768_ARCH),
  },
  sdxl: {
    label: 'SDXL base',
    file: 'sdxl-base-fp16',
    floatType: 'F16',
    specs: () => sdxlCheckpointLayout(SDXL_BASE_ARCH),
  },
};

/**
 * The cached random checkpoint of `kind`, written first when missing (SD2 5.2 GB, SDXL 6.9 GB: a
 * few minutes on 2 cores, said on stderr). The writer renames its temp file into place only when
 * complete, so a half-written file is never picked up.
 */
export async function ensureRandomXl(
  kind: XlKind,
  opts: { dir?: string; seed?: number; log?: (msg: string) => void } = {},
): Promise<string> {
  const dir = opts.dir ?? benchCacheDir();
  const seed = opts.seed ?? 0;
  const k = KINDS[kind];
  const path = join(dir, `random-${k.file}-${RANDOM_XL_VERSION}-seed${seed}.safetensors`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const log = opts.log ?? ((m: string) => process.stderr.write(m));
  const specs = k.specs();
  log(`writing a random ${k.label} checkpoint once (${path}; a few minutes)\n`);
  const t0 = performance.now();
  let lastPct = -1;
  await writeRandomSpecs(path, specs, {
    seed,
    floatType: k.floatType,
    onProgress: (done, total) => {
      const pct = Math.floor((100 * done) / total);
      if (pct !== lastPct && pct % 10 === 0) log(`random ${k.label} checkpoint: ${pct}%\n`);
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
  const kind = process.argv[2];
  if (kind !== 'sd2' && kind !== 'sdxl') {
    process.stderr.write('usage: npx tsx bench/random-xl.ts sd2|sdxl\n');
    process.exit(2);
  }
  console.log(await ensureRandomXl(kind));
}
