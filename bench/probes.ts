/**
 * What one benchmark child process measures. Each probe runs in a fresh process (bench/run.ts
 * spawns `bench/run.ts --probe NAME`) so its peak RSS is its own and its session is truly fresh.
 * UNet and VAE probes open their session with the engine's own building blocks (graph builder →
 * prepareModel → createSession, exactly what `Sd1Model` does lazily on first use) so that session
 * creation can be timed apart from the first run; text and txt2img go through `loadSd1`.
 */
import type ort from 'onnxruntime-node';
import { openModel } from '../src/formats/open.js';
import type { TensorSource } from '../src/formats/tensor.js';
import { sd1ConfigFromTensors } from '../src/models/config.js';
import { buildUNetGraph, UNET_IO } from '../src/models/unet.js';
import { buildVaeDecoderGraph, VAE_IO } from '../src/models/vae.js';
import type { GraphBuilder } from '../src/onnx/builder.js';
import type { AttentionImpl } from '../src/onnx/ops.js';
import { loadSd1 } from '../src/runtime/sd1.js';
import { createSession, f32, type OptLevel } from '../src/runtime/session.js';
import { prepareModel } from '../src/runtime/weights.js';
import { median, peakRssMb, timed } from './measure.js';

export interface ProbeOptions {
  checkpoint: string;
  runs: number;
  warmup: number;
  attention?: AttentionImpl;
  optLevel?: OptLevel;
  threads?: number;
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
  build_s: number;
  prepare_s: number;
  create_s: number;
  rss_after_create_mb: number;
  peak_rss_mb: number;
}

const log = (msg: string) => process.stderr.write(`  ${msg}\n`);

/** Deterministic pseudo-random values in [-1, 1) (inputs only need to be non-degenerate). */
function noise(n: number, seed: number, amplitude = 1): Float32Array {
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

async function measureRuns(
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

/** Build → place weights → open a session, each step timed. */
async function openSession(
  label: string,
  build: () => GraphBuilder,
  version: string,
  opts: ProbeOptions,
): Promise<{ session: ort.InferenceSession; build_s: number; prepare_s: number; create_s: number }> {
  const b = await timed(async () => build());
  const p = await timed(() => prepareModel(b.value, version));
  const c = await timed(() => createSession(p.value, { optLevel: opts.optLevel, threads: opts.threads }));
  log(
    `${label}: graph ${b.wall_s.toFixed(2)} s, weights (${p.value.placement}) ${p.wall_s.toFixed(2)} s, ` +
      `session ${c.wall_s.toFixed(2)} s, RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`,
  );
  return { session: c.value, build_s: b.wall_s, prepare_s: p.wall_s, create_s: c.wall_s };
}

async function withSource<T>(path: string, fn: (src: TensorSource) => Promise<T>): Promise<T> {
  const src = await openModel(path);
  try {
    return await fn(src);
  } finally {
    await src.close();
  }
}

/** UNet eps at batch × (8·h) × (8·w) pixels, 77-token context. */
export function probeUNet(
  opts: ProbeOptions,
  batch: number,
  h: number,
  w: number,
): Promise<SessionProbeResult> {
  const label = `unet ${8 * w}x${8 * h} b${batch}`;
  return withSource(opts.checkpoint, async (src) => {
    const cfg = sd1ConfigFromTensors(src);
    const s = await openSession(
      label,
      () => buildUNetGraph(src, cfg.unet, { attention: opts.attention }),
      'bench-unet',
      opts,
    );
    const rss_after_create_mb = process.memoryUsage().rss / 2 ** 20;
    const feeds = {
      [UNET_IO.x]: f32(noise(batch * cfg.unet.inChannels * h * w, 1), [batch, cfg.unet.inChannels, h, w]),
      [UNET_IO.t]: f32(new Float32Array(batch).fill(500), [batch]),
      [UNET_IO.context]: f32(noise(batch * 77 * cfg.unet.contextDim, 2), [batch, 77, cfg.unet.contextDim]),
    };
    const stats = await measureRuns(label, opts, () => s.session.run(feeds, [UNET_IO.eps]));
    await s.session.release();
    const { session: _s, ...times } = s;
    return { probe: label, ...times, ...stats, rss_after_create_mb, peak_rss_mb: peakRssMb() };
  });
}

/** VAE decode of one latent to a (8·h) × (8·w) image. */
export function probeVaeDecode(opts: ProbeOptions, h: number, w: number): Promise<SessionProbeResult> {
  const label = `vae decode ${8 * w}x${8 * h}`;
  return withSource(opts.checkpoint, async (src) => {
    const cfg = sd1ConfigFromTensors(src);
    const s = await openSession(
      label,
      () => buildVaeDecoderGraph(src, cfg.vae, { attention: opts.attention }),
      'bench-vae',
      opts,
    );
    const rss_after_create_mb = process.memoryUsage().rss / 2 ** 20;
    const feeds = {
      [VAE_IO.decoder.z]: f32(noise(cfg.vae.embedDim * h * w, 3), [1, cfg.vae.embedDim, h, w]),
    };
    const stats = await measureRuns(label, opts, () => s.session.run(feeds, [VAE_IO.decoder.image]));
    await s.session.release();
    const { session: _s, ...times } = s;
    return { probe: label, ...times, ...stats, rss_after_create_mb, peak_rss_mb: peakRssMb() };
  });
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

export interface TextProbeResult extends RunStats {
  probe: string;
  /** First call: token-embedding and encoder graphs built, sessions opened, one encode. */
  first_call_s: number;
  peak_rss_mb: number;
}

/** One 77-token prompt through token embedding + text transformer (loadSd1().encodeIds). */
export async function probeText(opts: ProbeOptions): Promise<TextProbeResult> {
  const model = await loadSd1(opts.checkpoint, {
    attention: opts.attention,
    optLevel: opts.optLevel,
    threads: opts.threads,
  });
  try {
    const ids = promptIds(1, 20);
    const first = await timed(() => model.encodeIds(ids, 1));
    log(`text encoder first call (sessions opened): ${first.wall_s.toFixed(2)} s`);
    const stats = await measureRuns('text encode', opts, () => model.encodeIds(ids, 1));
    return { probe: 'text encode b1', first_call_s: first.wall_s, ...stats, peak_rss_mb: peakRssMb() };
  } finally {
    await model.release();
  }
}

export interface Txt2imgProbeResult {
  probe: string;
  steps: number;
  text_s: number;
  unet_steps_s: number[];
  vae_s: number;
  total_s: number;
  peak_rss_mb: number;
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
    };
  } finally {
    await model.release();
  }
}
