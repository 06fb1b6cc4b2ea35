/**
 * DPM-Solver (Lu et al. 2022) as k-diffusion implements it: "DPM fast" (fixed steps of orders 3/2/1)
 * and "DPM adaptive" (embedded 2/3 pair with a PID step-size controller). t = -log(sigma).
 */
import { ancestralStep, lin2, lin3 } from '../ops.js';
import type { SamplerContext } from '../types.js';

const f32 = Math.fround;
const tOf = (sigma: number): number => -Math.log(sigma);
const sigmaOf = (t: number): number => Math.exp(-t);

type EpsCache = Map<string, Float32Array>;

class DpmSolver {
  constructor(private readonly ctx: SamplerContext) {}

  async eps(cache: EpsCache, key: string, x: Float32Array, t: number): Promise<Float32Array> {
    const hit = cache.get(key);
    if (hit) return hit;
    const sigma = sigmaOf(t);
    const denoised = await this.ctx.model(x, sigma);
    const eps = lin2(1 / sigma, x, -1 / sigma, denoised);
    cache.set(key, eps);
    return eps;
  }

  async step1(x: Float32Array, t: number, tNext: number, cache: EpsCache): Promise<Float32Array> {
    const h = tNext - t;
    const eps = await this.eps(cache, 'eps', x, t);
    return lin2(1, x, -sigmaOf(tNext) * Math.expm1(h), eps);
  }

  async step2(x: Float32Array, t: number, tNext: number, cache: EpsCache, r1 = 1 / 2): Promise<Float32Array> {
    const h = tNext - t;
    const eps = await this.eps(cache, 'eps', x, t);
    const s1 = t + r1 * h;
    const u1 = lin2(1, x, -sigmaOf(s1) * Math.expm1(r1 * h), eps);
    const epsR1 = await this.eps(cache, 'eps_r1', u1, s1);
    const a = sigmaOf(tNext) * Math.expm1(h);
    const b = (sigmaOf(tNext) / (2 * r1)) * Math.expm1(h);
    return lin3(1, x, -a + b, eps, -b, epsR1);
  }

  async step3(x: Float32Array, t: number, tNext: number, cache: EpsCache): Promise<Float32Array> {
    const r1 = 1 / 3;
    const r2 = 2 / 3;
    const h = tNext - t;
    const eps = await this.eps(cache, 'eps', x, t);
    const s1 = t + r1 * h;
    const s2 = t + r2 * h;
    const u1 = lin2(1, x, -sigmaOf(s1) * Math.expm1(r1 * h), eps);
    const epsR1 = await this.eps(cache, 'eps_r1', u1, s1);
    const c2 = sigmaOf(s2) * (r2 / r1) * (Math.expm1(r2 * h) / (r2 * h) - 1);
    const u2 = lin3(1, x, -sigmaOf(s2) * Math.expm1(r2 * h) + c2, eps, -c2, epsR1);
    const epsR2 = await this.eps(cache, 'eps_r2', u2, s2);
    const c3 = (sigmaOf(tNext) / r2) * (Math.expm1(h) / h - 1);
    return lin3(1, x, -sigmaOf(tNext) * Math.expm1(h) + c3, eps, -c3, epsR2);
  }
}

export interface DpmFastOptions {
  sigmaMin: number;
  sigmaMax: number;
  n: number;
  eta?: number;
  sNoise?: number;
}

export async function sampleDpmFast(
  ctx: SamplerContext,
  x: Float32Array,
  o: DpmFastOptions,
): Promise<Float32Array> {
  const { sigmaMin, sigmaMax, n, eta = 0, sNoise = 1 } = o;
  if (!(sigmaMin > 0 && sigmaMax > 0)) throw new Error('DPM fast needs sigma_min and sigma_max above 0');
  const solver = new DpmSolver(ctx);
  const tStart = f32(tOf(f32(sigmaMax)));
  const tEnd = f32(tOf(f32(sigmaMin)));
  const m = Math.floor(n / 3) + 1;
  const ts: number[] = [];
  for (let i = 0; i <= m; i++) ts.push(f32(tStart + ((tEnd - tStart) * i) / m));
  const orders =
    n % 3 === 0 ? [...Array<number>(m - 2).fill(3), 2, 1] : [...Array<number>(m - 1).fill(3), n % 3];
  for (let i = 0; i < orders.length; i++) {
    const cache: EpsCache = new Map();
    const t = ts[i]!;
    const tNext = ts[i + 1]!;
    let tNext_ = tNext;
    let su = 0;
    if (eta) {
      const [sd] = ancestralStep(sigmaOf(t), sigmaOf(tNext), eta);
      tNext_ = Math.min(tEnd, tOf(sd));
      su = Math.sqrt(Math.max(0, sigmaOf(tNext) ** 2 - sigmaOf(tNext_) ** 2));
    }
    const eps = await solver.eps(cache, 'eps', x, t);
    const denoised = lin2(1, x, -sigmaOf(t), eps);
    ctx.callback?.({ i, total: orders.length, x, denoised, sigma: sigmaOf(t), sigmaHat: sigmaOf(t) });
    if (orders[i] === 1) x = await solver.step1(x, t, tNext_, cache);
    else if (orders[i] === 2) x = await solver.step2(x, t, tNext_, cache);
    else x = await solver.step3(x, t, tNext_, cache);
    // k-diffusion draws the noise even when su is 0, which advances A1111's generator.
    x = lin2(1, x, su * sNoise, ctx.noise.sample(sigmaOf(t), sigmaOf(tNext)));
  }
  return x;
}

export interface DpmAdaptiveOptions {
  sigmaMin: number;
  sigmaMax: number;
  order?: 2 | 3;
  rtol?: number;
  atol?: number;
  hInit?: number;
  pcoeff?: number;
  icoeff?: number;
  dcoeff?: number;
  acceptSafety?: number;
  eta?: number;
  sNoise?: number;
  /** Safety net against a controller that never reaches the end (k-diffusion has none). */
  maxModelCalls?: number;
}

/** k-diffusion's PIDStepSizeController. */
class PidController {
  private readonly b1: number;
  private readonly b2: number;
  private readonly b3: number;
  private errs: number[] = [];

  constructor(
    public h: number,
    pcoeff: number,
    icoeff: number,
    dcoeff: number,
    order: number,
    private readonly acceptSafety: number,
    private readonly eps = 1e-8,
  ) {
    this.b1 = (pcoeff + icoeff + dcoeff) / order;
    this.b2 = -(pcoeff + 2 * dcoeff) / order;
    this.b3 = dcoeff / order;
  }

  proposeStep(error: number): boolean {
    const inv = 1 / (error + this.eps);
    if (this.errs.length === 0) this.errs = [inv, inv, inv];
    this.errs[0] = inv;
    let factor = this.errs[0] ** this.b1 * this.errs[1]! ** this.b2 * this.errs[2]! ** this.b3;
    factor = 1 + Math.atan(factor - 1);
    const accept = factor >= this.acceptSafety;
    if (accept) {
      this.errs[2] = this.errs[1]!;
      this.errs[1] = this.errs[0];
    }
    this.h *= factor;
    return accept;
  }
}

export async function sampleDpmAdaptive(
  ctx: SamplerContext,
  x: Float32Array,
  o: DpmAdaptiveOptions,
): Promise<Float32Array> {
  const { sigmaMin, sigmaMax, order = 3, rtol = 0.05, atol = 0.0078, hInit = 0.05 } = o;
  const { pcoeff = 0, icoeff = 1, dcoeff = 0, acceptSafety = 0.81, eta = 0, sNoise = 1 } = o;
  if (!(sigmaMin > 0 && sigmaMax > 0)) throw new Error('DPM adaptive needs sigma_min and sigma_max above 0');
  if (order !== 2 && order !== 3) throw new Error('DPM adaptive order must be 2 or 3');
  const maxCalls = o.maxModelCalls ?? 10000;
  let calls = 0;
  const counted: SamplerContext = {
    ...ctx,
    model: (xx, s) => {
      if (++calls > maxCalls) throw new Error(`DPM adaptive did not converge within ${maxCalls} model calls`);
      return ctx.model(xx, s);
    },
  };
  const solver = new DpmSolver(counted);
  const tStart = f32(tOf(f32(sigmaMax)));
  const tEnd = f32(tOf(f32(sigmaMin)));
  let s = tStart;
  let xPrev = x;
  const pid = new PidController(Math.abs(hInit), pcoeff, icoeff, dcoeff, eta ? 1.5 : order, acceptSafety);
  let steps = 0;
  const root = Math.sqrt(x.length);
  while (s < tEnd - 1e-5) {
    const cache: EpsCache = new Map();
    const t = f32(Math.min(tEnd, f32(s + pid.h)));
    let t_ = t;
    let su = 0;
    if (eta) {
      const [sd] = ancestralStep(sigmaOf(s), sigmaOf(t), eta);
      t_ = Math.min(tEnd, tOf(sd));
      su = Math.sqrt(Math.max(0, sigmaOf(t) ** 2 - sigmaOf(t_) ** 2));
    }
    const eps = await solver.eps(cache, 'eps', x, s);
    const denoised = lin2(1, x, -sigmaOf(s), eps);
    let xLow: Float32Array;
    let xHigh: Float32Array;
    if (order === 2) {
      xLow = await solver.step1(x, s, t_, cache);
      xHigh = await solver.step2(x, s, t_, cache);
    } else {
      xLow = await solver.step2(x, s, t_, cache, 1 / 3);
      xHigh = await solver.step3(x, s, t_, cache);
    }
    let sq = 0;
    for (let k = 0; k < x.length; k++) {
      const delta = Math.max(atol, rtol * Math.max(Math.abs(xLow[k]!), Math.abs(xPrev[k]!)));
      const e = (xLow[k]! - xHigh[k]!) / delta;
      sq += e * e;
    }
    const error = Math.sqrt(sq) / root;
    if (pid.proposeStep(error)) {
      xPrev = xLow;
      x = lin2(1, xHigh, su * sNoise, ctx.noise.sample(sigmaOf(s), sigmaOf(t)));
      s = t;
    }
    ctx.callback?.({ i: steps, total: steps + 1, x, denoised, sigma: sigmaOf(s), sigmaHat: sigmaOf(s) });
    steps++;
  }
  return x;
}
