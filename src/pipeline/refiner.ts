/**
 * A1111's SDXL refiner switch (`sd_samplers_common.apply_refiner`): the sampler keeps its state and
 * its sigmas, and from the first model call whose progress reaches `refiner_switch_at` on, the
 * refiner's UNet denoises with the refiner's own conditioning. Progress is judged by the noise
 * level, as A1111 does by default: the timestep whose sigma is nearest the call's sigma,
 * (999 − timestep) / 1000 (for the timestep samplers the call's timestep itself).
 */
import type { SigmaModel } from '../sampling/schedules.js';
import type { CfgDenoiser } from './denoiser.js';

/** A1111's default "Refiner switch at". */
export const DEFAULT_REFINER_SWITCH_AT = 0.8;

/** (999 − the timestep whose sigma is nearest `sigma`) / 1000, A1111's completed ratio. */
export function refinerCompletedRatio(schedule: Pick<SigmaModel, 'sigmas'>, sigma: number): number {
  const s = schedule.sigmas;
  let best = 0;
  for (let i = 1; i < s.length; i++) if (Math.abs(s[i]! - sigma) < Math.abs(s[best]! - sigma)) best = i;
  return (999 - best) / 1000;
}

/**
 * The samplers' model functions that hand over from `base` to `refiner` once progress reaches
 * `switchAt` (and stay with the refiner); `onSwitch` is told once. The refiner continues the base
 * denoiser's per-call step counter, so prompt editing keeps its place.
 */
export function refinerSwitch(
  base: CfgDenoiser,
  refiner: CfgDenoiser,
  switchAt: number,
  schedule: Pick<SigmaModel, 'sigmas'>,
  onSwitch: () => void,
): Pick<CfgDenoiser, 'model' | 'epsModel'> {
  let switched = false;
  const pick = (ratio: number): CfgDenoiser => {
    if (!switched && ratio >= switchAt) {
      switched = true;
      refiner.step = base.step;
      onSwitch();
    }
    return switched ? refiner : base;
  };
  return {
    model: (x, sigma) => pick(refinerCompletedRatio(schedule, sigma)).model(x, sigma),
    epsModel: (x, t) => pick((999 - Math.round(t)) / 1000).epsModel(x, t),
  };
}
