/**
 * The SD 2.x and SDXL probes of `npm run bench` (issue 16, "Speed and memory"), on the random
 * full-size checkpoints of bench/random-xl.ts (or --sd2-checkpoint / --sdxl-checkpoint):
 *
 *   unet768sd2      SD 2.x 768² v UNet, batch 2, s/step, against the fp32 GEMM floor of its graph
 *   unet1024xl      SDXL 1024² UNet, batch 2, fp32, against its floor
 *   unet1024xlint8  the same with --precision int8, against its floor (int8 GEMM rate for the int8 products)
 *   xlquality       int8 vs fp32 PSNR of one SDXL UNet output (1024², batch 2)
 *   xlpipeline      peak RSS of a 1024² SDXL txt2img through the product (loadModel + generate), fp32
 *   xlpipelineint8  the same with the int8 UNet
 *   xlload          first load of the SDXL checkpoint into an empty weights cache (conversion and UNet
 *                   optimisation included), then a later load; the notices the product prints
 *
 * Floors: FLOPs counted from the built ONNX graph (bench/flops.ts) ÷ the GEMM rate measured right
 * after the runs (fp32: 2048³ MatMul chain; int8: the same chain as DynamicQuantizeLinear +
 * MatMulIntegerToFloat, the int8 UNet's form).
 */
import { availableParallelism } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { openModel } from '../src/formats/open.js';
import { diffusionConfigFromSource } from '../src/models/family.js';
import { sidecarPathFor } from '../src/models/detect-sidecar.js';
import { buildUNetGraph, UNET_IO, type UNetPrecision } from '../src/models/unet.js';
import { OnnxDataType } from '../src/onnx/proto.js';
import { Int8WeightSource, int8WeightLimit } from '../src/runtime/quantize.js';
import { loadSd1, type Sd1Model, type TensorF32 } from '../src/runtime/sd1.js';
import { floatModel, init, lcg, type Node } from './experiments/tiny-models.js';
import { countGraphFlops, type FlopCount } from './flops.js';
import { median, peakRssMb, rssBreakdownMb, timed } from './measure.js';
import { measureRuns, noise, probeGemm, psnr, type ProbeOptions, type RunStats } from './probes.js';
import { benchCacheDir } from './random-sd15.js';
import { ensureRandomXl } from './random-xl.js';

export const XL_PROBES = [
  'unet768sd2',
  'unet1024xl',
  'unet1024xlint8',
  'xlquality',
  'xlpipeline',
  'xlpipelineint8',
  'xlload',
] as const;
export type XlProbeName = (typeof XL_PROBES)[number];
export const isXlProbe = (p: string): p is XlProbeName => (XL_PROBES as readonly string[]).includes(p);

/** Issue 16's targets. */
export const XL_TARGETS = {
  xl_fp32_over_floor: 1.2,
  xl_int8_speedup: 1.8,
  xl_int8_psnr_db: 30,
  xl_pipeline_peak_rss_mb_fp32: 16 * 1024,
  xl_pipeline_peak_rss_mb_int8: 7 * 1024,
  xl_first_load_s: 120,
  xl_later_load_s: 15,
} as const;

export interface XlSettings {
  sd2Checkpoint: string;
  sdxlCheckpoint: string;
  steps: number;
  clipVocab: string | undefined;
  /** SDXL latent side (default 128 = 1024²; SD 2.x gets ¾ of it = 768²); smaller only to test the probes quickly. */
  xlLatent?: number;
}

const log = (msg: string) => process.stderr.write(`  ${msg}\n`);

/** The checkpoints the chosen probes need: the given ones, else the random full-size ones (written once). */
export async function xlCheckpoints(
  only: readonly string[],
  given: { sd2?: string; sdxl?: string },
): Promise<{ sd2: string; sdxl: string }> {
  const needSd2 = only.includes('unet768sd2');
  const needXl = only.some((p) => isXlProbe(p) && p !== 'unet768sd2');
  return {
    sd2: given.sd2 ?? (needSd2 ? await ensureRandomXl('sd2') : ''),
    sdxl: given.sdxl ?? (needXl ? await ensureRandomXl('sdxl') : ''),
  };
}

export interface XlUNetResult extends RunStats {
  probe: string;
  create_s: number;
  peak_rss_mb: number;
  rss_at_end?: { anon_mb: number; file_mb: number };
  /** GFLOP of one step counted from the built graph: direct convolutions (the floor's count) and as run (Winograd). */
  gflop: FlopCount;
  gflop_as_run: FlopCount;
  /** GEMM rates right after the runs, GFLOP/s. */
  gemm_gflops: number;
  gemm_int8_gflops?: number;
  /** The floor: fp32 FLOPs ÷ fp32 rate (+ int8 FLOPs ÷ int8 rate). */
  floor_s: number;
}

interface UNetShape {
  batch: number;
  h: number;
  w: number;
}

function unetInputs(
  model: Sd1Model,
  s: UNetShape,
): { x: TensorF32; t: TensorF32; context: TensorF32; y?: TensorF32 } {
  const u = model.config.unet;
  const inp = {
    x: { data: noise(s.batch * u.inChannels * s.h * s.w, 1), dims: [s.batch, u.inChannels, s.h, s.w] },
    t: { data: new Float32Array(s.batch).fill(500), dims: [s.batch] },
    context: { data: noise(s.batch * 77 * u.contextDim, 2), dims: [s.batch, 77, u.contextDim] },
  };
  return u.admInChannels
    ? { ...inp, y: { data: noise(s.batch * u.admInChannels, 3), dims: [s.batch, u.admInChannels] } }
    : inp;
}

const gflop = (c: FlopCount): FlopCount =>
  Object.fromEntries(
    Object.entries(c).map(([k, v]) => [k, Math.round(v / 1e7) / 100]),
  ) as unknown as FlopCount;

/** FLOPs of the UNet graph the engine builds for `path` at shape `s` (weights' headers only are read). */
export async function countUNetFlops(
  path: string,
  s: UNetShape,
  opts: { precision?: UNetPrecision; winogradLevels?: number; prediction?: 'v' | 'eps' } = {},
): Promise<FlopCount> {
  const src = await openModel(path);
  try {
    const { config } = diffusionConfigFromSource(src, {
      yamlPath: sidecarPathFor(path),
      prediction: opts.prediction,
    });
    const u = config.unet;
    const int8 = opts.precision === 'int8';
    const g = buildUNetGraph(int8 ? new Int8WeightSource(src, int8WeightLimit()) : src, u, {
      prefix: config.prefixes.unet,
      precision: opts.precision,
      winogradLevels: opts.winogradLevels,
    });
    const inputs: Record<string, number[]> = {
      [UNET_IO.x]: [s.batch, u.inChannels, s.h, s.w],
      [UNET_IO.t]: [s.batch],
      [UNET_IO.context]: [s.batch, 77, u.contextDim],
    };
    if (u.admInChannels) inputs[UNET_IO.y] = [s.batch, u.admInChannels];
    return countGraphFlops(g, inputs);
  } finally {
    await src.close();
  }
}

const GEMM_N = 2048;
const GEMM_LAYERS = 4;

/** The int8 GEMM rate now: a 2048³ chain of DynamicQuantizeLinear + MatMulIntegerToFloat (int8 weights per column). */
export async function int8GemmRate(threads?: number): Promise<number> {
  const n = GEMM_N;
  const nodes: Node[] = [];
  const inits = [];
  let x = 'a';
  for (let l = 0; l < GEMM_LAYERS; l++) {
    const y = l === GEMM_LAYERS - 1 ? 'y' : `h${l}`;
    const q = new Int8Array(n * n);
    const w = lcg(n * n, 7 + l, 1);
    for (let i = 0; i < q.length; i++) q[i] = Math.round(w[i]! * 127);
    inits.push(
      init(`w${l}`, OnnxDataType.INT8, [n, n], q),
      init(`s${l}`, OnnxDataType.FLOAT, [n], new Float32Array(n).fill(1 / (127 * Math.sqrt(n)))),
      init(`z${l}`, OnnxDataType.INT8, [n], new Int8Array(n)),
    );
    nodes.push(
      {
        opType: 'DynamicQuantizeLinear',
        input: [x],
        output: [`q${l}`, `qs${l}`, `qz${l}`],
        name: `dq${l}`,
        attribute: [],
      },
      {
        opType: 'MatMulIntegerToFloat',
        domain: 'com.microsoft',
        input: [`q${l}`, `w${l}`, `qs${l}`, `s${l}`, `qz${l}`, `z${l}`],
        output: [y],
        name: `mm${l}`,
        attribute: [],
      },
    );
    x = y;
  }
  const session = await ort.InferenceSession.create(floatModel(nodes, inits, ['a', [n, n]], ['y', [n, n]]), {
    intraOpNumThreads: threads ?? availableParallelism(),
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  try {
    const a = new ort.Tensor('float32', lcg(n * n, 3), [n, n]);
    for (let i = 0; i < 2; i++) await session.run({ a });
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) runs.push((await timed(() => session.run({ a }))).wall_s);
    return (2 * GEMM_LAYERS * n ** 3) / median(runs) / 1e9;
  } finally {
    await session.release();
  }
}

/** One UNet at `s`, timed as the SD1 probes time theirs, with its floor. */
async function probeXlUNet(
  label: string,
  path: string,
  opts: ProbeOptions,
  s: UNetShape,
  extra: { precision?: UNetPrecision; prediction?: 'v' | 'eps' } = {},
): Promise<XlUNetResult> {
  const c = await timed(async () => {
    const model = await loadSd1(path, {
      threads: opts.threads,
      unetPrecision: extra.precision,
      prediction: extra.prediction,
      onNotice: (m) => log(`${label}: ${m}`),
    });
    await model.open(['unet']);
    return model;
  });
  const model = c.value;
  log(`${label}: UNet session created in ${c.wall_s.toFixed(1)} s`);
  let stats: RunStats;
  try {
    const inp = unetInputs(model, s);
    stats = await measureRuns(label, opts, () => model.unet(inp));
  } finally {
    await model.release();
  }
  const peak_rss_mb = peakRssMb();
  const rss_at_end = rssBreakdownMb();
  const gemm_gflops = (await probeGemm(opts)).gflops;
  const int8 = extra.precision === 'int8';
  const gemm_int8_gflops = int8 ? await int8GemmRate(opts.threads) : undefined;
  // The floor's count: the graph with direct 3×3 convolutions (as SD 1.5's 1607 GFLOP was counted);
  // the int8 graph has no Winograd form. `as run`: the engine's own graph (Winograd at the top levels).
  const count = await countUNetFlops(path, s, { ...extra, winogradLevels: 0 });
  const asRun = int8 ? count : await countUNetFlops(path, s, extra);
  const floor_s =
    (count.total - count.int8) / (gemm_gflops * 1e9) + count.int8 / ((gemm_int8_gflops ?? 1) * 1e9);
  log(
    `${label}: ${stats.median_s.toFixed(2)} s/step; ${(count.total / 1e9).toFixed(0)} GFLOP; fp32 GEMM ${gemm_gflops.toFixed(0)}` +
      `${int8 ? `, int8 GEMM ${gemm_int8_gflops!.toFixed(0)}` : ''} GFLOP/s → floor ${floor_s.toFixed(2)} s`,
  );
  return {
    probe: label,
    create_s: c.wall_s,
    ...stats,
    peak_rss_mb,
    rss_at_end,
    gflop: gflop(count),
    gflop_as_run: gflop(asRun),
    gemm_gflops,
    gemm_int8_gflops,
    floor_s,
  };
}

export interface XlQualityResult {
  probe: string;
  psnr_db: number;
  peak_rss_mb: number;
}

/** int8 vs fp32: PSNR of one SDXL UNet output on the same inputs (peak = max |fp32 output|). */
async function probeXlQuality(path: string, opts: ProbeOptions, s: UNetShape): Promise<XlQualityResult> {
  const once = async (precision: UNetPrecision) => {
    const model = await loadSd1(path, { threads: opts.threads, unetPrecision: precision });
    try {
      const out = await model.unet(unetInputs(model, s));
      log(`xl quality: ${precision} UNet output computed`);
      return out.data;
    } finally {
      await model.release();
    }
  };
  const ref = await once('fp32');
  const q = await once('int8');
  let peak = 0;
  for (const v of ref) peak = Math.max(peak, Math.abs(v));
  const psnr_db = psnr(q, ref, peak);
  log(`xl quality: int8 vs fp32 ${psnr_db.toFixed(2)} dB`);
  return {
    probe: `int8 vs fp32 SDXL UNet output, ${8 * s.w}² b${s.batch}`,
    psnr_db,
    peak_rss_mb: peakRssMb(),
  };
}

export interface XlPipelineResult {
  probe: string;
  precision: UNetPrecision;
  steps: number;
  total_s: number;
  peak_rss_mb: number;
  rss_at_end?: { anon_mb: number; file_mb: number };
}

/** The product's 1024² txt2img (loadModel + generate, Euler, CFG) on the SDXL checkpoint, for its peak RSS. */
async function probeXlPipeline(
  path: string,
  precision: 'fp32' | 'int8',
  settings: XlSettings,
): Promise<XlPipelineResult> {
  if (!settings.clipVocab) throw new Error('the xlpipeline probes need the CLIP vocabulary (--clip-vocab)');
  const { loadModel } = await import('../src/pipeline/model.js');
  const { generate } = await import('../src/pipeline/generate.js');
  const { defaultParams } = await import('../src/params/generation.js');
  const t0 = performance.now();
  const model = await loadModel({
    checkpoint: path,
    clipVocab: settings.clipVocab,
    hash: false,
    unetPrecision: precision,
    onNotice: (m) => log(`xl pipeline: ${m}`),
  });
  try {
    let step = 0;
    await generate(
      model,
      {
        ...defaultParams(),
        prompt: 'a photograph of an astronaut riding a horse, highly detailed',
        negative_prompt: 'blurry',
        steps: settings.steps,
        width: 8 * (settings.xlLatent ?? 128),
        height: 8 * (settings.xlLatent ?? 128),
        seed: 1,
        sampler_name: 'Euler',
      },
      'txt2img',
      {},
      {
        onProgress: () =>
          log(
            `xl pipeline (${precision}): step ${++step}/${settings.steps} (peak RSS ${peakRssMb().toFixed(0)} MB)`,
          ),
      },
    );
    const total_s = (performance.now() - t0) / 1000;
    log(`xl pipeline (${precision}): done in ${total_s.toFixed(1)} s, peak RSS ${peakRssMb().toFixed(0)} MB`);
    return {
      probe: `pipeline SDXL txt2img ${8 * (settings.xlLatent ?? 128)}² ${settings.steps} step(s), ${precision}`,
      precision,
      steps: settings.steps,
      total_s,
      peak_rss_mb: peakRssMb(),
      rss_at_end: rssBreakdownMb(),
    };
  } finally {
    await model.release();
  }
}

export interface XlLoadResult {
  probe: string;
  first_load_s: number;
  later_load_s: number;
  /** What the product said during the first load, with seconds since the load started. */
  notices: { at_s: number; message: string }[];
  peak_rss_mb: number;
}

/**
 * A first load (empty weights cache: fp16 → fp32 conversion and the UNet's level-'all'
 * optimisation happen now) and a later one, each text + UNet + VAE decoder sessions ready, as
 * `open` makes them. The temporary cache is removed afterwards (≈ 20 GB for SDXL).
 */
async function probeXlLoad(path: string, opts: ProbeOptions): Promise<XlLoadResult> {
  const cacheDir = mkdtempSync(join(benchCacheDir(), 'xlload-cache-'));
  const notices: { at_s: number; message: string }[] = [];
  try {
    const load = async (first: boolean) => {
      const t0 = performance.now();
      const model = await loadSd1(path, {
        threads: opts.threads,
        cacheDir,
        onNotice: (message) => {
          const at_s = (performance.now() - t0) / 1000;
          if (first) notices.push({ at_s, message });
          log(`xl load: [${at_s.toFixed(1)} s] ${message}`);
        },
      });
      await model.open(['text', 'unet', 'vaeDecoder']);
      await model.release();
      return (performance.now() - t0) / 1000;
    };
    const first_load_s = await load(true);
    log(`xl load: first load ${first_load_s.toFixed(1)} s`);
    const later_load_s = await load(false);
    log(`xl load: later load ${later_load_s.toFixed(1)} s`);
    return {
      probe: 'SDXL load (text, unet, vae decoder)',
      first_load_s,
      later_load_s,
      notices,
      peak_rss_mb: peakRssMb(),
    };
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

export type XlProbeResult = XlUNetResult | XlQualityResult | XlPipelineResult | XlLoadResult;

export function runXlProbe(
  name: XlProbeName,
  opts: ProbeOptions,
  settings: XlSettings,
): Promise<XlProbeResult> {
  const n = settings.xlLatent ?? 128;
  const xl: UNetShape = { batch: 2, h: n, w: n };
  const sd2: UNetShape = { batch: 2, h: (3 * n) / 4, w: (3 * n) / 4 };
  switch (name) {
    case 'unet768sd2':
      return probeXlUNet(`sd2 unet ${6 * n}² b2`, settings.sd2Checkpoint, opts, sd2, { prediction: 'v' });
    case 'unet1024xl':
      return probeXlUNet(`sdxl unet ${8 * n}² b2`, settings.sdxlCheckpoint, opts, xl);
    case 'unet1024xlint8':
      return probeXlUNet(`sdxl int8 unet ${8 * n}² b2`, settings.sdxlCheckpoint, opts, xl, {
        precision: 'int8',
      });
    case 'xlquality':
      return probeXlQuality(settings.sdxlCheckpoint, opts, xl);
    case 'xlpipeline':
      return probeXlPipeline(settings.sdxlCheckpoint, 'fp32', settings);
    case 'xlpipelineint8':
      return probeXlPipeline(settings.sdxlCheckpoint, 'int8', settings);
    case 'xlload':
      return probeXlLoad(settings.sdxlCheckpoint, opts);
  }
}

const r3 = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? null : Math.round(x * 1000) / 1000;

/** The summary keys of the XL probes (null where not run). */
export function xlSummary(results: Partial<Record<string, unknown>>) {
  const sd2 = results.unet768sd2 as XlUNetResult | undefined;
  const fp = results.unet1024xl as XlUNetResult | undefined;
  const q8 = results.unet1024xlint8 as XlUNetResult | undefined;
  const quality = results.xlquality as XlQualityResult | undefined;
  const pipe = results.xlpipeline as XlPipelineResult | undefined;
  const pipe8 = results.xlpipelineint8 as XlPipelineResult | undefined;
  const load = results.xlload as XlLoadResult | undefined;
  return {
    sd2_unet_s_per_step_768_b2: r3(sd2?.median_s),
    sd2_unet_gflop_768_b2: sd2?.gflop.total ?? null,
    sd2_unet_floor_s_768_b2: r3(sd2?.floor_s),
    sd2_unet_over_floor: r3(sd2 ? sd2.median_s / sd2.floor_s : undefined),
    sd2_unet_gemm_gflops: r3(sd2?.gemm_gflops),
    xl_unet_s_per_step_1024_b2: r3(fp?.median_s),
    xl_unet_gflop_1024_b2: fp?.gflop.total ?? null,
    xl_unet_gflop_as_run_1024_b2: fp?.gflop_as_run.total ?? null,
    xl_unet_floor_s_1024_b2: r3(fp?.floor_s),
    xl_unet_over_floor: r3(fp ? fp.median_s / fp.floor_s : undefined),
    xl_unet_gemm_gflops: r3(fp?.gemm_gflops),
    xl_int8_s_per_step_1024_b2: r3(q8?.median_s),
    xl_int8_gflop_int8_1024_b2: q8?.gflop.int8 ?? null,
    xl_int8_floor_s_1024_b2: r3(q8?.floor_s),
    xl_int8_over_floor: r3(q8 ? q8.median_s / q8.floor_s : undefined),
    xl_int8_gemm_int8_gflops: r3(q8?.gemm_int8_gflops),
    xl_int8_speedup: r3(fp && q8 ? fp.median_s / q8.median_s : undefined),
    xl_int8_psnr_db: r3(quality?.psnr_db),
    xl_pipeline_peak_rss_mb_fp32: r3(pipe?.peak_rss_mb),
    xl_pipeline_peak_rss_mb_int8: r3(pipe8?.peak_rss_mb),
    xl_first_load_s: r3(load?.first_load_s),
    xl_later_load_s: r3(load?.later_load_s),
    xl_targets: XL_TARGETS,
  };
}
