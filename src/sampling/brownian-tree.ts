/**
 * torchsde's `BrownianTree` (a `BrownianInterval` with `halfway_tree=True`, `tol=1e-6`,
 * `pool_size=24`, no Lévy area) as k-diffusion's `BrownianTreeNoiseSampler` uses it for A1111's SDE
 * samplers: one tree per image seed, nodes split at their (rounded) halfway points, each split's
 * bridge noise drawn by `torch.randn` from a generator seeded by numpy's `SeedSequence(seed,
 * spawn_key=(key, depth))`. The tree shape and every seed follow torchsde exactly; the arithmetic
 * is float32 as torch does it on float32 tensors (Python floats enter as float32 scalars).
 */
import { PhiloxGenerator } from './rng.js';
import { seedSequenceState } from './seed-sequence.js';

/** torch.randn(numel) from a fresh generator seeded with `seed`. */
export type SeededRandn = (seed: number, numel: number) => Float32Array;

/** A1111 runs the tree on the latent's device (CUDA): torch.randn there is the Philox stream. */
export const cudaRandn: SeededRandn = (seed, numel) => new PhiloxGenerator(seed).randn(numel);

const POOL_SIZE = 24;
const CACHE_SIZE = 128; // recent increments (each one latent); the numbers do not depend on it
const f32 = Math.fround;

/**
 * Python's `round(x, 6)` (the tree's `tol=1e-6` quantisation): the exact binary value rounded to
 * six decimals, exact ties to even, then the nearest double.
 */
export function pyRound6(x: number): number {
  if (!Number.isFinite(x)) return x;
  const a = Math.abs(x);
  let s = a.toFixed(6); // exact decimal rounding, but ties go up
  if (isTieAt6(a) && Number(s.at(-1)) % 2 === 1) {
    // Python rounds an exact tie to the even last digit: one unit below what toFixed chose.
    const units = BigInt(s.replace('.', '')) - 1n;
    const digits = units.toString().padStart(7, '0');
    s = `${digits.slice(0, -6)}.${digits.slice(-6)}`;
  }
  const r = Number(s);
  return x < 0 || Object.is(x, -0) ? -r : r;
}

/** Whether a * 10^6 is exactly halfway between two integers. */
function isTieAt6(a: number): boolean {
  if (a === 0 || Number.isInteger(a)) return false;
  // a = m * 2^-k exactly (k > 0): the tie condition is 2 * a * 10^6 being an odd integer.
  let k = 0;
  let m = a;
  while (!Number.isInteger(m)) {
    m *= 2; // exact: doubling a double only changes its exponent
    k++;
  }
  const num = BigInt(m) * 2_000_000n;
  const den = 1n << BigInt(k);
  return num % den === 0n && (num / den) % 2n === 1n;
}

interface Interval {
  start: number;
  end: number;
  parent: Interval | null;
  isLeft: boolean;
  midway?: number;
  spawnKey?: number;
  depth?: number;
  wSeed?: number;
  left?: Interval;
  right?: Interval;
}

/** One torchsde BrownianTree over [t0, t1] for a latent of `numel` values. */
export class TorchsdeBrownianTree {
  private readonly root: Interval;
  private readonly rootW: Float32Array;
  private readonly cache = new Map<Interval, Float32Array>();
  private last: Interval;

  constructor(
    private readonly numel: number,
    private readonly entropy: number,
    t0: number,
    t1: number,
    private readonly randn: SeededRandn = cudaRandn,
  ) {
    if (!(t0 <= t1)) throw new Error(`Brownian tree needs t0 <= t1 (${t0}, ${t1})`);
    this.root = { start: pyRound6(t0), end: pyRound6(t1), parent: null, isLeft: false };
    const [wSeed] = seedSequenceState(entropy, [], POOL_SIZE, 3);
    const scale = f32(Math.sqrt(t1 - t0)); // the unrounded ends, as torchsde scales W
    this.rootW = this.randn(wSeed!, numel).map((v) => v * scale);
    this.last = this.root;
  }

  /** W(tb) - W(ta) for t0 <= ta <= tb <= t1 (clamped as torchsde clamps, with its warning dropped). */
  increment(ta: number, tb: number): Float32Array {
    const { start, end } = this.root;
    ta = Math.min(Math.max(ta, start), end);
    tb = Math.min(Math.max(tb, start), end);
    if (ta > tb) throw new Error(`Brownian tree query needs ta <= tb (${ta}, ${tb})`);
    if (ta === tb) return new Float32Array(this.numel);
    const out: Interval[] = [];
    this.locate(this.last, pyRound6(ta), pyRound6(tb), out);
    this.last = out[out.length - 1]!;
    const w = Float32Array.from(this.incrementOf(out[0]!));
    for (let k = 1; k < out.length; k++) {
      const wi = this.incrementOf(out[k]!);
      for (let i = 0; i < w.length; i++) w[i] = w[i]! + wi[i]!;
    }
    return w;
  }

  /** torchsde `_loc_inner`: the existing or newly split intervals that make up [ta, tb], in order. */
  private locate(node: Interval, ta: number, tb: number, out: Interval[]): void {
    for (;;) {
      if (ta < node.start || tb > node.end) {
        node = node.parent!;
      } else if (ta === node.start && tb === node.end) {
        out.push(node);
        return;
      } else if (node.midway === undefined) {
        if (ta === node.start) {
          this.split(node, tb);
          node = node.left!;
        } else {
          this.split(node, ta);
          node = node.right!;
        }
      } else if (tb <= node.midway) {
        node = node.left!;
      } else if (ta >= node.midway) {
        node = node.right!;
      } else {
        this.locate(node.left!, ta, node.midway, out);
        ta = node.midway;
        node = node.right!;
      }
    }
  }

  /** Halfway splits down to the one that lands on `target`. */
  private split(node: Interval, target: number): void {
    for (;;) {
      this.splitExact(node, 0.5 * (node.end + node.start));
      if (target > node.midway!) node = node.right!;
      else if (target < node.midway!) node = node.left!;
      else return;
    }
  }

  private splitExact(node: Interval, midway: number): void {
    const m = pyRound6(midway);
    node.midway = m;
    node.spawnKey = node.parent ? 2 * node.parent.spawnKey! + (node.isLeft ? 0 : 1) : 0;
    node.depth = node.parent ? node.parent.depth! + 1 : 0;
    node.wSeed = seedSequenceState(this.entropy, [node.spawnKey, node.depth], POOL_SIZE, 4)[0]!;
    node.left = { start: node.start, end: m, parent: node, isLeft: true };
    node.right = { start: m, end: node.end, parent: node, isLeft: false };
  }

  /** The increment over an interval: a Brownian bridge from its parent's, as torchsde computes it. */
  private incrementOf(node: Interval): Float32Array {
    if (node === this.root) return this.rootW;
    const hit = this.cache.get(node);
    if (hit) {
      this.cache.delete(node); // most recently used goes last
      this.cache.set(node, hit);
      return hit;
    }
    const parent = node.parent!;
    const w = this.incrementOf(parent);
    const hRecip = 1 / (parent.end - parent.start);
    const leftDiff = parent.midway! - parent.start;
    const rightDiff = parent.end - parent.midway!;
    const a = f32(leftDiff);
    const b = f32(hRecip);
    const sd = f32(Math.sqrt(leftDiff * rightDiff * hRecip));
    const noise = this.randn(parent.wSeed!, this.numel);
    const out = new Float32Array(this.numel);
    for (let i = 0; i < out.length; i++) {
      const leftW = f32(f32(f32(a * w[i]!) * b) + f32(sd * noise[i]!));
      out[i] = node.isLeft ? leftW : w[i]! - leftW;
    }
    this.cache.set(node, out);
    if (this.cache.size > CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    return out;
  }
}
