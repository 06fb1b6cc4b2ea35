/**
 * UniPC (Zhao et al. 2023) as A1111 runs it (`uni_pc.py` through `sd_samplers_timesteps_impl.unipc`):
 * multistep, data prediction (predict_x0), discrete VP schedule from alphas_cumprod, model time input
 * (t_continuous - 1/N) * 1000. Variants bh1, bh2 and vary_coeff.
 */
import { lin2, linN } from '../ops.js';
import type { TimestepSamplerContext } from '../types.js';

export type UniPcVariant = 'bh1' | 'bh2' | 'vary_coeff';
export type UniPcSkipType = 'time_uniform' | 'time_quadratic' | 'logSNR';

export interface UniPcOptions {
  variant?: UniPcVariant;
  skipType?: UniPcSkipType;
  order?: number;
  lowerOrderFinal?: boolean;
  /** img2img: start from the last of `timesteps` instead of t = 1. */
  isImg2img?: boolean;
}

/** NoiseScheduleVP('discrete'): log alpha_t piecewise linear over t_n = (n + 1) / N. */
class DiscreteVp {
  readonly n: number;
  private readonly logAlpha: Float64Array;

  constructor(ac: Float32Array) {
    this.n = ac.length;
    this.logAlpha = Float64Array.from(ac, (v) => 0.5 * Math.log(v));
  }

  private tAt(k: number): number {
    return (k + 1) / this.n;
  }

  /** Piecewise-linear interpolation with linear extrapolation beyond the ends (uni_pc.interpolate_fn). */
  logMeanCoeff(t: number): number {
    const k = Math.min(Math.max(Math.ceil(t * this.n - 1) - 1, 0), this.n - 2);
    const x0 = this.tAt(k);
    const x1 = this.tAt(k + 1);
    return this.logAlpha[k]! + ((t - x0) * (this.logAlpha[k + 1]! - this.logAlpha[k]!)) / (x1 - x0);
  }

  alpha(t: number): number {
    return Math.exp(this.logMeanCoeff(t));
  }

  std(t: number): number {
    return Math.sqrt(1 - Math.exp(2 * this.logMeanCoeff(t)));
  }

  lambda(t: number): number {
    const lm = this.logMeanCoeff(t);
    return lm - 0.5 * Math.log(1 - Math.exp(2 * lm));
  }

  inverseLambda(lamb: number): number {
    const logAlpha = -0.5 * logAddExp(0, -2 * lamb);
    // log alpha decreases with t: interpolate t over the reversed table.
    const la = this.logAlpha;
    let k = 0;
    while (k < this.n - 2 && la[k + 1]! > logAlpha) k++;
    const x0 = la[k]!;
    const x1 = la[k + 1]!;
    return this.tAt(k) + ((logAlpha - x0) * (this.tAt(k + 1) - this.tAt(k))) / (x1 - x0);
  }
}

function logAddExp(a: number, b: number): number {
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** Solve A x = b for a small dense system (Gaussian elimination with partial pivoting). */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row.slice(0, n), b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[p]![c]!)) p = r;
    [M[c], M[p]] = [M[p]!, M[c]!];
    for (let r = c + 1; r < n; r++) {
      const f = M[r]![c]! / M[c]![c]!;
      for (let k = c; k <= n; k++) M[r]![k] = M[r]![k]! - f * M[c]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r]![n]!;
    for (let k = r + 1; k < n; k++) s -= M[r]![k]! * x[k]!;
    x[r] = s / M[r]![r]!;
  }
  return x;
}

function inverse(A: number[][]): number[][] {
  const n = A.length;
  const cols = Array.from({ length: n }, (_, j) =>
    solve(
      A,
      Array.from({ length: n }, (_, i) => (i === j ? 1 : 0)),
    ),
  );
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => cols[j]![i]!));
}

function timeSteps(ns: DiscreteVp, skip: UniPcSkipType, tT: number, t0: number, n: number): number[] {
  const out: number[] = [];
  if (skip === 'logSNR') {
    const lT = ns.lambda(tT);
    const l0 = ns.lambda(t0);
    for (let i = 0; i <= n; i++) out.push(ns.inverseLambda(lT + ((l0 - lT) * i) / n));
  } else if (skip === 'time_quadratic') {
    const a = Math.sqrt(tT);
    const b = Math.sqrt(t0);
    for (let i = 0; i <= n; i++) out.push((a + ((b - a) * i) / n) ** 2);
  } else if (skip === 'time_uniform') {
    for (let i = 0; i <= n; i++) out.push(tT + ((t0 - tT) * i) / n);
  } else {
    throw new Error(`unknown UniPC skip type "${String(skip)}"; use time_uniform, time_quadratic or logSNR`);
  }
  return out;
}

export async function sampleUniPc(
  ctx: TimestepSamplerContext,
  x: Float32Array,
  timesteps: readonly number[],
  o: UniPcOptions = {},
): Promise<Float32Array> {
  const variant = o.variant ?? 'bh1';
  if (variant !== 'bh1' && variant !== 'bh2' && variant !== 'vary_coeff') {
    throw new Error(`unknown UniPC variant "${String(variant)}"; use bh1, bh2 or vary_coeff`);
  }
  const steps = timesteps.length;
  // uni_pc asserts steps >= order; A1111 users hit that with very few steps, so lower the order instead.
  const order = Math.max(1, Math.min(o.order ?? 3, steps));
  const lowerOrderFinal = o.lowerOrderFinal ?? true;
  const ns = new DiscreteVp(ctx.alphasCumprod);
  const tT = o.isImg2img ? timesteps[timesteps.length - 1]! / 1000 + 1 / 1000 : 1;
  const t0 = 1 / ns.n;
  const ts = timeSteps(ns, o.skipType ?? 'time_uniform', tT, t0, steps);

  let index = 0;
  const total = steps;
  const dataPrediction = async (xx: Float32Array, t: number): Promise<Float32Array> => {
    const eps = await ctx.model(xx, (t - 1 / ns.n) * 1000);
    const a = ns.alpha(t);
    return lin2(1 / a, xx, -ns.std(t) / a, eps);
  };

  const update = async (
    xx: Float32Array,
    models: Float32Array[],
    tPrev: number[],
    t: number,
    ord: number,
    useCorrector: boolean,
  ): Promise<[Float32Array, Float32Array | null]> => {
    const tPrev0 = tPrev[tPrev.length - 1]!;
    const m0 = models[models.length - 1]!;
    const lambdaPrev0 = ns.lambda(tPrev0);
    const lambdaT = ns.lambda(t);
    const sigmaPrev0 = ns.std(tPrev0);
    const sigmaT = ns.std(t);
    const alphaT = ns.alpha(t);
    const h = lambdaT - lambdaPrev0;
    const rks: number[] = [];
    const D1s: Float32Array[] = [];
    for (let i = 1; i < ord; i++) {
      const rk = (ns.lambda(tPrev[tPrev.length - 1 - i]!) - lambdaPrev0) / h;
      rks.push(rk);
      D1s.push(lin2(1 / rk, models[models.length - 1 - i]!, -1 / rk, m0));
    }
    rks.push(1);
    const hh = -h; // predict_x0
    const hPhi1 = Math.expm1(hh);
    const xBase = lin2(sigmaT / sigmaPrev0, xx, -alphaT * hPhi1, m0);
    if (variant === 'vary_coeff') return varyCoeff(xBase, rks, D1s, hh, hPhi1, alphaT, m0, t, useCorrector);

    const Bh = variant === 'bh1' ? hh : Math.expm1(hh);
    const R: number[][] = [];
    const b: number[] = [];
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    for (let i = 1; i <= ord; i++) {
      R.push(rks.map((r) => r ** (i - 1)));
      b.push((hPhiK * factorial) / Bh);
      factorial *= i + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    let xt = xBase;
    if (D1s.length > 0) {
      const rhosP =
        ord === 2
          ? [0.5]
          : solve(
              R.slice(0, -1).map((row) => row.slice(0, -1)),
              b.slice(0, -1),
            );
      const predRes = linN(rhosP, D1s);
      xt = lin2(1, xBase, -alphaT * Bh, predRes);
    }
    if (!useCorrector) return [xt, null];
    const rhosC = ord === 1 ? [0.5] : solve(R, b);
    const mt = await dataPrediction(xt, t);
    const corr = linN(
      [...rhosC.slice(0, -1), rhosC[rhosC.length - 1]!, -rhosC[rhosC.length - 1]!],
      [...D1s, mt, m0],
    );
    return [lin2(1, xBase, -alphaT * Bh, corr), mt];
  };

  const varyCoeff = async (
    xBase: Float32Array,
    rks: number[],
    D1s: Float32Array[],
    hh: number,
    hPhi1: number,
    alphaT: number,
    m0: Float32Array,
    t: number,
    useCorrector: boolean,
  ): Promise<[Float32Array, Float32Array | null]> => {
    const K = rks.length;
    const C: number[][] = Array.from({ length: K }, () => new Array<number>(K).fill(0));
    let col = rks.map(() => 1);
    for (let k = 0; k < K; k++) {
      for (let r = 0; r < K; r++) C[r]![k] = col[r]!;
      col = col.map((v, r) => (v * rks[r]!) / (k + 2));
    }
    const hPhiKs: number[] = [];
    let hPhiK = hPhi1;
    let fact = 1;
    for (let k = 1; k <= K + 1; k++) {
      hPhiKs.push(hPhiK);
      hPhiK = hPhiK / hh - 1 / fact;
      fact *= k + 1;
    }
    let xt = xBase;
    if (D1s.length > 0) {
      const Ap = inverse(C.slice(0, -1).map((row) => row.slice(0, -1)));
      for (let k = 0; k < K - 1; k++) xt = lin2(1, xt, -alphaT * hPhiKs[k + 1]!, linN(Ap[k]!, D1s));
    }
    if (!useCorrector) return [xt, null];
    const mt = await dataPrediction(xt, t);
    const Ac = inverse(C);
    let xc = xBase;
    let k = 0;
    for (k = 0; k < K - 1; k++) xc = lin2(1, xc, -alphaT * hPhiKs[k + 1]!, linN(Ac[k]!.slice(0, -1), D1s));
    // uni_pc reuses the loop variable after the loop (k = K - 2, or 0 when the loop did not run).
    const kk = K > 1 ? K - 2 : 0;
    xc = lin2(1, xc, -alphaT * hPhiKs[K]! * Ac[kk]![Ac[kk]!.length - 1]!, lin2(1, mt, -1, m0));
    return [xc, mt];
  };

  const emit = (xx: Float32Array, denoised: Float32Array): void => {
    ctx.callback?.({ i: index, total, x: xx, denoised, sigma: 0, sigmaHat: 0 });
    index++;
  };

  const models: Float32Array[] = [await dataPrediction(x, ts[0]!)];
  const tPrev: number[] = [ts[0]!];
  for (let initOrder = 1; initOrder < order; initOrder++) {
    const t = ts[initOrder]!;
    const [xn, mx] = await update(x, models, tPrev, t, initOrder, true);
    x = xn;
    const model = mx ?? (await dataPrediction(x, t));
    emit(x, model);
    models.push(model);
    tPrev.push(t);
  }
  for (let step = order; step <= steps; step++) {
    const t = ts[step]!;
    const stepOrder = lowerOrderFinal ? Math.min(order, steps + 1 - step) : order;
    const useCorrector = step !== steps;
    const [xn, mx] = await update(x, models, tPrev, t, stepOrder, useCorrector);
    x = xn;
    emit(x, mx ?? x);
    for (let i = 0; i < order - 1; i++) {
      tPrev[i] = tPrev[i + 1]!;
      models[i] = models[i + 1]!;
    }
    tPrev[order - 1] = t;
    if (step < steps) models[order - 1] = mx ?? (await dataPrediction(x, t));
  }
  return x;
}
