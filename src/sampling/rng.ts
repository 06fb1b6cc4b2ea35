/**
 * A1111's random sources, bit-compatible with the references:
 * - "GPU" / "NV": A1111's `rng_philox.py` (Philox4x32-10 + Box-Muller), which equals torch.randn on CUDA;
 * - "CPU": torch's CPU generator (mt19937 seeded like `torch.manual_seed`, torch's own normal transform).
 * Each generator is a stream: consecutive `randn` calls continue where the previous one stopped.
 */
import { UserError } from '../util/errors.js';

export type RandomSource = 'GPU' | 'NV' | 'CPU';
export const RANDOM_SOURCES: readonly RandomSource[] = ['GPU', 'NV', 'CPU'];

/** A seeded stream of standard normal float32 values. */
export interface NormalGenerator {
  readonly seed: number;
  /** The next `n` values of the stream. */
  randn(n: number): Float32Array;
  /** Advance the stream exactly as `randn(n)` would, without keeping the values (cheap where possible). */
  skip(n: number): void;
}

/** Largest seed we accept: A1111 seeds are Python ints, but anything above 2^53 cannot be a JS number. */
const MAX_SEED = Number.MAX_SAFE_INTEGER;
/** Largest tensor one call may produce (A1111's philox counter is one uint32 word). */
const MAX_DRAW = 2 ** 31;

export function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new UserError(`seed ${seed} is not an integer between 0 and ${MAX_SEED}; use -1 for a random seed`);
  }
}

function checkCount(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_DRAW) {
    throw new UserError(`cannot draw ${n} random values (the limit is ${MAX_DRAW} per call)`);
  }
}

// ---------------------------------------------------------------- Philox ("NV" / "GPU")

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
/** rng_philox.py keeps these constants as float32 and does the arithmetic in float64 (numpy promotion). */
const TWO_POW32_INV = Math.fround(2.3283064e-10);
const TWO_POW32_INV_2PI = Math.fround(2.3283064e-10 * 6.2831855);

/** High 32 bits of the 64-bit product of two uint32 values (the low half is Math.imul). */
function mulHi(a: number, b: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const t = aLo * bLo;
  const m1 = aHi * bLo + (t >>> 16);
  const m2 = aLo * bHi + (m1 & 0xffff);
  // m1, m2 < 2^32, so >>> 16 is an exact floor division.
  return (aHi * bHi + (m1 >>> 16) + (m2 >>> 16)) >>> 0;
}

/**
 * Philox4x32-10 on counters (c0, 0, i, 0) for i = 0..n-1 with key (k0, k1), each block's first two
 * words turned into one normal by Box-Muller as rng_philox.py does. One tight loop: this is the
 * innermost cost of every noise draw (and of each Brownian-tree node).
 */
function philoxNormals(c0: number, k0: number, k1: number, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    let x0 = c0 >>> 0;
    let x1 = 0;
    let x2 = i >>> 0;
    let x3 = 0;
    let key0 = k0 >>> 0;
    let key1 = k1 >>> 0;
    for (let r = 0; r < 10; r++) {
      const hi0 = mulHi(x0, PHILOX_M0);
      const lo0 = Math.imul(x0, PHILOX_M0) >>> 0;
      const hi1 = mulHi(x2, PHILOX_M1);
      const lo1 = Math.imul(x2, PHILOX_M1) >>> 0;
      x0 = (hi1 ^ x1 ^ key0) >>> 0;
      x1 = lo1;
      x2 = (hi0 ^ x3 ^ key1) >>> 0;
      x3 = lo0;
      key0 = (key0 + PHILOX_W0) >>> 0;
      key1 = (key1 + PHILOX_W1) >>> 0;
    }
    const u = x0 * TWO_POW32_INV + TWO_POW32_INV / 2;
    const v = x1 * TWO_POW32_INV_2PI + TWO_POW32_INV_2PI / 2;
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.sin(v);
  }
}

/** A1111's `rng_philox.Generator`: one counter offset per call, whatever the call's size. */
export class PhiloxGenerator implements NormalGenerator {
  offset = 0;
  private readonly keyLo: number;
  private readonly keyHi: number;

  constructor(readonly seed: number) {
    checkSeed(seed);
    this.keyLo = (seed % 2 ** 32) >>> 0;
    this.keyHi = Math.floor(seed / 2 ** 32) >>> 0;
  }

  randn(n: number): Float32Array {
    checkCount(n);
    const out = new Float32Array(n);
    philoxNormals(this.offset >>> 0, this.keyLo, this.keyHi, out);
    this.offset++;
    return out;
  }

  skip(n: number): void {
    checkCount(n);
    this.offset++;
  }
}

// ---------------------------------------------------------------- torch CPU ("CPU")

const MT_N = 624;
const MT_M = 397;

/** torch's at::mt19937 (the standard 32-bit Mersenne Twister, seeded from the low 32 bits). */
class Mt19937 {
  private readonly state = new Uint32Array(MT_N);
  private index = MT_N;

  constructor(seed: number) {
    const s = this.state;
    s[0] = (seed % 2 ** 32) >>> 0;
    for (let j = 1; j < MT_N; j++) {
      const prev = s[j - 1]!;
      s[j] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + j) >>> 0;
    }
  }

  private twist(): void {
    const s = this.state;
    for (let k = 0; k < MT_N; k++) {
      const y = (s[k]! & 0x80000000) | (s[(k + 1) % MT_N]! & 0x7fffffff);
      let v = s[(k + MT_M) % MT_N]! ^ (y >>> 1);
      if (y & 1) v ^= 0x9908b0df;
      s[k] = v >>> 0;
    }
    this.index = 0;
  }

  next(): number {
    if (this.index >= MT_N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

const F32_2PI = Math.fround(2 * Math.PI);

/**
 * torch's CPU generator as `torch.manual_seed(seed)` leaves it, producing what `torch.randn(n)` gives
 * for a float32 tensor (torch 1.13):
 * - n >= 16: float uniforms for all n, Box-Muller in blocks of 16 (8 cos + 8 sin) computed in float;
 *   when n % 16 != 0 the last 16 values are redrawn from fresh uniforms and transformed again;
 * - n < 16: each value from the scalar double-precision Box-Muller, whose second value is cached in
 *   the generator for the next scalar draw.
 */
export class TorchCpuGenerator implements NormalGenerator {
  private readonly mt: Mt19937;
  private cachedNormal: number | null = null;

  constructor(readonly seed: number) {
    checkSeed(seed);
    this.mt = new Mt19937(seed);
  }

  /** uniform_real_distribution<float>(0, 1): 24 random bits. */
  private uniformFloat(): number {
    return (this.mt.next() & 0xffffff) / 16777216;
  }

  /** uniform_real_distribution<double>(0, 1): 53 bits of random64() (first draw is the high word). */
  private uniformDouble(): number {
    const hi = this.mt.next();
    const lo = this.mt.next();
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
  }

  private normalDouble(): number {
    if (this.cachedNormal !== null) {
      const v = this.cachedNormal;
      this.cachedNormal = null;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  randn(n: number): Float32Array {
    checkCount(n);
    const out = new Float32Array(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) out[i] = this.normalDouble();
      return out;
    }
    for (let i = 0; i < n; i++) out[i] = this.uniformFloat();
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16(out, i);
    if (n % 16 !== 0) {
      const start = n - 16;
      for (let i = 0; i < 16; i++) out[start + i] = this.uniformFloat();
      boxMuller16(out, start);
    }
    return out;
  }

  skip(n: number): void {
    checkCount(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) this.normalDouble();
      return;
    }
    const draws = n + (n % 16 !== 0 ? 16 : 0);
    for (let i = 0; i < draws; i++) this.mt.next();
  }
}

/** torch's normal_fill_16 in float arithmetic: u1 = 1 - data[j] keeps log away from 0. */
function boxMuller16(data: Float32Array, at: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = Math.fround(1 - data[at + j]!);
    const u2 = data[at + j + 8]!;
    const radius = Math.fround(Math.sqrt(Math.fround(-2 * Math.fround(Math.log(u1)))));
    const theta = Math.fround(F32_2PI * u2);
    data[at + j] = radius * Math.fround(Math.cos(theta));
    data[at + j + 8] = radius * Math.fround(Math.sin(theta));
  }
}

/** A1111's `create_generator(seed)` for the chosen random source. */
export function createGenerator(source: RandomSource, seed: number): NormalGenerator {
  switch (source) {
    case 'GPU':
    case 'NV':
      return new PhiloxGenerator(seed);
    case 'CPU':
      return new TorchCpuGenerator(seed);
    default:
      throw new UserError(
        `unknown random source "${String(source)}"; use one of ${RANDOM_SOURCES.join(', ')}`,
      );
  }
}
