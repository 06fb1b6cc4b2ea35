/**
 * What one benchmark child process measures. Each probe runs in a fresh process (bench/run.ts
 * spawns `bench/run.ts --probe NAME`) so its peak RSS is its own and its sessions are truly fresh.
 * Everything goes through the engine's front, `loadSd1`: `open([...])` builds the graphs, places
 * the weights and creates the sessions (timed on its own), then `unet` / `vaeDecode` / `encodeIds`
 * run as the pipeline runs them.
 */
import { availableParallelism } from 'node:os';
import ort from 'onnxruntime-node';
import type { UNetPrecision } from '../src/models/unet.js';
import type { AttentionImpl } from '../src/onnx/ops.js';
import { OnnxDataType } from '../src/onnx/proto.js';
import { loadSd1, type Sd1Model, type TensorF32 } from '../src/runtime/sd1.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../src/sampling/schedules.js';
import type { OptLevel } from '../src/runtime/session.js';
import { floatModel, init, lcg, node } from './experiments/tiny-models.js';
import { median, peakRssMb, rssBreakdownMb, timed } from './measure.js';

export interface ProbeOptions {
  checkpoint: string;
  runs: number;
  warmup: number;
  attention?: AttentionImpl;
  optLevel?: OptLevel;
  threads?: number;
  memArena?: boolean;
  /** UNet arithmetic (default fp32; 'int8' = the opt-in fast path). */
  unetPrecision?: UNetPrecision;
  /** Token merging ratio of every UNet call (default 0 = off). */
  tokenMergeRatio?: number;
}

export interface RunStats {
  /** Runs of the fresh session before the timed ones (where fresh-memory page faults land). */
  warmup_s: number[];
  runs_s: number[];
  median_s: number;
  min_s: number;
  /** CPU seconds / wall seconds over the timed runs: ≈ threads when nobody else used the cores. */
  cpu_per_wall: number;
}

export interface SessionProbeResult extends RunStats {
  probe: string;
  /** `loadSd1` + `open([part])`: graph built, weights placed, session created. */
  create_s: number;
  create_cpu_s: number;
  rss_after_create_mb: number;
  peak_rss_mb: number;
  /** Resident memory after the last run, anonymous vs file-backed (mapped weights). */
  rss_at_end?: { anon_mb: number; file_mb: number };
  /** UNet probes: the machine's fp32 GEMM rate right after the timed runs, GFLOP/s. */
  gemm_gflops?: number;
}

const log = (msg: string) => process.stderr.write(`  ${msg}\n`);

/** Deterministic pseudo-random values in [-1, 1) (inputs only need to be non-degenerate). */
export function noise(n: number, seed: number, amplitude = 1): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 2147483648 - 1) * amplitude;
  }
  return out;
}

export async function measureRuns(
  label: string,
  opts: ProbeOptions,
  run: () => Promise<unknown>,
): Promise<RunStats> {
  const warmup_s: number[] = [];
  for (let i = 0; i < opts.warmup; i++) {
    const t = await timed(run);
    warmup_s.push(t.wall_s);
    log(`${label} warm-up ${i + 1}: ${t.wall_s.toFixed(3)} s (peak RSS ${peakRssMb().toFixed(0)} MB)`);
  }
  const runs_s: number[] = [];
  let cpu = 0;
  for (let i = 0; i < opts.runs; i++) {
    const t = await timed(run);
    runs_s.push(t.wall_s);
    cpu += t.cpu_s;
    log(`${label} run ${i + 1}/${opts.runs}: ${t.wall_s.toFixed(3)} s (cpu ${t.cpu_s.toFixed(2)} s)`);
  }
  const wall = runs_s.reduce((a, b) => a + b, 0);
  return {
    warmup_s,
    runs_s,
    median_s: median(runs_s),
    min_s: Math.min(...runs_s),
    cpu_per_wall: Math.round((cpu / wall) * 100) / 100,
  };
}

type Part = 'text' | 'unet' | 'vaeDecoder';

/** Load the checkpoint and open the sessions of `parts`, timed; `fn` then uses the model. */
async function withModel<T>(
  label: string,
  opts: ProbeOptions,
  parts: Part[],
  fn: (
    model: Sd1Model,
    created: { create_s: number; create_cpu_s: number; rss_after_create_mb: number },
  ) => Promise<T>,
): Promise<T> {
  const c = await timed(async () => {
    const model = await loadSd1(opts.checkpoint, {
      attention: opts.attention,
      optLevel: opts.optLevel,
      threads: opts.threads,
      memArena: opts.memArena,
      unetPrecision: opts.unetPrecision,
    });
    await model.open(parts, { tokenMerging: (opts.tokenMergeRatio ?? 0) > 0 });
    return model;
  });
  const model = c.value;
  const rss_after_create_mb = process.memoryUsage().rss / 2 ** 20;
  log(
    `${label}: sessions (${parts.join(', ')}) created in ${c.wall_s.toFixed(2)} s ` +
      `(cpu ${c.cpu_s.toFixed(2)} s), RSS ${rss_after_create_mb.toFixed(0)} MB`,
  );
  try {
    return await fn(model, { create_s: c.wall_s, create_cpu_s: c.cpu_s, rss_after_create_mb });
  } finally {
    await model.release();
  }
}

/**
 * UNet eps at batch × (8·h) × (8·w) pixels, 77-token context. `cfg`: the batch is one CFG step —
 * every row the same latent and timestep, each its own context (cond, uncond), as the sampler
 * calls it; otherwise every row has its own latent.
 */
export function probeUNet(
  opts: ProbeOptions,
  batch: number,
  h: number,
  w: number,
  cfg = false,
): Promise<SessionProbeResult> {
  const tome = opts.tokenMergeRatio ? ` token merging ${opts.tokenMergeRatio}` : '';
  const label = `unet ${8 * w}x${8 * h} b${batch}${cfg ? ' cfg' : ''}${tome}`;
  return withModel(label, opts, ['unet'], async (model, created) => {
    const u = model.config.unet;
    const n = u.inChannels * h * w;
    const latent = noise(n, 1);
    const x = cfg ? new Float32Array(batch * n).map((_, i) => latent[i % n]!) : noise(batch * n, 1);
    const inputs = {
      x: { data: x, dims: [batch, u.inChannels, h, w] },
      t: { data: new Float32Array(batch).fill(500), dims: [batch] },
      context: { data: noise(batch * 77 * u.contextDim, 2), dims: [batch, 77, u.contextDim] },
      tokenMergeRatio: opts.tokenMergeRatio,
    };
    const stats = await measureRuns(label, opts, () => model.unet(inputs));
    const peak_rss_mb = peakRssMb();
    const rss_at_end = rssBreakdownMb();
    // The step is GEMM-bound and this VM's GEMM rate drifts: measure it right after the runs.
    const gemm_gflops = (await gemmRate(opts)).gflops;
    log(`${label}: fp32 GEMM right after: ${gemm_gflops.toFixed(0)} GFLOP/s`);
    return { probe: label, ...created, ...stats, peak_rss_mb, rss_at_end, gemm_gflops };
  });
}

/** VAE decode of one latent to a (8·h) × (8·w) image. */
export function probeVaeDecode(opts: ProbeOptions, h: number, w: number): Promise<SessionProbeResult> {
  const label = `vae decode ${8 * w}x${8 * h}`;
  return withModel(label, opts, ['vaeDecoder'], async (model, created) => {
    const c = model.config.vae!.embedDim;
    const z = { data: noise(c * h * w, 3), dims: [1, c, h, w] };
    const stats = await measureRuns(label, opts, () => model.vaeDecode(z));
    return { probe: label, ...created, ...stats, peak_rss_mb: peakRssMb(), rss_at_end: rssBreakdownMb() };
  });
}

export interface CreateProbeResult {
  probe: string;
  /** Loading a checkpoint seen before (the optimised UNet and the int8 weights come from the cache). */
  create_s: number;
  create_cpu_s: number;
  rss_after_create_mb: number;
  peak_rss_mb: number;
  /** The first load of this process: includes the one-time UNet optimisation when `optimised_now`. */
  first_create_s: number;
  optimised_now: boolean;
}

/**
 * SD 1.5 ready to generate: text encoder, UNet and VAE decoder sessions opened from the file —
 * twice, since a checkpoint's first load also optimises its UNet once for this CPU and saves it
 * (runtime/optimized-cache.ts): the first figure says what a new checkpoint costs, the second what
 * every later load costs.
 */
export async function probeCreate(opts: ProbeOptions): Promise<CreateProbeResult> {
  let optimised_now = false;
  const first = await timed(async () => {
    const model = await loadSd1(opts.checkpoint, {
      attention: opts.attention,
      optLevel: opts.optLevel,
      threads: opts.threads,
      memArena: opts.memArena,
      onNotice: () => (optimised_now = true),
    });
    await model.open(['text', 'unet', 'vaeDecoder']);
    await model.release();
  });
  log(`create: first load ${first.wall_s.toFixed(2)} s${optimised_now ? ' (UNet optimised now)' : ''}`);
  return withModel('create', opts, ['text', 'unet', 'vaeDecoder'], async (_model, created) => ({
    probe: 'session create (text, unet, vae decoder)',
    ...created,
    peak_rss_mb: peakRssMb(),
    first_create_s: first.wall_s,
    optimised_now,
  }));
}

function promptIds(batch: number, tokens: number): Int32Array {
  // BOS, `tokens` ordinary ids, EOS padding (A1111's SD1 pad id is EOS).
  const ids = new Int32Array(batch * 77).fill(49407);
  for (let b = 0; b < batch; b++) {
    ids[b * 77] = 49406;
    for (let i = 1; i <= tokens; i++) ids[b * 77 + i] = 320 + ((i * 7919 + b * 104729) % 40000);
  }
  return ids;
}

export type TextProbeResult = SessionProbeResult;

/** One 77-token prompt through token embedding + text transformer (`encodeIds`). */
export function probeText(opts: ProbeOptions): Promise<TextProbeResult> {
  return withModel('text encode', opts, ['text'], async (model, created) => {
    const ids = promptIds(1, 20);
    const stats = await measureRuns('text encode', opts, () => model.encodeIds(ids, 1));
    return { probe: 'text encode b1', ...created, ...stats, peak_rss_mb: peakRssMb() };
  });
}

export interface Txt2imgProbeResult {
  probe: string;
  steps: number;
  text_s: number;
  unet_steps_s: number[];
  vae_s: number;
  total_s: number;
  peak_rss_mb: number;
  /** Resident memory right after the VAE decode, anonymous vs file-backed (mapped weights). */
  rss_at_end?: { anon_mb: number; file_mb: number };
}

/**
 * A 512² txt2img as the engine runs it (all three networks loaded together, cond + uncond as one
 * UNet batch, then a VAE decode), for the end-to-end peak RSS. The sampler arithmetic between
 * steps is negligible next to the networks and is not part of it.
 */
export async function probeTxt2img(
  opts: ProbeOptions,
  steps: number,
  size = 512,
): Promise<Txt2imgProbeResult> {
  const model = await loadSd1(opts.checkpoint, {
    attention: opts.attention,
    optLevel: opts.optLevel,
    threads: opts.threads,
    memArena: opts.memArena,
  });
  try {
    const t0 = performance.now();
    const text = await timed(async () => {
      const cond = await model.encodeIds(promptIds(1, 20), 1);
      const uncond = await model.encodeIds(promptIds(1, 0), 1);
      const context = new Float32Array(cond.data.length * 2);
      context.set(cond.data);
      context.set(uncond.data, cond.data.length);
      return { data: context, dims: [2, ...cond.dims.slice(1)] };
    });
    log(`txt2img: text ${text.wall_s.toFixed(2)} s`);
    const h = size / 8;
    let latent = noise(4 * h * h, 5, 3);
    const unet_steps_s: number[] = [];
    for (let i = 0; i < steps; i++) {
      const x = new Float32Array(latent.length * 2);
      x.set(latent);
      x.set(latent, latent.length);
      const step = await timed(() =>
        model.unet({
          x: { data: x, dims: [2, 4, h, h] },
          t: { data: new Float32Array([999 - i, 999 - i]), dims: [2] },
          context: text.value,
        }),
      );
      unet_steps_s.push(step.wall_s);
      latent = step.value.data.slice(0, latent.length);
      log(
        `txt2img: step ${i + 1}/${steps} ${step.wall_s.toFixed(2)} s (peak RSS ${peakRssMb().toFixed(0)} MB)`,
      );
    }
    const vae = await timed(() => model.vaeDecode({ data: latent, dims: [1, 4, h, h] }));
    log(`txt2img: vae ${vae.wall_s.toFixed(2)} s (peak RSS ${peakRssMb().toFixed(0)} MB)`);
    return {
      probe: `txt2img ${size}x${size} ${steps} step(s)`,
      steps,
      text_s: text.wall_s,
      unet_steps_s,
      vae_s: vae.wall_s,
      total_s: (performance.now() - t0) / 1000,
      peak_rss_mb: peakRssMb(),
      rss_at_end: rssBreakdownMb(),
    };
  } finally {
    await model.release();
  }
}

export interface PipelineProbeResult {
  probe: string;
  steps: number;
  /** loadModel + generate (sessions open lazily inside), wall seconds. */
  total_s: number;
  peak_rss_mb: number;
  rss_at_end?: { anon_mb: number; file_mb: number };
}

/**
 * The product's whole txt2img (`loadModel` + `generate`: tokenizer, prompt parsing, conditioning,
 * Euler sampler with CFG, VAE decode, image) at 512², engine defaults, for the end-to-end peak RSS.
 * Needs the CLIP vocabulary file (`clipVocab`) since nothing may be downloaded here.
 */
export async function probePipeline(
  opts: ProbeOptions,
  steps: number,
  clipVocab: string,
): Promise<PipelineProbeResult> {
  // Imported here so the engine probes run even while the pipeline is being changed.
  const { loadModel } = await import('../src/pipeline/model.js');
  const { generate } = await import('../src/pipeline/generate.js');
  const { defaultParams } = await import('../src/params/generation.js');
  const t0 = performance.now();
  const model = await loadModel({ checkpoint: opts.checkpoint, clipVocab, hash: false });
  try {
    const params = {
      ...defaultParams(),
      prompt: 'a photograph of an astronaut riding a horse, highly detailed',
      negative_prompt: 'blurry',
      steps,
      width: 512,
      height: 512,
      seed: 1,
      sampler_name: 'Euler',
    };
    let step = 0;
    await generate(
      model,
      params,
      'txt2img',
      {},
      {
        onProgress: () =>
          log(`pipeline txt2img: step ${++step}/${steps} (peak RSS ${peakRssMb().toFixed(0)} MB)`),
      },
    );
    const total_s = (performance.now() - t0) / 1000;
    log(`pipeline txt2img: done in ${total_s.toFixed(1)} s (peak RSS ${peakRssMb().toFixed(0)} MB)`);
    return {
      probe: `pipeline txt2img 512x512 ${steps} step(s)`,
      steps,
      total_s,
      peak_rss_mb: peakRssMb(),
      rss_at_end: rssBreakdownMb(),
    };
  } finally {
    await model.release();
  }
}

export interface Int8QualityResult {
  probe: string;
  steps: number;
  /** PSNR of the int8 UNet's eps against fp32 on the same inputs (peak = max |eps_fp32|). */
  psnr_eps_db: number;
  /** PSNR of the decoded image after `steps` Euler steps with CFG, int8 vs fp32 (pixels in [0, 1]). */
  psnr_image_db: number;
  /** Relative L2 error of the final latent. */
  latent_rel_l2: number;
  peak_rss_mb: number;
}

export function psnr(a: Float32Array, ref: Float32Array, peak: number): number {
  let se = 0;
  for (let i = 0; i < ref.length; i++) se += (a[i]! - ref[i]!) ** 2;
  return 10 * Math.log10((peak * peak) / (se / ref.length));
}

/**
 * The int8 UNet's accuracy on the full-size random model: one UNet call, and a short 512² txt2img
 * (k-diffusion Euler, CFG 7, the same start noise and prompts) decoded by the fp32 VAE, each run
 * once in fp32 and once in int8. Two models in turn, so only one UNet is resident at a time.
 */
export async function probeInt8Quality(
  opts: ProbeOptions,
  steps: number,
  tested: { precision: UNetPrecision; tokenMergeRatio: number } = { precision: 'int8', tokenMergeRatio: 0 },
): Promise<Int8QualityResult> {
  const h = 64;
  const schedule = new DiscreteSchedule(sdAlphasCumprod());
  const sigmas = [...schedule.getSigmas(steps), 0];
  const run = async (precision: UNetPrecision, tokenMergeRatio = 0) => {
    const model = await loadSd1(opts.checkpoint, { threads: opts.threads, unetPrecision: precision });
    try {
      const cond = await model.encodeIds(promptIds(1, 20), 1);
      const uncond = await model.encodeIds(promptIds(1, 0), 1);
      const context = new Float32Array(cond.data.length * 2);
      context.set(cond.data);
      context.set(uncond.data, cond.data.length);
      const ctx: TensorF32 = { data: context, dims: [2, ...cond.dims.slice(1)] };
      const n = 4 * h * h;
      const probeX = noise(2 * n, 7);
      const eps0 = (
        await model.unet({
          x: { data: probeX, dims: [2, 4, h, h] },
          t: { data: new Float32Array([500, 500]), dims: [2] },
          context: ctx,
          tokenMergeRatio,
        })
      ).data;
      const x = noise(n, 11, sigmas[0]! * Math.sqrt(3)); // uniform noise with std sigma_max
      for (let i = 0; i < steps; i++) {
        const sigma = sigmas[i]!;
        const cIn = 1 / Math.sqrt(sigma * sigma + 1);
        const xin = new Float32Array(2 * n);
        for (let j = 0; j < n; j++) xin[j] = xin[n + j] = x[j]! * cIn;
        const t = schedule.sigmaToT(sigma);
        const eps = (
          await model.unet({
            x: { data: xin, dims: [2, 4, h, h] },
            t: { data: new Float32Array([t, t]), dims: [2] },
            context: ctx,
            tokenMergeRatio,
          })
        ).data;
        const dt = sigmas[i + 1]! - sigma;
        // Euler on d = (x - denoised) / sigma = eps (CFG: uncond + 7 · (cond − uncond)).
        for (let j = 0; j < n; j++) x[j] = x[j]! + (eps[n + j]! + 7 * (eps[j]! - eps[n + j]!)) * dt;
        log(`int8 quality (${precision}): step ${i + 1}/${steps}`);
      }
      const img = await model.vaeDecode({ data: x.map((v) => v / 0.18215), dims: [1, 4, h, h] });
      const pixels = img.data.map((v) => Math.min(1, Math.max(0, (v + 1) / 2)));
      return { eps0, latent: x, pixels };
    } finally {
      await model.release();
    }
  };
  const ref = await run('fp32');
  const q = await run(tested.precision, tested.tokenMergeRatio);
  let peak = 0;
  for (const v of ref.eps0) peak = Math.max(peak, Math.abs(v));
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.latent.length; i++) {
    num += (q.latent[i]! - ref.latent[i]!) ** 2;
    den += ref.latent[i]! ** 2;
  }
  const result = {
    probe:
      `${tested.precision}${tested.tokenMergeRatio > 0 ? ` + token merging ${tested.tokenMergeRatio}` : ''}` +
      ` vs fp32 UNet, 512² b2, ${steps} Euler step(s)`,
    steps,
    psnr_eps_db: psnr(q.eps0, ref.eps0, peak),
    psnr_image_db: psnr(q.pixels, ref.pixels, 1),
    latent_rel_l2: Math.sqrt(num / den),
    peak_rss_mb: peakRssMb(),
  };
  log(`int8 quality: eps ${result.psnr_eps_db.toFixed(1)} dB, image ${result.psnr_image_db.toFixed(1)} dB`);
  return result;
}

export interface GemmProbeResult {
  probe: string;
  /** Median fp32 MatMul rate over the timed runs, GFLOP/s. */
  gflops: number;
  runs_s: number[];
  peak_rss_mb: number;
}

/** Square fp32 products in the chain: large enough that MLAS runs at its peak. */
const GEMM_N = 2048;
const GEMM_LAYERS = 4;

/**
 * This machine's fp32 GEMM rate as onnxruntime's CPU kernels reach it right now (a chain of
 * 2048³ MatMuls with constant, prepacked weights; the engine's thread count). The UNet step is
 * GEMM-bound, and this VM drifts between states whose GEMM rates differ by a third, so every
 * bench run measures it next to the UNet (docs/performance.md).
 */
export async function probeGemm(opts: ProbeOptions): Promise<GemmProbeResult> {
  const { gflops, runs_s } = await gemmRate(opts);
  log(`gemm ${GEMM_N}³ fp32: ${gflops.toFixed(0)} GFLOP/s`);
  return { probe: `gemm ${GEMM_N}³ fp32 ×${GEMM_LAYERS}`, gflops, runs_s, peak_rss_mb: peakRssMb() };
}

/** The fp32 GEMM rate now (median of ≥ 5 runs of the chain after 2 warm-up runs). */
async function gemmRate(opts: ProbeOptions): Promise<{ gflops: number; runs_s: number[] }> {
  const n = GEMM_N;
  const nodes = [];
  const inits = [];
  for (let l = 0; l < GEMM_LAYERS; l++) {
    const out = l === GEMM_LAYERS - 1 ? 'y' : `h${l}`;
    nodes.push(node('MatMul', [l ? `h${l - 1}` : 'a', `w${l}`], [out]));
    inits.push(init(`w${l}`, OnnxDataType.FLOAT, [n, n], lcg(n * n, 7 + l, 1 / Math.sqrt(n))));
  }
  const session = await ort.InferenceSession.create(floatModel(nodes, inits, ['a', [n, n]], ['y', [n, n]]), {
    intraOpNumThreads: opts.threads ?? availableParallelism(),
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  try {
    const a = new ort.Tensor('float32', lcg(n * n, 3), [n, n]);
    for (let i = 0; i < 2; i++) await session.run({ a });
    const runs_s: number[] = [];
    for (let i = 0; i < Math.max(5, opts.runs); i++) {
      const t = await timed(() => session.run({ a }));
      runs_s.push(t.wall_s);
    }
    return { gflops: (2 * GEMM_LAYERS * n ** 3) / median(runs_s) / 1e9, runs_s };
  } finally {
    await session.release();
  }
}
