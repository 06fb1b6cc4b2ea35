/**
 * Issue #15's LoRA speed targets on the full-size random SD 1.5 (bench/run.ts probes `loraswitch`
 * and `loratxt2img`), with random full-coverage rank-32 kohya LoRAs (every Linear / 1×1 conv of the
 * 16 transformers and the 12 text-encoder layers: the module set kohya's networks.lora trains).
 * LoRAs reach the model as the pipeline applies them (adapters/lora-library.ts `activateLoras`
 * with UNet branches, then `loadSd1(…, {lowRankBranches})`).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BRANCH_PREFIXES } from '../src/adapters/lora-branches.js';
import { activateLoras, type LoraSpec } from '../src/adapters/lora-library.js';
import { openModel } from '../src/formats/open.js';
import { writeSafetensors } from '../src/formats/safetensors.js';
import type { Tensor, TensorSource } from '../src/formats/tensor.js';
import { loadSd1, type Sd1Model } from '../src/runtime/sd1.js';
import { ldmCheckpointLayout, SD15_ARCH } from './ldm-layout.js';
import { median, peakRssMb, rssBreakdownMb, timed } from './measure.js';
import { probeGemm, type ProbeOptions } from './probes.js';
import { benchCacheDir, NormalRng } from './random-sd15.js';

const log = (msg: string) => process.stderr.write(`  ${msg}\n`);
/** Bump when the random LoRA's layout or init changes. */
const RANDOM_LORA_VERSION = 'v1';

/** Checkpoint weights kohya's networks.lora trains on SD 1.5. */
function kohyaTargets() {
  return ldmCheckpointLayout(SD15_ARCH).filter(
    (s) =>
      s.name.endsWith('.weight') &&
      (s.shape.length === 2 || (s.shape.length === 4 && s.shape[2] === 1)) &&
      ((/^model\.diffusion_model\.(input|output)_blocks\.\d+\.1\.|^model\.diffusion_model\.middle_block\.1\./.test(
        s.name,
      ) &&
        /(proj_in|proj_out|to_[qkv]|to_out\.0|ff\.net\.0\.proj|ff\.net\.2)\.weight$/.test(s.name)) ||
        /^cond_stage_model\.transformer\.text_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$/.test(
          s.name,
        )),
  );
}

/** A random full-coverage kohya LoRA of `rank` (written once into the bench cache). */
export async function ensureRandomLora(rank: number, seed: number): Promise<string> {
  const dir = join(benchCacheDir(), 'loras');
  const path = join(dir, `random-lora-${RANDOM_LORA_VERSION}-r${rank}-seed${seed}.safetensors`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const rng = new NormalRng(seed);
  const tensors: [string, Tensor][] = [];
  const f32 = (shape: number[], std: number): Tensor => {
    const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
    rng.fillNormal(v, 0, std);
    return { dtype: 'F32', shape, data: new Uint8Array(v.buffer) };
  };
  for (const s of kohyaTargets()) {
    const mod = s.name
      .replace(/^model\.diffusion_model\./, 'lora_unet_')
      .replace(/^cond_stage_model\.transformer\.text_model\./, 'lora_te_text_model_')
      .replace(/\.weight$/, '')
      .replace(/\./g, '_');
    const [out, inp] = s.shape as [number, number];
    const conv = s.shape.length === 4;
    tensors.push([`${mod}.lora_down.weight`, f32(conv ? [rank, inp, 1, 1] : [rank, inp], 0.02)]);
    tensors.push([`${mod}.lora_up.weight`, f32(conv ? [out, rank, 1, 1] : [out, rank], 0.02)]);
    tensors.push([
      `${mod}.alpha`,
      { dtype: 'F32', shape: [], data: new Uint8Array(new Float32Array([rank / 2]).buffer) },
    ]);
  }
  await writeSafetensors(path, tensors, { ss_network_module: 'networks.lora', ss_network_dim: String(rank) });
  return path;
}

async function randomLoraSpecs(n: number): Promise<LoraSpec[]> {
  const specs: LoraSpec[] = [];
  for (let i = 0; i < n; i++) {
    const path = await ensureRandomLora(32, 7 + i);
    specs.push({ name: `random${i}`, path, te: 1, unet: 1, dynDim: null });
  }
  return specs;
}

/** The model for a LoRA set as the pipeline loads it (model.ts): patched text encoder, UNet branches. */
async function loadWithLoras(
  base: TensorSource,
  specs: readonly LoraSpec[],
  opts: ProbeOptions,
): Promise<{ model: Sd1Model; activate_s: number; branches: number; patched: number }> {
  const act = await activateLoras(base, specs, {
    noHashCache: true,
    branchPrefixes: Object.values(BRANCH_PREFIXES),
  });
  const model = await loadSd1(act.source, {
    threads: opts.threads,
    unetPrecision: opts.unetPrecision,
    lowRankBranches: act.branches.size ? act.branches : undefined,
  });
  return { model, activate_s: act.seconds, branches: act.branches.size, patched: act.patchedTensors };
}

function noise(n: number, seed: number): Float32Array {
  const rng = new NormalRng(seed);
  const v = new Float32Array(n);
  rng.fillNormal(v, 0, 1);
  return v;
}

/** One CFG step's UNet inputs at 512² (batch 2: one latent, two contexts). */
function cfgInputs(model: Sd1Model) {
  const u = model.config.unet;
  const n = u.inChannels * 64 * 64;
  const latent = noise(n, 1);
  const x = new Float32Array(2 * n);
  x.set(latent);
  x.set(latent, n);
  return {
    x: { data: x, dims: [2, u.inChannels, 64, 64] },
    t: { data: new Float32Array([500, 500]), dims: [2] },
    context: { data: noise(2 * 77 * u.contextDim, 2), dims: [2, 77, u.contextDim] },
  };
}

export interface LoraSwitchResult {
  probe: string;
  steps_s_no_lora: number[];
  steps_s_lora: number[];
  /** Median step with the LoRA / without (target ≤ 1.05). */
  step_ratio: number;
  /** Time from asking for the LoRA set to the first step starting: first LoRA set (may optimise once), another set with the same layers, two LoRAs. */
  switch_s: { first: number; other: number; two: number; back_to_none: number };
  activate_s: number[];
  first_step_s: { first: number; other: number; two: number };
  branches: number;
  patched_tensors: number;
  gemm_gflops_before: number;
  gemm_gflops_after: number;
  peak_rss_mb: number;
  rss_at_end?: { anon_mb: number; file_mb: number };
}

/**
 * Switching LoRA sets as the model library does (a new model per set; the old one released):
 * steady steps without and with a full-coverage LoRA, and the time before the first step of each
 * switch. The GEMM rate is measured before and after, since this VM's state drifts.
 */
export async function probeLoraSwitch(opts: ProbeOptions): Promise<LoraSwitchResult> {
  const gemmBefore = (await probeGemm(opts)).gflops;
  const [a, b] = await randomLoraSpecs(2);
  const base = await openModel(opts.checkpoint);
  const steps = async (label: string, model: Sd1Model, n: number) => {
    const inputs = cfgInputs(model);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = await timed(() => model.unet(inputs));
      out.push(t.wall_s);
      log(`${label}: step ${i + 1}/${n} ${t.wall_s.toFixed(2)} s (peak RSS ${peakRssMb().toFixed(0)} MB)`);
    }
    return out;
  };
  const runs = Math.max(2, opts.runs);
  try {
    let model = await loadSd1(base, { threads: opts.threads, unetPrecision: opts.unetPrecision });
    await model.open(['unet', 'text']);
    const noLora = (await steps('no LoRA', model, 1 + runs)).slice(1);
    const activate: number[] = [];
    let branches = 0;
    let patched = 0;
    const switchTo = async (label: string, specs: LoraSpec[]) => {
      await model.release();
      const t = await timed(async () => {
        if (specs.length === 0)
          return {
            model: await loadSd1(base, { threads: opts.threads, unetPrecision: opts.unetPrecision }),
            activate_s: 0,
            branches: 0,
            patched: 0,
          };
        return loadWithLoras(base, specs, opts);
      });
      model = t.value.model;
      const open = await timed(() => model.open(['unet', 'text']));
      activate.push(t.value.activate_s);
      branches = Math.max(branches, t.value.branches);
      patched = Math.max(patched, t.value.patched);
      const s = t.wall_s + open.wall_s;
      log(
        `switch to ${label}: ${s.toFixed(2)} s (activate ${t.value.activate_s.toFixed(2)} s, open ${open.wall_s.toFixed(2)} s)`,
      );
      return s;
    };
    const first = await switchTo('LoRA A', [a!]);
    const withLora = await steps('LoRA A', model, 1 + runs);
    const other = await switchTo('LoRA B', [b!]);
    const otherSteps = await steps('LoRA B', model, 1);
    const two = await switchTo('LoRA A + B', [a!, b!]);
    const twoSteps = await steps('LoRA A + B', model, 1);
    const backToNone = await switchTo('no LoRA', []);
    await model.release();
    const gemmAfter = (await probeGemm(opts)).gflops;
    return {
      probe: 'LoRA switch, full-coverage rank 32, 512² CFG step',
      steps_s_no_lora: noLora,
      steps_s_lora: withLora.slice(1),
      step_ratio: median(withLora.slice(1)) / median(noLora),
      switch_s: { first, other, two, back_to_none: backToNone },
      activate_s: activate,
      first_step_s: { first: withLora[0]!, other: otherSteps[0]!, two: twoSteps[0]! },
      branches,
      patched_tensors: patched,
      gemm_gflops_before: gemmBefore,
      gemm_gflops_after: gemmAfter,
      peak_rss_mb: peakRssMb(),
      rss_at_end: rssBreakdownMb(),
    };
  } finally {
    await base.close();
  }
}

export interface LoraTxt2imgResult {
  probe: string;
  loras: number;
  activate_s: number;
  unet_steps_s: number[];
  vae_s: number;
  peak_rss_mb: number;
  rss_at_end?: { anon_mb: number; file_mb: number };
}

/** A 512² txt2img (text, `steps` CFG steps, VAE decode) with two full-coverage LoRAs, for the peak RSS. */
export async function probeLoraTxt2img(opts: ProbeOptions, steps: number): Promise<LoraTxt2imgResult> {
  const specs = await randomLoraSpecs(2);
  const base = await openModel(opts.checkpoint);
  try {
    const { model, activate_s } = await loadWithLoras(base, specs, opts);
    try {
      const ids = new Int32Array(77).fill(49407);
      ids[0] = 49406;
      const cond = await model.encodeIds(ids, 1);
      const inputs = cfgInputs(model);
      inputs.context.data.set(cond.data);
      inputs.context.data.set(cond.data, cond.data.length);
      const unet_steps_s: number[] = [];
      for (let i = 0; i < steps; i++) {
        const t = await timed(() => model.unet(inputs));
        unet_steps_s.push(t.wall_s);
        log(
          `lora txt2img: step ${i + 1}/${steps} ${t.wall_s.toFixed(2)} s (peak RSS ${peakRssMb().toFixed(0)} MB)`,
        );
      }
      const vae = await timed(() =>
        model.vaeDecode({ data: inputs.x.data.slice(0, 4 * 64 * 64), dims: [1, 4, 64, 64] }),
      );
      log(`lora txt2img: vae ${vae.wall_s.toFixed(2)} s (peak RSS ${peakRssMb().toFixed(0)} MB)`);
      return {
        probe: `txt2img 512² ${steps} step(s), two full-coverage rank-32 LoRAs`,
        loras: specs.length,
        activate_s,
        unet_steps_s,
        vae_s: vae.wall_s,
        peak_rss_mb: peakRssMb(),
        rss_at_end: rssBreakdownMb(),
      };
    } finally {
      await model.release();
    }
  } finally {
    await base.close();
  }
}
