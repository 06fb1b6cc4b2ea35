/**
 * Fuzz-style robustness: random bytes, truncations, bit flips and byte splices of valid samples fed
 * to every parser of hostile input (safetensors header, torch zip / legacy / bare pickle, PNG
 * chunks, JPEG/WebP EXIF, infotext, textual-inversion embeddings, the `.yaml` sidecar) for a
 * bounded time. Each must succeed or throw a UserError (UnsafeFileError is one); any other
 * exception fails, naming the seed, the target and the mutation so that it reproduces:
 * `SDSTUDIO_FUZZ_SEED=<seed> npx vitest run test/formats/fuzz.test.ts`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/formats/open.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { parseSidecarText } from '../../src/models/detect-sidecar.js';
import { loadEmbeddingFile } from '../../src/prompt/embeddings.js';
import { decodeUserComment, readUserCommentFromExif } from '../../src/formats/exif.js';
import { readImageMetadata } from '../../src/infotext/image-metadata.js';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { readPngChunks } from '../../src/formats/png-chunks.js';
import { UserError } from '../../src/util/errors.js';
import { goldenPath } from '../helpers/golden.js';
import { bytesOf, str } from './craft.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SEED = process.env.SDSTUDIO_FUZZ_SEED ? Number(process.env.SDSTUDIO_FUZZ_SEED) : Date.now() % 2 ** 31;
/** Milliseconds per target (every target gets the same share). */
const BUDGET_MS = Number(process.env.SDSTUDIO_FUZZ_MS ?? 400);
console.log(`fuzz seed ${SEED} (SDSTUDIO_FUZZ_SEED=${SEED} reproduces), ${BUDGET_MS} ms per target`);

/** mulberry32: small, seedable, good enough to pick mutations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Mutation = { what: string; bytes: Uint8Array };

/** One mutation of `sample`: random bytes, a truncation, bit flips, a splice, or a length field hit. */
function mutate(sample: Uint8Array, rand: () => number): Mutation {
  const int = (n: number) => Math.floor(rand() * n);
  const kind = int(6);
  if (kind === 0 || sample.length === 0) {
    const b = new Uint8Array(int(600));
    for (let i = 0; i < b.length; i++) b[i] = int(256);
    return { what: `random ${b.length} bytes`, bytes: b };
  }
  if (kind === 1) {
    const at = int(sample.length);
    return { what: `truncated at ${at}`, bytes: sample.slice(0, at) };
  }
  if (kind === 2 || kind === 3) {
    const b = sample.slice();
    const flips: number[] = [];
    for (let n = 1 + int(kind === 2 ? 4 : 32); n > 0; n--) {
      const bit = int(b.length * 8);
      b[bit >> 3]! ^= 1 << (bit & 7);
      flips.push(bit);
    }
    return { what: `bits flipped at ${flips.join(',')}`, bytes: b };
  }
  if (kind === 4) {
    // Overwrite 1–8 bytes with extreme values (length and count fields are what parsers trust).
    const b = sample.slice();
    const at = int(b.length);
    const v = [0x00, 0xff, 0x7f, 0x80][int(4)]!;
    const n = 1 + int(8);
    b.fill(v, at, at + n);
    return { what: `${n} bytes at ${at} set to ${v}`, bytes: b };
  }
  // Splice: a random slice of the sample moved elsewhere (repeated structures, shifted offsets).
  const from = int(sample.length);
  const len = int(Math.min(256, sample.length - from) + 1);
  const at = int(sample.length);
  const b = new Uint8Array(sample.length + len);
  b.set(sample.subarray(0, at));
  b.set(sample.subarray(from, from + len), at);
  b.set(sample.subarray(at), at + len);
  return { what: `${len} bytes from ${from} inserted at ${at}`, bytes: b };
}

/** Feeds mutations of every sample to `parse` for BUDGET_MS; returns how many ran. */
async function fuzz(
  name: string,
  samples: Uint8Array[],
  parse: (bytes: Uint8Array) => unknown,
  allowed: (e: unknown) => boolean = (e) => e instanceof UserError,
): Promise<number> {
  expect(samples.length, `${name}: samples`).toBeGreaterThan(0);
  // Each target its own stream, so a failure reproduces from the seed whatever ran before.
  const rand = prng(SEED ^ [...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261));
  const deadline = Date.now() + BUDGET_MS;
  let runs = 0;
  while (Date.now() < deadline || runs < 20) {
    const sample = samples[Math.floor(rand() * samples.length)]!;
    // The samples themselves first (valid ones succeed, hostile ones are UserErrors), then mutations.
    const m =
      runs < samples.length ? { what: 'the sample as is', bytes: samples[runs]! } : mutate(sample, rand);
    try {
      await parse(m.bytes);
    } catch (e) {
      if (!allowed(e)) {
        const err = e as Error;
        throw new Error(
          `${name} (seed ${SEED}, run ${runs}, ${m.what} of a ${sample.length}-byte sample) threw ` +
            `${err?.constructor?.name ?? typeof e}: ${err?.message ?? String(e)}\n${err?.stack ?? ''}`,
        );
      }
    }
    runs++;
  }
  return runs;
}

/** A parser that reads a file: each input is written to a fresh path first. */
function viaFile(
  ext: string,
  parse: (path: string) => Promise<unknown>,
): (bytes: Uint8Array) => Promise<unknown> {
  let n = 0;
  return async (bytes) => {
    const path = join(dir, `input-${n++}${ext}`);
    writeFileSync(path, bytes);
    try {
      return await parse(path);
    } finally {
      rmSync(path, { force: true });
    }
  };
}

/** Opening a model reads its header; reading every tensor exercises the offsets it declared. */
async function openAndRead(path: string): Promise<void> {
  const src = await openModel(path);
  try {
    for (const k of src.keys()) await src.read(k);
  } finally {
    await src.close();
  }
}

const golden = (...p: string[]) => new Uint8Array(readFileSync(goldenPath(...p)));
const embeddingFiles = Object.keys(
  (
    JSON.parse(readFileSync(goldenPath('formats', 'embeddings.json'), 'utf8')) as {
      files: Record<string, unknown>;
    }
  ).files,
);
const images = (
  JSON.parse(readFileSync(goldenPath('infotext', 'images.json'), 'utf8')) as { images: { file: string }[] }
).images.map((i) => i.file);

describe(`parsers under random input (seed ${SEED})`, () => {
  it('safetensors', async () => {
    const small = join(dir, 'small.safetensors');
    const t = (values: number[], shape: number[]) => ({
      dtype: 'F32' as const,
      shape,
      data: new Uint8Array(new Float32Array(values).buffer),
    });
    await writeSafetensors(small, [
      ['a.weight', t([1, 2, 3, 4, 5, 6], [2, 3])],
      ['b', t([7], [1])],
      ['c.scalar', t([8], [])],
    ]);
    const samples = [new Uint8Array(readFileSync(small)), golden('formats', 'state_dict.safetensors')];
    expect(await fuzz('safetensors', samples, viaFile('.safetensors', openAndRead))).toBeGreaterThan(0);
  });

  it('torch zip, legacy and bare pickles', async () => {
    const samples = [
      golden('formats', 'state_dict_zip.pt'),
      golden('formats', 'state_dict_legacy.pt'),
      ...embeddingFiles.filter((f) => /\.(pt|bin)$/.test(f)).map((f) => golden('formats', f)),
      // A bare pickle (protocol 2) with a dict of strings, and one calling os.system.
      bytesOf(0x80, 2, 0x7d, str('a'), str('b'), 0x73, 0x2e),
      bytesOf(0x80, 2, 'cos\nsystem\n', str('true'), 0x85, 0x52, 0x2e),
    ];
    expect(await fuzz('torch', samples, viaFile('.ckpt', openAndRead))).toBeGreaterThan(0);
  });

  it('textual-inversion embeddings (.pt, .bin, .safetensors, .png)', async () => {
    for (const ext of ['.pt', '.bin', '.safetensors', '.png']) {
      const samples = embeddingFiles.filter((f) => f.endsWith(ext)).map((f) => golden('formats', f));
      if (samples.length === 0) continue;
      expect(await fuzz(`embedding ${ext}`, samples, viaFile(ext, loadEmbeddingFile))).toBeGreaterThan(0);
    }
  });

  it('PNG chunks, JPEG and WebP metadata, EXIF', async () => {
    const byExt = (re: RegExp) => images.filter((f) => re.test(f)).map((f) => golden('infotext', f));
    const pngs = byExt(/\.png$/i);
    // readPngChunks reports problems instead of throwing.
    expect(
      await fuzz(
        'png chunks',
        pngs,
        (b) => readPngChunks(b),
        () => false,
      ),
    ).toBeGreaterThan(0);
    const all = [...pngs, ...byExt(/\.jpe?g$/i), ...byExt(/\.webp$/i)];
    expect(await fuzz('image metadata', all, (b) => readImageMetadata(b))).toBeGreaterThan(0);
    const exif = byExt(/\.jpe?g$/i)
      .map((j) => {
        // The TIFF body of the APP1 Exif segment.
        const at = Buffer.from(j).indexOf('Exif\0\0');
        return at < 0 ? undefined : j.subarray(at + 6);
      })
      .filter((e) => e !== undefined) as Uint8Array[];
    expect(
      await fuzz(
        'exif',
        exif,
        (b) => {
          const c = readUserCommentFromExif(b);
          return c && decodeUserComment(c);
        },
        () => false,
      ),
    ).toBeGreaterThan(0);
  });

  it('infotext', async () => {
    const texts = (
      JSON.parse(
        readFileSync(goldenPath('infotext', 'infotexts.json'), 'utf8').replace(/\bNaN\b/g, 'null'),
      ) as {
        cases: { infotext?: string; text?: string }[];
      }
    ).cases
      .map((c) => c.infotext ?? c.text)
      .filter((t): t is string => typeof t === 'string')
      .map((t) => new Uint8Array(Buffer.from(t, 'utf8')));
    expect(
      await fuzz('infotext', texts, (b) => parseInfotext(Buffer.from(b).toString('utf8'))),
    ).toBeGreaterThan(0);
  });

  it('.yaml sidecar', async () => {
    const samples = [golden('tiny-sd', 'tiny-sd.yaml')];
    expect(
      await fuzz('yaml sidecar', samples, (b) =>
        parseSidecarText('fuzz.yaml', Buffer.from(b).toString('utf8')),
      ),
    ).toBeGreaterThan(0);
  });
});
