/**
 * A1111's Restart sampler (Xu et al. 2023, `sd_samplers_extra.restart_sampler`): Heun steps along a
 * Karras schedule, and for >= 20 steps a segment that jumps back up in noise and re-descends.
 */
import { karrasSigmas } from '../schedules.js';
import { lin2, toD } from '../ops.js';
import type { SamplerContext } from '../types.js';

/** {at sigma: [restart steps, restart times, restart up to sigma]} */
export type RestartList = Map<number, [steps: number, times: number, maxSigma: number]>;

function argminAbs(values: readonly number[], target: number): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) {
    if (Math.abs(values[i]! - target) < Math.abs(values[best]! - target)) best = i;
  }
  return best;
}

export async function sampleRestart(
  ctx: SamplerContext,
  x: Float32Array,
  sigmasIn: readonly number[],
  o: { sNoise?: number; restartList?: RestartList } = {},
): Promise<Float32Array> {
  const sNoise = o.sNoise ?? 1;
  let sigmas = [...sigmasIn];
  const steps = sigmas.length - 1;
  let restartList = o.restartList;
  if (!restartList) {
    restartList = new Map();
    if (steps >= 20) {
      let restartSteps = 9;
      let restartTimes = 1;
      if (steps >= 36) {
        restartSteps = Math.floor(steps / 4);
        restartTimes = 2;
      }
      sigmas = karrasSigmas(steps - restartSteps * restartTimes, sigmas[sigmas.length - 2]!, sigmas[0]!);
      restartList.set(0.1, [restartSteps + 1, restartTimes, 2]);
    }
  }
  const byIndex = new Map<number, [number, number, number]>();
  for (const [key, value] of restartList) byIndex.set(argminAbs(sigmas, key), value);

  const stepList: [number, number][] = [];
  for (let i = 0; i < sigmas.length - 1; i++) {
    stepList.push([sigmas[i]!, sigmas[i + 1]!]);
    const restart = byIndex.get(i + 1);
    if (restart) {
      const [restartSteps, restartTimes, restartMax] = restart;
      const minIdx = i + 1;
      const maxIdx = argminAbs(sigmas, restartMax);
      if (maxIdx < minIdx) {
        const up = karrasSigmas(restartSteps, sigmas[minIdx]!, sigmas[maxIdx]!).slice(0, -1);
        for (let r = 0; r < restartTimes; r++) {
          for (let k = 0; k + 1 < up.length; k++) stepList.push([up[k]!, up[k + 1]!]);
        }
      }
    }
  }

  const total = stepList.length;
  let last: number | null = null;
  for (let stepId = 0; stepId < total; stepId++) {
    const [oldSigma, newSigma] = stepList[stepId]!;
    if (last === null) last = oldSigma;
    else if (last < oldSigma) {
      x = lin2(1, x, sNoise * Math.sqrt(oldSigma ** 2 - last ** 2), ctx.noise.randnLike());
    }
    // One Heun step (Euler into sigma 0).
    const denoised = await ctx.model(x, oldSigma);
    const d = toD(x, oldSigma, denoised);
    ctx.callback?.({ i: stepId, total, x, denoised, sigma: newSigma, sigmaHat: oldSigma });
    const dt = newSigma - oldSigma;
    if (newSigma === 0) {
      x = lin2(1, x, dt, d);
    } else {
      const x2 = lin2(1, x, dt, d);
      const d2 = toD(x2, newSigma, await ctx.model(x2, newSigma));
      const out = new Float32Array(x.length);
      for (let k = 0; k < out.length; k++) out[k] = x[k]! + ((d[k]! + d2[k]!) / 2) * dt;
      x = out;
    }
    last = newSigma;
  }
  return x;
}
