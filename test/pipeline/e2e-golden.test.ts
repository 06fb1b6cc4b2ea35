/**
 * The end-to-end txt2img goldens of tiny-sd (every `txt2img` case in cases.json, plus the e2e outputs
 * of the fp16-checkpoint case): text conditioning, sigmas, x_init, every step's t, denoised and latent,
 * the decoded image and its uint8 pixels, through the pipeline's own denoiser and decoder — on the
 * CPU provider, and on webgpu where an adapter is (or must be: SDSTUDIO_REQUIRE_WEBGPU=1). They
 * reach what the per-network goldens do not: an 8×8 latent (1×1 at the UNet's bottom) and the
 * CFG graph whose rows share their latent.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { CfgDenoiser } from '../../src/pipeline/denoiser.js';
import { decodeLatentsRaw } from '../../src/pipeline/vae.js';
import { tensorToImage } from '../../src/image/images.js';
import { loadSd1, type Sd1LoadOptions, type Sd1Model } from '../../src/runtime/sd1.js';
import { planSampling, runSampler, startLatent, type StepInfo } from '../../src/sampling/index.js';
import { imageRngNoise } from '../../src/sampling/noise.js';
import { ImageRng } from '../../src/sampling/seeds.js';
import { DiscreteSchedule } from '../../src/sampling/schedules.js';
import { expectGolden } from '../helpers/compare.js';
import { goldenPath } from '../helpers/golden.js';
import { failMissingWebgpu, webgpuMissing, webgpuRequired } from '../helpers/webgpu.js';

interface Tol {
  max_abs: number;
  rel_l2?: number;
  max_fraction_differing?: number;
}

interface E2eCase {
  kind: string;
  checkpoint: string;
  file: string;
  params: { sampler: string; steps: number; cfg_scale: number; clip_skip: number; scale_factor: number };
  inputs: Record<string, string>;
  outputs: Record<string, string | string[]>;
  tolerance: Record<string, Tol>;
}

interface Fp16Case {
  kind: 'fp16_checkpoint';
  checkpoint: string;
  file: string;
  outputs: Record<string, string>;
  tolerance: Record<string, Tol>;
}

const cases = (JSON.parse(readFileSync(goldenPath('tiny-sd', 'cases.json'), 'utf8')) as { cases: unknown[] })
  .cases;
const e2eCases = cases.filter((c) => (c as E2eCase).kind === 'txt2img') as E2eCase[];
const fp16Cases = cases.filter((c) => (c as Fp16Case).kind === 'fp16_checkpoint') as Fp16Case[];

function expectClose(what: string, ours: ArrayLike<number>, golden: ArrayLike<number>, tol: Tol): void {
  expectGolden(what, ours, golden, { max_abs: tol.max_abs, rel_l2: tol.rel_l2 });
}

function expectPixels(what: string, ours: Uint8Array, golden: Uint8Array, tol: Tol): void {
  expect(ours.length).toBe(golden.length);
  let differing = 0;
  for (let i = 0; i < golden.length; i++) {
    const d = Math.abs(ours[i]! - golden[i]!);
    expect(d, `${what}[${i}]`).toBeLessThanOrEqual(tol.max_abs);
    if (d > 0) differing++;
  }
  expect(differing / golden.length, `${what}: fraction differing`).toBeLessThanOrEqual(
    tol.max_fraction_differing ?? 0,
  );
}

const engines: Sd1Model[] = [];
const sources: TensorSource[] = [];
afterAll(async () => {
  for (const e of engines) await e.release();
  for (const s of sources) await s.close();
});

interface E2eRun {
  cond: Float32Array;
  uncond: Float32Array;
  sigmas: number[];
  xInit: Float32Array;
  ts: number[];
  denoised: Float32Array[];
  latents: Float32Array[];
  decoded: Float32Array;
  image: Uint8Array;
}

/** Runs the golden's txt2img through the pipeline's pieces with the golden's ids and noise. */
async function runE2e(
  c: E2eCase,
  checkpoint: string,
  golden: TensorSource,
  load: Sd1LoadOptions,
): Promise<E2eRun> {
  const engine = await loadSd1(goldenPath('tiny-sd', checkpoint), load);
  engines.push(engine);
  const alphas = await engine.source.readFloat32('alphas_cumprod');
  const schedule = new DiscreteSchedule(alphas);
  const promptIds = await golden.read(c.inputs.prompt_ids!);
  const ids = (t: { data: Uint8Array }) =>
    new BigInt64Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
  const cond = await engine.encodeIds(ids(promptIds), 1, c.params.clip_skip);
  const uncond = await engine.encodeIds(
    ids(await golden.read(c.inputs.negative_ids!)),
    1,
    c.params.clip_skip,
  );
  const noise = await golden.readFloat32(c.inputs.noise!);
  const [, ch, h, w] = golden.info(c.inputs.noise!)!.shape as [number, number, number, number];

  const plan = planSampling({ sampler: c.params.sampler, steps: c.params.steps, schedule });
  const xInit = startLatent(plan, noise);
  const ts: number[] = [];
  const denoiser = new CfgDenoiser({
    unet: (x, t, context) => engine.unet({ x, t, context }),
    schedule,
    latentShape: [ch, h, w],
    images: [
      {
        parts: [
          {
            schedule: [{ endAtStep: c.params.steps, cond: { data: cond.data, dims: [77, cond.dims[2]!] } }],
            weight: 1,
          },
        ],
        uncond: [{ endAtStep: c.params.steps, cond: { data: uncond.data, dims: [77, uncond.dims[2]!] } }],
      },
    ],
    cfgScale: c.params.cfg_scale,
    onModelCall: ({ t }) => ts.push(t),
  });
  const denoised: Float32Array[] = [];
  const latents: Float32Array[] = [];
  const rng = new ImageRng({ shape: [ch, h, w], seeds: [0] });
  rng.next();
  const res = await runSampler(
    plan,
    {
      model: denoiser.model,
      noise: imageRngNoise(rng),
      callback: (info: StepInfo) => {
        if (info.i > 0) latents.push(info.x.slice());
        denoised.push(info.denoised.slice());
      },
    },
    xInit,
  );
  latents.push(res.x);
  const [raw] = await decodeLatentsRaw(engine, res.x, [1, ch, h, w], c.params.scale_factor);
  const image = tensorToImage(raw!.data, raw!.dims[3]!, raw!.dims[2]!);
  return {
    cond: cond.data,
    uncond: uncond.data,
    sigmas: plan.sigmas,
    xInit,
    ts,
    denoised,
    latents,
    decoded: raw!.data,
    image: image.data,
  };
}

function e2eSuite(title: string, load: Sd1LoadOptions): void {
  describe(title, () => {
    it('has cases', () => {
      expect(e2eCases.length).toBeGreaterThan(0);
    });

    for (const c of e2eCases) {
      it(`${c.file}: conditioning, sigmas, every step, decoded image`, async () => {
        const golden = await openSafetensors(goldenPath('tiny-sd', c.file));
        sources.push(golden);
        const r = await runE2e(c, c.checkpoint, golden, load);
        const o = c.outputs;
        const tol = c.tolerance;
        const g = (name: string) => golden.readFloat32(name);
        expectClose('cond', r.cond, await g(o.cond as string), tol.cond!);
        expectClose('uncond', r.uncond, await g(o.uncond as string), tol.cond!);
        expectClose('sigmas', r.sigmas, await g(o.sigmas as string), tol.sigmas!);
        expectClose('x_init', r.xInit, await g(o.x_init as string), tol.latent!);
        const stepT = o.step_t as string[];
        expect(r.ts.length).toBe(stepT.length);
        for (let i = 0; i < stepT.length; i++) {
          expectClose(stepT[i]!, [r.ts[i]!], await g(stepT[i]!), tol.step_t!);
          expectClose(
            (o.step_denoised as string[])[i]!,
            r.denoised[i]!,
            await g((o.step_denoised as string[])[i]!),
            tol.latent!,
          );
          expectClose(
            (o.step_latent as string[])[i]!,
            r.latents[i]!,
            await g((o.step_latent as string[])[i]!),
            tol.latent!,
          );
        }
        expectClose(
          'final_latent',
          r.latents[r.latents.length - 1]!,
          await g(o.final_latent as string),
          tol.latent!,
        );
        expectClose('decoded', r.decoded, await g(o.decoded as string), tol.decoded!);
        expectPixels(
          'image_uint8',
          r.image,
          (await golden.read(o.image_uint8 as string)).data,
          tol.image_uint8!,
        );
      });
    }

    for (const c of fp16Cases) {
      const e2eOutputs = Object.keys(c.outputs).filter((k) => k.startsWith('e2e.'));
      if (e2eOutputs.length === 0) continue;
      for (const base of e2eCases) {
        it(`${c.file}: the txt2img case on ${c.checkpoint}`, async () => {
          const golden = await openSafetensors(goldenPath('tiny-sd', c.file));
          const inputs = await openSafetensors(goldenPath('tiny-sd', base.file));
          sources.push(golden, inputs);
          const r = await runE2e(base, c.checkpoint, inputs, load);
          for (const name of e2eOutputs) {
            const tol = c.tolerance[name] ?? c.tolerance.default!;
            if (name === 'e2e.final_latent') {
              expectClose(name, r.latents[r.latents.length - 1]!, await golden.readFloat32(name), tol);
            } else if (name === 'e2e.image_uint8') {
              expectPixels(name, r.image, (await golden.read(name)).data, tol);
            } else {
              throw new Error(`unknown e2e output ${name} in ${c.file}`);
            }
          }
        });
      }
    }
  });
}

e2eSuite('tiny-sd end-to-end txt2img goldens (cpu)', {});
const webgpu = await webgpuMissing();
if (webgpu === undefined)
  e2eSuite('tiny-sd end-to-end txt2img goldens (webgpu, float32)', { provider: 'webgpu' });
else if (webgpuRequired) failMissingWebgpu(webgpu);
