/**
 * numpy's `SeedSequence` (numpy/random/bit_generator.pyx, numpy >= 1.19): the hash that turns an
 * integer entropy and a spawn key into seed words. torchsde's BrownianTree seeds every node of its
 * tree with `SeedSequence(entropy, spawn_key=(key, depth), pool_size).generate_state(n)`.
 */

const INIT_A = 0x43b0d7e5;
const MULT_A = 0x931e8875;
const INIT_B = 0x8b51f9dd;
const MULT_B = 0x58f38ded;
const MIX_MULT_L = 0xca01f9dd;
const MIX_MULT_R = 0x4973f715;

/** A non-negative integer as little-endian uint32 words (`[0]` for zero), as numpy coerces ints. */
function intWords(n: number | bigint): number[] {
  let v = BigInt(n);
  if (v < 0n) throw new RangeError(`SeedSequence entropy must be non-negative, got ${n}`);
  if (v === 0n) return [0];
  const words: number[] = [];
  for (; v > 0n; v >>= 32n) words.push(Number(v & 0xffffffffn));
  return words;
}

/** Returns hashmix(value) and advances the running multiplier in `h[0]`. */
function hashmix(value: number, h: Uint32Array): number {
  let v = (value ^ h[0]!) >>> 0;
  h[0] = Math.imul(h[0]!, MULT_A);
  v = Math.imul(v, h[0]!) >>> 0;
  return (v ^ (v >>> 16)) >>> 0;
}

function mix(x: number, y: number): number {
  const r = (Math.imul(MIX_MULT_L, x) - Math.imul(MIX_MULT_R, y)) >>> 0;
  return (r ^ (r >>> 16)) >>> 0;
}

/**
 * `SeedSequence(entropy, spawn_key=spawnKey, pool_size=poolSize).generate_state(nWords)` as uint32.
 */
export function seedSequenceState(
  entropy: number | bigint,
  spawnKey: readonly (number | bigint)[],
  poolSize: number,
  nWords: number,
): Uint32Array {
  const run = intWords(entropy);
  const spawn = spawnKey.flatMap(intWords);
  // numpy >= 1.19 pads the run entropy to the pool size when there is a spawn key (gh-16539).
  if (spawn.length > 0) while (run.length < poolSize) run.push(0);
  const entropyArray = [...run, ...spawn];

  const pool = new Uint32Array(poolSize);
  const h = new Uint32Array([INIT_A]);
  for (let i = 0; i < poolSize; i++) pool[i] = hashmix(i < entropyArray.length ? entropyArray[i]! : 0, h);
  for (let src = 0; src < poolSize; src++)
    for (let dst = 0; dst < poolSize; dst++)
      if (src !== dst) pool[dst] = mix(pool[dst]!, hashmix(pool[src]!, h));
  for (let src = poolSize; src < entropyArray.length; src++)
    for (let dst = 0; dst < poolSize; dst++) pool[dst] = mix(pool[dst]!, hashmix(entropyArray[src]!, h));

  const out = new Uint32Array(nWords);
  let hc = INIT_B;
  for (let i = 0; i < nWords; i++) {
    let v = (pool[i % poolSize]! ^ hc) >>> 0;
    hc = Math.imul(hc, MULT_B) >>> 0;
    v = Math.imul(v, hc) >>> 0;
    out[i] = (v ^ (v >>> 16)) >>> 0;
  }
  return out;
}
