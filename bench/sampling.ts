/**
 * Per-step cost of the sampling math (everything but the network) for 4×128×128 latents, batch 2
 * (a 1024² SD image pair, or the latent of a 512² batch 2 × 4), with A1111's noise: the ImageRNG
 * Philox generator, or the Brownian path for the SDE samplers. The model is a stand-in whose time is
 * measured inside the run and subtracted. Compare with the UNet step (DESIGN.md: 4.7 s on 2 CPU cores at 512²).
 *   npx tsx bench/sampling.ts [steps=20] [unetMsPerStep=4700]
 */
import { planSampling, runSampler, SAMPLERS, startLatent } from '../src/sampling/index.js';
import { cfgDenoiser } from '../src/sampling/denoisers.js';
import { BrownianNoise, imageRngNoise } from '../src/sampling/noise.js';
import { DiscreteSchedule, sdAlphasCumprod } from '../src/sampling/schedules.js';
import { ImageRng } from '../src/sampling/seeds.js';

const steps = Number(process.argv[2] ?? 20);
const unetMs = Number(process.argv[3] ?? 4700);
const SHAPE: [number, number, number] = [4, 128, 128];
const SEEDS = [1, 2];
const PER = SHAPE[0] * SHAPE[1] * SHAPE[2];
const ac = sdAlphasCumprod();
const schedule = new DiscreteSchedule(ac);

/** A stand-in network: one pass over the latent, like reading the UNet's output buffer. */
function standIn(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = 0.9 * x[i]!;
  return out;
}

function timeIt(fn: () => void, reps = 20): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t0) / reps;
}

const philoxMs = timeIt(() => new ImageRng({ shape: SHAPE, seeds: SEEDS }).next(), 5);
const cpuMs = timeIt(() => new ImageRng({ shape: SHAPE, seeds: SEEDS, source: 'CPU' }).next(), 5);
const cfg = cfgDenoiser(async (x: Float32Array) => standIn(x), {
  conds: SEEDS.map(() => [{ cond: 0, weight: 1 }]),
  uncond: SEEDS.map(() => 0),
  scale: 7,
});
let cfgMs = 0;
{
  const x = new Float32Array(PER * SEEDS.length);
  await cfg(x, 1);
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) await cfg(x, 1);
  cfgMs = (performance.now() - t0) / 10 - 2 * timeIt(() => standIn(x));
}

console.log(`latents ${SEEDS.length}×${SHAPE.join('×')}, ${steps} steps; UNet reference ${unetMs} ms/step`);
console.log(
  `noise draw (per step, whole batch): NV/GPU ${philoxMs.toFixed(1)} ms, CPU ${cpuMs.toFixed(1)} ms`,
);
console.log(`CFG combine (cond+uncond per image): ${cfgMs.toFixed(1)} ms per model call`);
console.log(
  'sampler'.padEnd(20) + 'calls/step'.padStart(11) + 'math ms/step'.padStart(14) + '% of UNet'.padStart(11),
);
async function run(label: string, n: number): Promise<{ mathMs: number; calls: number }> {
  const s = SAMPLERS.find((x) => x.label === label)!;
  const plan = planSampling({ sampler: label, steps: n, schedule });
  const rng = new ImageRng({ shape: SHAPE, seeds: SEEDS });
  const x = startLatent(plan, rng.next());
  const positive = plan.sigmas.filter((v) => v > 0);
  const brownian = s.brownianNoise
    ? new BrownianNoise(PER, SEEDS, Math.min(...positive), Math.max(...positive))
    : undefined;
  let calls = 0;
  let inModel = 0;
  const model = async (xx: Float32Array): Promise<Float32Array> => {
    const t = performance.now();
    const out = standIn(xx);
    inModel += performance.now() - t;
    calls++;
    return out;
  };
  const t0 = performance.now();
  await runSampler(
    plan,
    { model, epsModel: model, alphasCumprod: ac, noise: imageRngNoise(rng, brownian) },
    x,
  );
  return { mathMs: performance.now() - t0 - inModel, calls };
}

for (const s of SAMPLERS) {
  await run(s.label, 3); // warm up the JIT
  const { mathMs, calls } = await run(s.label, steps);
  const mathPerStep = mathMs / steps;
  const callsPerStep = calls / steps;
  // Compared with the network time of one step (two-call samplers run the UNet twice per step).
  const pct = (100 * mathPerStep) / (unetMs * callsPerStep);
  console.log(
    s.label.padEnd(20) +
      callsPerStep.toFixed(2).padStart(11) +
      mathPerStep.toFixed(1).padStart(14) +
      `${pct.toFixed(2)} %`.padStart(11),
  );
}
