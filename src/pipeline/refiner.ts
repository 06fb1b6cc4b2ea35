/**
 * A1111's SDXL refiner switch (`sd_samplers_common.apply_refiner`): the sampler keeps its state and
 * its sigmas, and from the first model call whose progress reaches `refiner_switch_at` on, the
 * refiner's UNet denoises with the refiner's own conditioning (attached to each conditioning as
 * ScheduledCond.alt, so CFG, prompt editing and the step counter carry on unchanged; sample.ts
 * switches the UNet call). Progress is judged by the noise level, as A1111 does by default: the
 * timestep whose sigma is nearest the call's sigma, (999 − timestep) / 1000 (for the timestep
 * samplers the call's timestep itself).
 */
import type { SigmaModel } from '../sampling/schedules.js';

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
 * A1111's `refiner_switch_by_sample_steps` gate: at model call `step` (0-based, A1111's
 * CFGDenoiser.step) progress is step / totalSteps (the pass's steps, ×2 for second-order samplers);
 * open for good from the first call at or past `switchAt`.
 */
export function refinerStepGate(
  totalSteps: number,
  switchAt: number,
  onSwitch: () => void,
): (step: number) => boolean {
  let switched = false;
  return (step) => {
    if (!switched && step / totalSteps >= switchAt) {
      switched = true;
      onSwitch();
    }
    return switched;
  };
}

/**
 * Whether the refiner runs a UNet call at model timestep `t` (k-diffusion calls carry the continuous
 * t of their sigma, the timestep samplers an integer one): false until a call's progress reaches
 * `switchAt`, then true for good; `onSwitch` is told once.
 */
export function refinerGate(
  schedule: Pick<SigmaModel, 'sigmas' | 'tToSigma'>,
  switchAt: number,
  onSwitch: () => void,
): (t: number) => boolean {
  let switched = false;
  return (t) => {
    if (!switched && refinerCompletedRatio(schedule, schedule.tToSigma(t)) >= switchAt) {
      switched = true;
      onSwitch();
    }
    return switched;
  };
}
