/**
 * Shared by the SD 2.x and SDXL conformance tests: a golden set's cases.json, its files, its
 * checkpoints loaded once per test file, comparison at a case's tolerance (NaN never passes), and
 * the end-to-end txt2img of a case run through the engine and the sampling code (sampler, CFG and
 * the CompVis eps/v wrappers of sampling/denoisers.ts).
 */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { sdxlVector } from '../../src/models/sdxl-vector.js';
import { tensorToImage } from '../../src/image/images.js';
import { CfgDenoiser, type ScheduledCond } from '../../src/pipeline/denoiser.js';
import type { LoadedModel } from '../../src/pipeline/model.js';
import { decodeLatentsRaw } from '../../src/pipeline/vae.js';
import {
  loadDiffusionModel,
  type Sd1LoadOptions,
  type Sd1Model,
  type TensorF32,
} from '../../src/runtime/sd1.js';
import { cfgDenoiser, compVisDenoiser } from '../../src/sampling/denoisers.js';
import { planSampling, runSampler, startLatent, type StepInfo } from '../../src/sampling/index.js';
import { imageRngNoise } from '../../src/sampling/noise.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../../src/sampling/schedules.js';
import { ImageRng } from '../../src/sampling/seeds.js';
import { goldenPath } from '../helpers/golden.js';

export interface Tol {
  max_abs: number;
  rel_l2?: number;
  max_fraction_differing?: number;
}

export interface FamilyCase {
  kind: string;
  checkpoint: string;
  config: string;
  file: string;
  name?: string;
  inputs?: Record<string, unknown>;
  outputs: Record<string, string | string[]>;
  tolerance: Tol | Record<string, Tol>;
  params?: Record<string, unknown>;
  [k: string]: unknown;
}

export class GoldenSet {
  readonly cases: FamilyCase[];
  private readonly files = new Map<string, Promise<TensorSource>>();
  private readonly models = new Map<string, Promise<Sd1Model>>();

  constructor(
    readonly set: string,
    private readonly load: Sd1LoadOptions = {},
  ) {
    this.cases = (
      JSON.parse(readFileSync(goldenPath(set, 'cases.json'), 'utf8')) as { cases: FamilyCase[] }
    ).cases;
  }

  file(name: string): Promise<TensorSource> {
    let f = this.files.get(name);
    if (!f) {
      f = openSafetensors(goldenPath(this.set, name));
      this.files.set(name, f);
    }
    return f;
  }

  /** A checkpoint of the set, loaded once (its `<name>.yaml` sidecar is found beside it). */
  model(checkpoint: string): Promise<Sd1Model> {
    let m = this.models.get(checkpoint);
    if (!m) {
      m = loadDiffusionModel(goldenPath(this.set, checkpoint), { threads: 2, ...this.load });
      this.models.set(checkpoint, m);
    }
    return m;
  }

  async tensor(file: string, name: string): Promise<TensorF32> {
    const src = await this.file(file);
    const info = src.info(name);
    if (!info) throw new Error(`${file} has no tensor ${name}`);
    return { data: await src.readFloat32(name), dims: info.shape };
  }

  /** I64 ids; `name[a:b]` takes rows a..b−1. */
  async ids(file: string, spec: string): Promise<{ ids: BigInt64Array; dims: number[] }> {
    const m = /^(.*)\[(\d+):(\d+)\]$/.exec(spec);
    const name = m ? m[1]! : spec;
    const src = await this.file(file);
    const t = await src.read(name);
    if (t.dtype !== 'I64') throw new Error(`${file}:${name} is ${t.dtype}, expected I64`);
    const all = new BigInt64Array(
      t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength),
    );
    if (!m) return { ids: all, dims: t.shape };
    const cols = t.shape[1]!;
    const a = Number(m[2]);
    const b = Number(m[3]);
    return { ids: all.slice(a * cols, b * cols), dims: [b - a, cols] };
  }

  async close(): Promise<void> {
    for (const m of this.models.values()) await (await m).release();
    for (const f of this.files.values()) await (await f).close();
    this.models.clear();
    this.files.clear();
  }
}

/** max|a−b| and ‖a−b‖/‖b‖ (0/0 = 0: judged by max_abs alone); NaN anywhere fails. */
export function expectClose(
  what: string,
  ours: ArrayLike<number>,
  golden: ArrayLike<number>,
  tol: Tol,
): void {
  expect(ours.length, `${what}: length`).toBe(golden.length);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < golden.length; i++) {
    const d = Math.abs(ours[i]! - golden[i]!);
    if (Number.isNaN(d)) throw new Error(`${what}: NaN at ${i}`);
    maxAbs = Math.max(maxAbs, d);
    num += d * d;
    den += golden[i]! * golden[i]!;
  }
  expect(maxAbs, `${what}: max_abs`).toBeLessThanOrEqual(tol.max_abs);
  if (tol.rel_l2 !== undefined && den > 0) {
    expect(Math.sqrt(num / den), `${what}: rel_l2`).toBeLessThanOrEqual(tol.rel_l2);
  }
}

export function expectPixels(what: string, ours: Uint8Array, golden: Uint8Array, tol: Tol): void {
  expect(ours.length, `${what}: length`).toBe(golden.length);
  let differing = 0;
  let worst = 0;
  for (let i = 0; i < golden.length; i++) {
    const d = Math.abs(ours[i]! - golden[i]!);
    worst = Math.max(worst, d);
    if (d > 0) differing++;
  }
  expect(worst, `${what}: worst level difference`).toBeLessThanOrEqual(tol.max_abs);
  expect(differing / golden.length, `${what}: fraction differing`).toBeLessThanOrEqual(
    tol.max_fraction_differing ?? 0,
  );
}

/** Compare every output a case names (a key → tensor name, or a list) against `ours` by the same key. */
export async function compareOutputs(
  gs: GoldenSet,
  c: FamilyCase,
  ours: Record<string, TensorF32 | TensorF32[]>,
  tolFor: (key: string) => Tol,
): Promise<void> {
  const keys = Object.keys(c.outputs);
  expect(keys.length, 'the case names outputs').toBeGreaterThan(0);
  for (const key of keys) {
    const names = c.outputs[key]!;
    const mine = ours[key];
    expect(mine, `${c.kind}: no value computed for output "${key}"`).toBeDefined();
    const list = Array.isArray(names) ? names : [names];
    const mineList = Array.isArray(mine) ? mine : [mine!];
    expect(mineList.length, `${key}: count`).toBe(list.length);
    for (let i = 0; i < list.length; i++) {
      const ref = await gs.tensor(c.file, list[i]!);
      expect(mineList[i]!.dims, `${list[i]}: dims`).toEqual(ref.dims);
      expectClose(`${c.file}:${list[i]}`, mineList[i]!.data, ref.data, tolFor(key));
    }
  }
}

export interface E2eRun {
  cond: TensorF32;
  uncond: TensorF32;
  condVector?: TensorF32;
  uncondVector?: TensorF32;
  sigmas: number[];
  xInit: Float32Array;
  ts: number[];
  denoisedCond: Float32Array[];
  denoisedUncond: Float32Array[];
  denoised: Float32Array[];
  latents: Float32Array[];
  decoded: TensorF32;
  image: Uint8Array;
}

/** Whether every id row is an empty prompt (BOS, EOS, then padding): A1111 zeroes SDXL's text conditioning. */
function emptyPrompt(ids: BigInt64Array, T: number): boolean {
  for (let r = 0; r < ids.length / T; r++) if (ids[r * T + 1] !== 49407n) return false;
  return true;
}

/**
 * A case's txt2img: its ids (one input per tower, in tower order: `prompt_ids[_l|_g]`), its noise,
 * Euler with CFG on the denoised outputs, decode at the model's scale factor, uint8 by truncation.
 */
export async function runTxt2img(
  gs: GoldenSet,
  c: FamilyCase,
  model: Sd1Model,
  inputsFile: string,
  pipeline?: LoadedModel,
): Promise<E2eRun> {
  const inputs = c.inputs as Record<string, string>;
  const params = c.params as {
    sampler: string;
    steps: number;
    cfg_scale: number;
    height: number;
    width: number;
  };
  const towerInputs = (kind: 'prompt' | 'negative') =>
    Object.keys(inputs)
      .filter((k) => k.startsWith(`${kind}_ids`))
      .sort()
      .map((k) => inputs[k]!);
  const promptNames = towerInputs('prompt');
  const negNames = towerInputs('negative');
  expect(promptNames.length, 'one prompt id input per text tower').toBe(model.towers.length);
  // Tower order: CLIP-L (_l) before bigG (_g) — reverse alphabetical for the two SDXL inputs.
  const order = (names: string[]) => (names.length === 2 ? [names[1]!, names[0]!] : names);
  const pIds = await Promise.all(order(promptNames).map((n) => gs.ids(inputsFile, n)));
  const nIds = await Promise.all(order(negNames).map((n) => gs.ids(inputsFile, n)));
  const cond = await model.encodeIdsAll(
    pIds.map((p) => p.ids),
    1,
  );
  let uncond = await model.encodeIdsAll(
    nIds.map((p) => p.ids),
    1,
  );
  const v = model.config.vector;
  let condVector: TensorF32 | undefined;
  let uncondVector: TensorF32 | undefined;
  if (v) {
    const size: [number, number] = [params.height, params.width];
    const sizes = { originalSize: size, cropTopLeft: [0, 0] as [number, number], targetSize: size };
    const zero = nIds.every((n) => emptyPrompt(n.ids, n.dims[1]!));
    if (zero)
      uncond = { context: { data: new Float32Array(uncond.context.data.length), dims: uncond.context.dims } };
    condVector = sdxlVector(v, cond.pooled!, sizes);
    uncondVector = sdxlVector(v, uncond.pooled ?? cond.pooled!, sizes, zero);
  }
  const noiseT = await gs.tensor(inputsFile, inputs.noise!);
  const [, ch, h, w] = noiseT.dims as [number, number, number, number];
  const alphas = model.source.has('alphas_cumprod')
    ? await model.source.readFloat32('alphas_cumprod')
    : sdAlphasCumprod();
  const schedule = pipeline?.schedule ?? new DiscreteSchedule(alphas);
  const plan = planSampling({ sampler: params.sampler, steps: params.steps, schedule });
  const xInit = startLatent(plan, noiseT.data);
  type Cond = { context: TensorF32; y?: TensorF32 };
  const ts: number[] = [];
  const denoisedCond: Float32Array[] = [];
  const denoisedUncond: Float32Array[] = [];
  const per = ch * h * w;
  const stack = (parts: TensorF32[]): TensorF32 => {
    const n = parts[0]!.data.length;
    const data = new Float32Array(parts.length * n);
    parts.forEach((p, i) => data.set(p.data, i * n));
    return { data, dims: [parts.length, ...parts[0]!.dims.slice(1)] };
  };
  const inner = compVisDenoiser<Cond>(
    async (x, t, conds) => {
      ts.push(t[0]!);
      const r = await model.unet({
        x: { data: x, dims: [conds.length, ch, h, w] },
        t: { data: t, dims: [conds.length] },
        context: stack(conds.map((k) => k.context)),
        ...(v ? { y: stack(conds.map((k) => k.y!)) } : {}),
      });
      return r.data;
    },
    schedule,
    model.prediction,
  );
  const recorded = async (x: Float32Array, level: Float32Array, conds: readonly Cond[]) => {
    const out = await inner(x, level, conds);
    denoisedCond.push(out.slice(0, per));
    denoisedUncond.push(out.slice(per, 2 * per));
    return out;
  };
  const model1 = pipeline
    ? pipelineDenoiser(
        pipeline,
        params.cfg_scale,
        [ch, h, w],
        cond,
        uncond,
        condVector,
        uncondVector,
        params.steps,
        {
          ts,
          denoisedCond,
          denoisedUncond,
        },
      )
    : cfgDenoiser<Cond>(recorded, {
        conds: [[{ cond: { context: cond.context, y: condVector }, weight: 1 }]],
        uncond: [{ context: uncond.context, y: uncondVector }],
        scale: params.cfg_scale,
      });
  const denoised: Float32Array[] = [];
  const latents: Float32Array[] = [];
  const rng = new ImageRng({ shape: [ch, h, w], seeds: [0] });
  rng.next();
  const res = await runSampler(
    plan,
    {
      model: model1,
      noise: imageRngNoise(rng),
      callback: (info: StepInfo) => {
        if (info.i > 0) latents.push(info.x.slice());
        denoised.push(info.denoised.slice());
      },
    },
    xInit,
  );
  latents.push(res.x);
  let decoded: TensorF32;
  if (pipeline) {
    decoded = (await decodeLatentsRaw(pipeline.engine, res.x, [1, ch, h, w], pipeline.scaleFactor))[0]!;
  } else {
    const z = new Float32Array(res.x.length);
    for (let i = 0; i < z.length; i++) z[i] = res.x[i]! / model.scaleFactor;
    decoded = await model.vaeDecode({ data: z, dims: [1, ch, h, w] });
  }
  const image = tensorToImage(decoded.data, decoded.dims[3]!, decoded.dims[2]!);
  const out: E2eRun = {
    cond: cond.context,
    uncond: uncond.context,
    sigmas: plan.sigmas,
    xInit,
    ts,
    denoisedCond,
    denoisedUncond,
    denoised,
    latents,
    decoded,
    image: image.data,
  };
  if (condVector) out.condVector = condVector;
  if (uncondVector) out.uncondVector = uncondVector;
  return out;
}

/**
 * The pipeline's own CFG denoiser (pipeline/denoiser.ts) over a LoadedModel: its prediction type,
 * schedule and the UNet call with SDXL's y, as generate.ts wires them. The per-row denoised
 * outputs are recovered from the UNet's output the same way the denoiser combines them.
 */
function pipelineDenoiser(
  m: LoadedModel,
  cfgScale: number,
  shape: [number, number, number],
  cond: { context: TensorF32 },
  uncond: { context: TensorF32 },
  condVector: TensorF32 | undefined,
  uncondVector: TensorF32 | undefined,
  steps: number,
  rec: { ts: number[]; denoisedCond: Float32Array[]; denoisedUncond: Float32Array[] },
): (x: Float32Array, sigma: number) => Promise<Float32Array> {
  const per = shape[0] * shape[1] * shape[2];
  const entry = (c: TensorF32, y: TensorF32 | undefined): ScheduledCond => {
    const cond: TensorF32 = { data: c.data, dims: [c.dims[1]!, c.dims[2]!] };
    return y
      ? { endAtStep: steps, cond, y: { data: y.data, dims: [y.data.length] } }
      : { endAtStep: steps, cond };
  };
  let current: { x: Float32Array; sigma: number } | undefined;
  const d = new CfgDenoiser({
    unet: async (x, t, context, y) => {
      rec.ts.push(t.data[0]!);
      const out = await m.engine.unet({ x, t, context, ...(y ? { y } : {}) });
      // denoised per row, from the same parameterisation the denoiser applies.
      const { x: xs, sigma } = current!;
      const cSkip = m.prediction === 'v' ? 1 / (sigma * sigma + 1) : 1;
      const cOut = m.prediction === 'v' ? -sigma / Math.sqrt(sigma * sigma + 1) : -sigma;
      for (let r = 0; r < 2; r++) {
        const den = new Float32Array(per);
        for (let k = 0; k < per; k++) den[k] = cSkip * xs[k]! + cOut * out.data[r * per + k]!;
        (r === 0 ? rec.denoisedCond : rec.denoisedUncond).push(den);
      }
      return out;
    },
    schedule: m.schedule,
    latentShape: shape,
    images: [
      {
        parts: [{ schedule: [entry(cond.context, condVector)], weight: 1 }],
        uncond: [entry(uncond.context, uncondVector)],
      },
    ],
    cfgScale,
    prediction: m.prediction,
  });
  return (x, sigma) => {
    current = { x, sigma };
    return d.model(x, sigma);
  };
}

/** The tolerance group of an e2e output key (cases.json `tolerance` of a txt2img case). */
function e2eGroup(key: string): string {
  if (key === 'cond' || key === 'uncond' || key.endsWith('.crossattn')) return 'cond';
  if (key.endsWith('.vector')) return 'cond.vector';
  if (key === 'sigmas' || key === 'step_t' || key === 'decoded' || key === 'image_uint8') return key;
  return 'latent';
}

/**
 * Check every output a txt2img case names (`golden` holds them) against a run; an output key this
 * does not know fails. `only` limits the check to some keys (the fp16 case names a few).
 */
export async function checkE2e(
  gs: GoldenSet,
  c: FamilyCase,
  goldenFile: string,
  r: E2eRun,
  tolFor: (key: string, group: string) => Tol,
  only?: Record<string, string>,
): Promise<void> {
  const outs = only ?? c.outputs;
  const src = await gs.file(goldenFile);
  const ours: Record<string, ArrayLike<number> | ArrayLike<number>[]> = {
    sigmas: r.sigmas,
    x_init: r.xInit,
    step_t: r.ts.map((t) => [t]),
    step_denoised_cond: r.denoisedCond,
    step_denoised_uncond: r.denoisedUncond,
    step_denoised: r.denoised,
    step_latent: r.latents,
    final_latent: r.latents[r.latents.length - 1]!,
    decoded: r.decoded.data,
  };
  if (r.condVector) {
    ours['cond.crossattn'] = r.cond.data;
    ours['uncond.crossattn'] = r.uncond.data;
    ours['cond.vector'] = r.condVector.data;
    ours['uncond.vector'] = r.uncondVector!.data;
  } else {
    ours.cond = r.cond.data;
    ours.uncond = r.uncond.data;
  }
  for (const [key, names] of Object.entries(outs)) {
    const group = e2eGroup(key);
    const tol = tolFor(key, group);
    if (key === 'image_uint8') {
      expectPixels(key, r.image, (await src.read(names as string)).data, tol);
      continue;
    }
    const mine = ours[key];
    expect(mine, `txt2img: no value computed for output "${key}"`).toBeDefined();
    const list = Array.isArray(names) ? names : [names];
    const mineList = (Array.isArray(names) ? mine : [mine]) as ArrayLike<number>[];
    expect(mineList.length, `${key}: count`).toBe(list.length);
    for (let i = 0; i < list.length; i++) {
      expectClose(`${goldenFile}:${list[i]}`, mineList[i]!, await src.readFloat32(list[i]!), tol);
    }
  }
}
